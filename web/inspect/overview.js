/**
 * Services and their health, sessions online and topics with their subscribers: asked of
 * the topics service's leader (`inspect.services`, `inspect.sessions`, `inspect.topics`)
 * every few seconds while the page is connected. Browsers never get `wamp.*`: the leader
 * reads the router's meta API and answers staff only.
 */

import { el } from "../demo/ui.js";
import { describe } from "./http.js";
import { ago, when } from "./time.js";

export const REFRESH_MS = 3000;
const LIMIT = 200;

export class Overview {
  constructor({ root, onTopic, onLeader }) {
    this.$ = (selector) => root.querySelector(selector);
    this.onTopic = onTopic; // a topic's name was clicked: tap it
    this.onLeader = onLeader; // the topics leader's session id, on every refresh
    this.session = null;
    this.timer = null;
    this.running = null;
  }

  attach(session) {
    this.session = session;
    this.refresh();
  }

  detach() {
    this.session = null;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Nothing of the last staff session's answers stays on the page. */
  reset() {
    this.detach();
    for (const id of ["#service-list", "#session-rows", "#topic-rows", "#tap-topics"]) this.$(id).replaceChildren();
    this.$("#session-count").textContent = this.$("#topic-count").textContent = "0";
    this.$("#services-at").textContent = "not yet";
  }

  /** Ask all three (one round at a time), then again in REFRESH_MS. */
  async refresh() {
    const session = this.session;
    if (!session || this.running) return;
    clearTimeout(this.timer);
    this.running = Promise.all([
      this.ask(session, "inspect.services", {}, "#services-error", (answer) => this.showServices(answer)),
      this.ask(session, "inspect.sessions", { limit: LIMIT }, "#sessions-error", (answer) => this.showSessions(answer)),
      this.ask(session, "inspect.topics", { limit: LIMIT }, "#topics-error", (answer) => this.showTopics(answer)),
    ]).finally(() => {
      this.running = null;
      if (this.session === session) this.timer = setTimeout(() => this.refresh(), REFRESH_MS);
    });
    return this.running;
  }

  async ask(session, uri, kwargs, errorBox, show) {
    const box = this.$(errorBox);
    try {
      const answer = await session.call(uri, [], kwargs);
      if (session !== this.session) return;
      box.hidden = true;
      show(answer);
    } catch (err) {
      if (session !== this.session) return;
      box.hidden = false;
      box.textContent = `${uri} failed: ${describe(err)}`;
    }
  }

  showServices(services) {
    const { router, topics, bridge, api, at } = services || {};
    const replicas = Array.isArray(topics) ? topics : [];
    const outbox = (api && api.outbox) || {};
    const unfolded = [...this.$("#service-list").querySelectorAll("details[open]")].map((d) => d.closest("li").dataset.testid);
    this.$("#service-list").replaceChildren(
      tile("router", "Router", router, router ? facts(router) : []),
      tile(
        "topics",
        `Topics service · ${replicas.length} replica${replicas.length === 1 ? "" : "s"}`,
        replicas.length ? {} : { error: "no replica answered" },
        replicas.map((replica) => [`session ${replica.session}`, replica.leader ? "leader" : "replica"]),
      ),
      tile("bridge", "Bridge", bridge, bridge ? facts(bridge) : [], bridge && bridge.connected === false, BRIDGE_FIRST),
      tile("api", "API", api, [
        ["status", api && api.status],
        ["outbox backlog", outbox.backlog],
        ["oldest unsent", outbox.oldest_age_s == null ? "none" : `${Number(outbox.oldest_age_s).toFixed(1)} s`],
        ["url", api && api.url],
      ], api && api.status && api.status !== "ok"),
    );
    for (const testid of unfolded) {
      const details = this.$(`[data-testid="${testid}"] details`);
      if (details) details.open = true; // kept open across refreshes
    }
    this.$("#services-at").textContent = at ? `as of ${when(at)}` : "now";
    const leader = replicas.find((replica) => replica.leader);
    if (leader) this.onLeader(leader.session);
  }

  showSessions(sessions) {
    // people first (by role, then user), the backends' own sessions last
    const list = (Array.isArray(sessions) ? sessions : []).slice().sort(
      (a, b) => rank(a) - rank(b) || String(a.authid).localeCompare(String(b.authid)),
    );
    this.$("#session-count").textContent = String(list.length);
    this.$("#session-rows").replaceChildren(
      ...list.map((s) =>
        el(
          "tr",
          { dataset: { testid: "session-row", session: String(s.session), authid: s.authid || "", role: s.authrole || "" } },
          el("td.mono", {}, String(s.session)),
          el("td", {}, s.authid || "–"),
          el("td", {}, el(`span.role.role-${s.authrole || "none"}`, {}, s.authrole || "–")),
          el("td.mono", {}, transport(s.transport)),
          el("td.nowrap", { title: s.since ? when(s.since) : "" }, s.since ? ago(s.since) : "–"),
          el("td", {}, ...(s.subscriptions || []).map((uri) => el("code.sub", {}, uri))),
        ),
      ),
    );
  }

  showTopics(topics) {
    const list = Array.isArray(topics) ? topics : [];
    this.$("#topic-count").textContent = String(list.length);
    this.$("#topic-rows").replaceChildren(
      ...list.map((t) =>
        el(
          "tr",
          { dataset: { testid: "topic-row", uri: t.uri } },
          el("td", {}, el("button.link", { type: "button", title: `tap ${t.uri}`, onclick: () => this.onTopic(t.uri) }, t.uri)),
          el("td", {}, t.match || "exact"),
          el("td.num", {}, String(t.subscribers ?? "")),
        ),
      ),
    );
    this.$("#tap-topics").replaceChildren(...list.map((t) => el("option", { value: t.uri })));
  }
}

/** The bridge's counts shown first; the rest of its stats fold away under "more". */
const BRIDGE_FIRST = ["connected", "buffered", "in_flight", "published", "received", "rejected", "requeued"];

/**
 * A service's tile: `part` is its answer (`{"error": ...}` when it could not be asked);
 * with `first`, only those rows show and the others fold away.
 */
function tile(name, title, part, rows, degraded = false, first = null) {
  const error = !part ? "no answer" : part.error;
  const state = error ? "error" : degraded ? "warn" : "ok";
  const shown = first ? rows.filter(([key]) => first.includes(key)) : rows;
  const folded = first ? rows.filter(([key]) => !first.includes(key)) : [];
  return el(
    "li.tile",
    { dataset: { testid: `service-${name}`, state } },
    el("div.tile-head", {}, el("span.dot", { "aria-hidden": "true" }), el("strong", {}, title), el("span.sr-only", {}, ` (${state})`)),
    error ? el("p.tile-error", {}, String(error)) : list(shown),
    !error && folded.length ? el("details", {}, el("summary", {}, `${folded.length} more`), list(folded)) : null,
  );
}

function list(rows) {
  return el("dl.facts", {}, ...rows.flatMap(([key, value]) => [el("dt", {}, key), el("dd", {}, show(value))]));
}

/** An answer's fields as [key, value] rows; a nested object's fields as "key.field". */
function facts(part) {
  return Object.entries(part).flatMap(([key, value]) =>
    value && typeof value === "object" && !Array.isArray(value)
      ? Object.entries(value).map(([inner, v]) => [`${key}.${inner}`, v])
      : [[key, value]],
  );
}

const BACKEND_ROLES = ["backend", "authenticator"];

function rank(session) {
  return BACKEND_ROLES.includes(session.authrole) ? 1 : 0;
}

function show(value) {
  if (value === undefined || value === null) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  return Array.isArray(value) ? value.join(", ") : String(value);
}

function transport(t) {
  if (!t) return "–";
  return [t.type, t.peer].filter(Boolean).join(" · ");
}
