/**
 * The inspector page (README, The inspector): for staff only. Signing in works as on the
 * demo page (the API's token, kept in this tab); the page then asks the API who the token
 * speaks for (GET /auth/whoami) and connects only for a staff account. Anyone else sees
 * the sign-in form and a message, and nothing from the backend, which refuses them anyway
 * (the authorizer and every inspector procedure and endpoint check the role).
 * Query parameters, as on the demo page: ?api=<API base URL> (default: this host, port
 * 5000), ?ws=<WebSocket URL>[,<another>...] (default: /ws on this origin).
 */

import { Account } from "../demo/account.js";
import { connect, defaultUrl } from "../sandbar.js";
import { describe, request } from "./http.js";
import { Overview } from "./overview.js";
import { Publish } from "./publish.js";
import { Tap } from "./tap.js";
import { WhyNot } from "./why.js";

const STAFF = "staff";
const params = new URLSearchParams(window.location.search);
const apiUrl = (params.get("api") || `${location.protocol}//${location.hostname}:5000`).replace(/\/$/, "");
const wsUrls = (params.get("ws") || defaultUrl()).split(",");

const $ = (selector) => document.querySelector(selector);
const account = new Account({ root: $("#account"), apiUrl, onChange: () => checkAccess() });
const headers = () => account.headers();
const why = new WhyNot({ root: $("#why"), apiUrl, headers });
const tap = new Tap({ root: $("#tap"), onWhy: (id) => why.prefill(id) });
const overview = new Overview({
  root: $("#inspector"),
  onTopic: (uri) => tap.start(uri),
  onLeader: (session) => tap.leader(session),
});
const publish = new Publish({ root: $("#publish"), apiUrl, headers });
const panels = [overview, tap, why];

const LABELS = { connecting: "Connecting…", open: "Open", reconnecting: "Reconnecting…", closed: "Not connected" };
/** A signed-out or expired token, as the router says when it closes the session. */
const TOKEN_ENDED = /^sandbar\.(error\.(token_|invalid_token|account_disabled)|close\.signed_out)/;

let connection = null;
let checking = 0;

/** After every sign-in or sign-out: who is this, and may they see the inspector? */
async function checkAccess() {
  const check = ++checking;
  disconnect();
  for (const panel of panels) panel.reset();
  publish.reset();
  if (!account.token) return gate("signed-out", "info", "Sign in with a staff account to use the inspector.");
  gate("checking", "pending", `Checking ${account.user}'s role…`);
  let who;
  try {
    who = await request(apiUrl, "/auth/whoami", { headers: headers() });
  } catch (err) {
    if (check !== checking) return;
    if (err.status === 401) return account.forget(`Signed out: ${err.reason || err.message}`);
    return gate("error", "error", `Could not check the account: ${describe(err)}`);
  }
  if (check !== checking) return;
  if (who.role !== STAFF) return refuse(who.user, who.role);
  gate("staff", "", "");
  open();
}

function refuse(user, role) {
  gate(
    "not-staff",
    "error",
    `This page is for staff: ${user} is not a staff account (role '${role}'). Sign out and sign in with an account made by \`sandbar-api users add NAME --role staff\`.`,
  );
}

/** Show the gate's message (nothing else) unless `access` is "staff". */
function gate(access, kind, text) {
  document.body.dataset.access = access;
  const box = $("#gate");
  box.hidden = access === "staff";
  box.dataset.kind = kind;
  box.textContent = text;
  $("#inspector").hidden = access !== "staff";
}

function open() {
  try {
    connection = connect({ url: wsUrls, onState: showState, onOpen, ...account.wampOptions() });
  } catch (err) {
    showState({ state: "closed", reason: err.message });
  }
}

function disconnect() {
  if (!connection) return showState({ state: "closed", reason: "sign in as staff to connect" });
  const old = connection;
  connection = null;
  old.onclose = () => true; // no retries: a new connection (or none) takes over
  try {
    old.close();
  } catch {
    // closed already (the router ended it)
  }
  showState({ state: "closed", reason: "signed out" });
}

function onOpen(session, details) {
  // the router's word on the role, in case the API's changed since
  if (details && details.authrole !== STAFF) {
    disconnect();
    return refuse(details.authid, details.authrole);
  }
  for (const panel of panels) panel.attach(session);
  return publish.load();
}

function showState({ state, attempt, delay, reason, session, wampReason, message }) {
  if (state !== "open" && TOKEN_ENDED.test(wampReason || "")) {
    account.forget(`Signed out: ${message || wampReason}`);
    return;
  }
  if (state !== "open") for (const panel of panels) panel.detach();
  $("#connection").dataset.state = state;
  document.body.dataset.connection = state;
  $("#connection-label").textContent = LABELS[state] || state;
  let detail = wsUrls.join(", ");
  if (state === "open") detail = `session ${session.id} · ${detail}`;
  if (state === "reconnecting") detail = `connection ${reason}; attempt ${attempt} in ${delay.toFixed(1)} s`;
  if (state === "closed") detail = reason || "closed";
  $("#connection-detail").textContent = detail;
}

checkAccess();
