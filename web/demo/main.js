/**
 * The demo page: one AutobahnJS connection (reconnecting forever) shared by the live
 * article feed and the chat. Query parameters: ?api=<API base URL> (default: this host,
 * port 5000), ?ws=<WebSocket URL>[,<another>...] (default: /ws on this origin; several:
 * edge nodes, tried in turn), ?channel=<first channel>.
 */

import { connect, defaultUrl } from "../sandbar.js";
import { Account } from "./account.js";
import { Chat } from "./chat.js";
import { Feed } from "./feed.js";
import { RefusalLog } from "./ui.js";

const params = new URLSearchParams(window.location.search);
const apiUrl = (params.get("api") || `${location.protocol}//${location.hostname}:5000`).replace(/\/$/, "");
const wsUrls = (params.get("ws") || defaultUrl()).split(","); // several: edge nodes
const wsUrl = wsUrls.join(", ");

const $ = (selector) => document.querySelector(selector);
const refusals = new RefusalLog($("#refusal-list"), $("#refusal-empty"), $("#refusal-count"));
const account = new Account({ root: $("#account"), apiUrl, onChange: reconnect });
const feed = new Feed({ root: $("#feed"), apiUrl, refusals, account });
const chat = new Chat({ root: $("#chat"), refusals, channels: ["general", "random", "help"] });

const LABELS = { connecting: "Connecting…", open: "Open", reconnecting: "Reconnecting…", closed: "Closed" };

/** A signed-out or expired token: fall back to an anonymous session. */
const TOKEN_ENDED = /^sandbar\.(error\.(token_|invalid_token|account_disabled)|close\.signed_out)/;

function showState({ state, attempt, delay, reason, session, wampReason, message }) {
  if (state !== "open" && TOKEN_ENDED.test(wampReason || "")) {
    account.forget(`Signed out: ${message || wampReason}`);
    return;
  }
  const badge = $("#connection");
  badge.dataset.state = state;
  $("#connection-label").textContent = LABELS[state] || state;
  let detail = wsUrl;
  if (state === "open") detail = `session ${session.id} · ${wsUrl}`;
  if (state === "reconnecting") {
    detail = `connection ${reason}; attempt ${attempt} in ${delay.toFixed(1)} s`;
  }
  if (state === "closed") detail = `closed: ${reason}`;
  $("#connection-detail").textContent = detail;
  document.body.dataset.connection = state;
  if (state !== "open") {
    chat.detach();
    feed.setStatus("paused", "Offline: the feed resumes (and catches up) when the connection is back.");
  }
}

/** Subscribe the feed; while the topics service is away (router restart), try again. */
async function attachFeed(session) {
  try {
    await feed.attach(session);
  } catch (refusal) {
    feed.setStatus("error", `Feed refused: ${refusal.reason || refusal.error}`);
    refusals.add({ what: "subscribe articles", error: refusal.error, reason: refusal.reason });
    if (refusal.temporary) setTimeout(() => session.isOpen && attachFeed(session), 1000);
  }
}

function onOpen(session) {
  chat.attach(session);
  return attachFeed(session);
}

let connection = null;

/** (Re)open the connection with the current identity (after signing in or out). */
function reconnect() {
  if (connection) {
    const old = connection;
    old.onclose = () => true; // stop its retries: a new one takes over
    old.close();
  }
  try {
    connection = connect({ url: wsUrls, onState: showState, onOpen, ...account.wampOptions() });
  } catch (err) {
    showState({ state: "closed", reason: err.message });
  }
}

reconnect();
chat.join(params.get("channel") || "general");
