/**
 * The live tap: `inspect.tap.start(pattern)` makes the topics leader subscribe to the
 * pattern and forward each event, as a record, on `inspect.tap` to this session only. The
 * leader bounds the rate; what it cannot forward it drops and counts, and the next record
 * says how many (`dropped`), shown beside the list. Pausing holds records on the page.
 */

import { el } from "../demo/ui.js";
import { subscribe } from "../sandbar.js";
import { describe } from "./http.js";
import { when } from "./time.js";

export const TAP_TOPIC = "inspect.tap";
const KEEP = 300; // rows on the page
const HOLD = 1000; // records held while paused; older ones go

export class Tap {
  constructor({ root, onWhy }) {
    this.$ = (selector) => root.querySelector(selector);
    this.onWhy = onWhy; // the "why?" button on a row: ask about this event
    this.session = null;
    this.subscribed = null; // the session the inspect.tap subscription belongs to
    this.pattern = null; // kept across reconnects: the tap restarts on the new session
    this.tap = null;
    this.leaderId = null;
    this.paused = false;
    this.held = [];
    this.count = 0;
    this.dropped = 0;
    this.rows = this.$("#tap-rows");
    this.$("#tap-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const pattern = this.$("#tap-pattern").value.trim();
      if (pattern) this.start(pattern);
    });
    this.$("#tap-stop").addEventListener("click", () => this.stop());
    this.$("#tap-pause").addEventListener("click", () => this.setPaused(!this.paused));
    this.$("#tap-filter").addEventListener("input", () => this.filter());
    this.render();
  }

  attach(session) {
    this.session = session;
    this.tap = null;
    if (this.pattern) this.start(this.pattern);
    this.render();
  }

  detach() {
    this.session = null;
    this.subscribed = null;
    this.tap = null;
    this.render();
  }

  /** The topics leader changed (a failover): its taps went with the old one, so start again. */
  leader(session) {
    const changed = this.leaderId != null && session !== this.leaderId;
    this.leaderId = session;
    if (changed && this.session && this.pattern) this.start(this.pattern);
  }

  /** Signed out: forget the tap and its events. */
  reset() {
    this.detach();
    this.pattern = this.leaderId = null;
    this.held = [];
    this.count = this.dropped = 0;
    this.$("#tap-caveat").textContent = "";
    this.rows.replaceChildren();
    this.setPaused(false);
    this.say("", "");
  }

  async start(pattern) {
    const session = this.session;
    if (!session) return this.say("error", "Not connected.");
    this.$("#tap-pattern").value = pattern;
    this.say("pending", `Starting a tap on ${pattern}…`);
    try {
      if (this.subscribed !== session) {
        await subscribe(session, TAP_TOPIC, (record) => this.receive(record));
        this.subscribed = session;
      }
      if (this.tap !== null) await this.stopTap(session);
      const answer = await session.call("inspect.tap.start", [pattern]);
      if (session !== this.session) return;
      this.pattern = pattern;
      this.tap = answer.tap;
      const burst = answer.burst ? `, bursts of ${answer.burst}` : "";
      const rate = answer.rate ? ` (at most ${answer.rate} events/s${burst}; beyond that dropped and counted)` : "";
      this.say("ok", `Tapping ${answer.pattern || pattern}${rate}.`);
      this.$("#tap-caveat").textContent = answer.caveat ? `Not seen by a tap: ${answer.caveat}.` : "";
    } catch (err) {
      if (session === this.session) this.say("error", `Tap refused: ${err.reason || describe(err)}`);
    }
    this.render();
  }

  async stop() {
    const session = this.session;
    this.pattern = null;
    if (session && this.tap !== null) {
      await this.stopTap(session).catch((err) => this.say("error", `inspect.tap.stop failed: ${describe(err)}`));
      this.say("", "Stopped.");
    }
    this.render();
  }

  async stopTap(session) {
    const tap = this.tap;
    this.tap = null;
    await session.call("inspect.tap.stop", [], { tap });
  }

  /** One record from `inspect.tap` (records of a tap stopped meanwhile are left out). */
  receive(record) {
    if (!record || (this.tap !== null && record.tap !== undefined && record.tap !== this.tap)) return;
    if (record.dropped) {
      this.dropped += record.dropped;
      const badge = this.$("#tap-dropped");
      badge.textContent = `dropped: ${this.dropped}`;
      badge.dataset.dropped = String(this.dropped);
    }
    if (this.paused) {
      this.held.push(record);
      if (this.held.length > HOLD) this.held.shift();
      this.say("pending", `Paused: ${this.held.length} event${this.held.length === 1 ? "" : "s"} held.`);
      return;
    }
    this.show(record);
  }

  show(record) {
    this.count += 1;
    this.$("#tap-count").textContent = String(this.count);
    const row = row_(record, this.onWhy);
    this.rows.prepend(row);
    this.match(row, this.needle());
    while (this.rows.children.length > KEEP) this.rows.lastChild.remove();
    this.render();
  }

  setPaused(paused) {
    this.paused = paused;
    const button = this.$("#tap-pause");
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume" : "Pause";
    if (!paused) {
      const held = this.held;
      this.held = [];
      for (const record of held) this.show(record);
      if (held.length) this.say("ok", `Resumed: ${held.length} held event${held.length === 1 ? "" : "s"} shown.`);
    } else {
      this.say("pending", "Paused: new events are held.");
    }
  }

  needle() {
    return this.$("#tap-filter").value.trim().toLowerCase();
  }

  filter() {
    const needle = this.needle();
    for (const row of this.rows.children) this.match(row, needle);
  }

  match(row, needle) {
    row.hidden = Boolean(needle) && !row.dataset.search.includes(needle);
  }

  say(kind, text) {
    const status = this.$("#tap-status");
    status.dataset.kind = kind;
    status.textContent = text;
  }

  render() {
    const running = this.tap !== null;
    this.$("#tap-stop").disabled = !running;
    this.$("#tap-pause").disabled = !running && !this.paused;
    this.$("#tap-empty").hidden = running || this.rows.children.length > 0;
  }
}

