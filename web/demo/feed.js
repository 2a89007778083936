/**
 * The live article feed: recent articles from the REST API, then every `articles` event
 * as it is pushed. The form POSTs to the API (cross-origin: the API allows this origin).
 */

import { subscribe } from "../sandbar.js";
import { clockTime, el } from "./ui.js";

const RECENT = 20;

export class Feed {
  constructor({ root, apiUrl, refusals, account }) {
    this.apiUrl = apiUrl;
    this.account = account;
    this.refusals = refusals;
    this.list = root.querySelector("#feed-list");
    this.empty = root.querySelector("#feed-empty");
    this.status = root.querySelector("#feed-status");
    this.form = root.querySelector("#article-form");
    this.formStatus = root.querySelector("#article-status");
    this.shown = new Map(); // article id -> <li>
    root.querySelector("#api-url").textContent = apiUrl;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.publish();
    });
  }

  /** On every (re)connect: subscribe, then fill in what was published while away. */
  async attach(session) {
    await subscribe(session, "articles", (article, meta) => this.onEvent(article, meta));
    this.setStatus("live", "Live: new articles appear here the moment they are created.");
    if (!(await this.catchUp())) await this.loadRecent();
  }

  /** Live events carry a per-topic seq (and the outbox's epoch): remember where we are. */
  onEvent(article, meta) {
    if (meta && Number.isInteger(meta.seq)) {
      if (meta.epoch !== this.epoch) this.seq = 0; // a new database numbers from 1 again
      this.epoch = meta.epoch;
      this.seq = Math.max(this.seq || 0, meta.seq);
    }
    this.show(article, meta);
  }

  /**
   * After a reconnect, fetch exactly what was published while away (GET /events, from the
   * API's outbox). Returns false when there is nothing to go on (first load, or the
   * events are older than the API keeps), so the caller loads recent articles instead.
   */
  async catchUp() {
    if (!this.seq) return false;
    try {
      for (;;) {
        const query = new URLSearchParams({ topic: "articles", after: this.seq, limit: 500 });
        const response = await fetch(`${this.apiUrl}/events?${query}`, { headers: this.account.headers() });
        const page = await response.json();
        if (!response.ok || page.truncated) return false;
        for (const event of page.events) {
          this.seq = Math.max(this.seq, event.seq);
          this.show(event.payload, { id: event.id, ts: event.ts, caughtUp: true });
        }
        if (!page.more) return true;
      }
    } catch (err) {
      return false;
    }
  }

  async loadRecent() {
    try {
      const response = await fetch(`${this.apiUrl}/articles?limit=${RECENT}`);
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
      for (const article of body.articles.slice().reverse()) this.show(article, null);
    } catch (err) {
      // Live all the same: only the history is missing.
      this.setStatus("warn", `Live, but earlier articles could not be loaded from ${this.apiUrl}: ${err.message}`);
    }
  }

  setStatus(kind, text) {
    this.status.dataset.kind = kind;
    this.status.textContent = text;
  }

  /** Show an article once (events may repeat after a reconnect); meta is set for pushed ones. */
  show(article, meta) {
    if (!article || this.shown.has(article.id)) return;
    const when = Date.parse(article.created_at) || (meta && meta.ts) || Date.now();
    const item = el(
      "li.article",
      { dataset: { id: article.id, live: !meta ? "false" : meta.caughtUp ? "caught-up" : "true" } },
      el(
        "div.article-head",
        {},
        el("h3.article-title", {}, article.title),
        meta ? el("span.badge.badge-live", { title: `event ${meta.id}` }, meta.caughtUp ? "caught up" : "live") : null,
      ),
      el("p.article-body", {}, article.body),
      el("div.article-meta", {}, `#${article.id} · ${clockTime(when)}`),
    );
    // Keep newest first by id: a pushed event may overtake the initial page load.
    const newer = [...this.shown.keys()].filter((id) => id > article.id);
    const before = newer.length ? this.shown.get(Math.min(...newer)).nextSibling : this.list.firstChild;
    this.list.insertBefore(item, before);
    this.shown.set(article.id, item);
    this.empty.hidden = true;
    while (this.list.children.length > 100) this.drop(this.list.lastChild);
  }

  drop(item) {
    this.shown.delete(Number(item.dataset.id));
    item.remove();
  }

  async publish() {
    const data = new FormData(this.form);
    const button = this.form.querySelector("button");
    button.disabled = true;
    this.formStatus.dataset.kind = "pending";
    this.formStatus.textContent = "Publishing…";
    try {
      const response = await fetch(`${this.apiUrl}/articles`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...this.account.headers() },
        body: JSON.stringify({ title: data.get("title"), body: data.get("body") }),
      });
      const body = await response.json();
      if (!response.ok) {
        const error = body.error || {};
        this.formStatus.dataset.kind = "error";
        this.formStatus.textContent = error.message || response.statusText;
        this.refusals.add({
          what: "POST /articles",
          error: `HTTP ${response.status} ${error.code || ""}`.trim(),
          reason: error.message,
        });
        return;
      }
      this.form.reset();
      this.formStatus.dataset.kind = "ok";
      this.formStatus.textContent = `Created #${body.id}: it reaches the feed through the bridge and router.`;
    } catch (err) {
      const reason = `${err.message}: is the API running at ${this.apiUrl}, and does it allow this origin (SANDBAR_API_CORS_ORIGINS)?`;
      this.formStatus.dataset.kind = "error";
      this.formStatus.textContent = reason;
      this.refusals.add({ what: "POST /articles", error: "network error", reason });
    } finally {
      button.disabled = false;
    }
  }
}