/** A record's row: time, name, topic, id (with "why?"), seq, trace id, age, payload. */
function row_(record, onWhy) {
  const payload = JSON.stringify(record.payload ?? null);
  const trace = traceId(record.trace);
  const row = el(
    "tr",
    { dataset: { testid: "tap-row", id: record.id || "", name: record.name || "", topic: record.topic || "", trace } },
    el("td.mono", {}, when(record.ts)),
    el("td", {}, el("strong", {}, record.name || "–")),
    el("td", {}, el("code", {}, record.topic || "–")),
    el(
      "td.mono.nowrap",
      {},
      el("span", { title: record.id || "" }, short(record.id)),
      record.id ? el("button.link.why", { type: "button", title: "Why not? about this event", onclick: () => onWhy(record.id) }, "why?") : null,
    ),
    el("td.num", {}, record.seq == null ? "–" : String(record.seq)),
    el("td.mono.trace", { title: record.trace || "", dataset: { testid: "tap-trace" } }, trace || "–"),
    el("td.num", {}, record.age_ms == null ? "–" : `${Math.round(record.age_ms)} ms`),
    el(
      "td.payload",
      {},
      el("code", { title: payload }, payload.length > 160 ? `${payload.slice(0, 160)}…` : payload),
      record.truncated ? el("span.badge", { title: "the tap forwards at most 4 KB of a payload" }, "cut") : null,
    ),
  );
  row.dataset.search = [record.name, record.topic, record.id, record.trace, record.seq, payload].join(" ").toLowerCase();
  return row;
}

/** The trace id of a W3C traceparent ("00-<trace id>-<span id>-<flags>"). */
export function traceId(traceparent) {
  const parts = String(traceparent || "").split("-");
  return parts.length === 4 ? parts[1] : String(traceparent || "");
}

function short(id) {
  const text = String(id || "–");
  return text.length > 12 ? `${text.slice(0, 8)}…` : text;
}
