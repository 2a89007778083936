/**
 * The live article feed: recent articles from the REST API, then every `articles` event
 * as it is pushed. The form POSTs to the API (cross-origin: the API allows this origin).
 */

import { EventAges, Recovery, subscribe, toOthers } from "../sandbar.js";
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
    this.session = null;
    this.recovery = new Recovery({
      apiUrl,
      headers: () => account.headers(),
      onReload: () => this.loadRecent(),
    });
    // how old each live article event is on arrival, and this page's p50/p99 (sent to the API)
    this.ages = new EventAges({ apiUrl, onAge: () => this.showAges() });
    this.agesLine = root.querySelector("#feed-ages");
    root.querySelector("#api-url").textContent = apiUrl;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.publish();
    });
  }

  /**
   * On every (re)connect: subscribe through sandbar.js's Recovery, which fetches what was
   * published while away (GET /events) and fills gaps; on a first load (no event seen
   * yet), or when the recovery says the feed must be reloaded, show the newest articles.
   */
  async attach(session) {
    this.session = session;
    await this.ages.sync().catch(() => {}); // the API away: no ages until the next connect
    await subscribe(session, "articles", (article, meta) => this.show(article, meta), {
      recover: this.recovery,
      ages: this.ages,
    });
    this.setStatus("live", "Live: new articles appear here the moment they are created.");
    const seen = this.recovery.streams.get("articles");
    if (!seen || seen.last === null) await this.loadRecent();
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

  showAges() {
    const ms = (seconds) => `${Math.round(seconds * 1000)} ms`;
    const { recent } = this.ages;
    this.agesLine.textContent = `event age p50 ${ms(this.ages.quantile(0.5))} · p99 ${ms(this.ages.quantile(0.99))} (${recent.length} events)`;
    this.agesLine.dataset.count = String(recent.length);
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
      { dataset: { id: article.id, live: !meta ? "false" : meta.recovered ? "caught-up" : "true" } },
      el(
        "div.article-head",
        {},
        el("h3.article-title", {}, article.title),
        meta ? el("span.badge.badge-live", { title: `event ${meta.id}` }, meta.recovered ? "caught up" : "live") : null,
        meta && typeof meta.age === "number"
          ? el("span.badge.badge-age", { title: "commit → this page", dataset: { age: String(meta.age) } }, `${Math.round(meta.age * 1000)} ms`)
          : null,
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

  /** With "Not to this tab" ticked, the article's event skips this tab (toOthers). */
  echo() {
    const box = this.form.querySelector("[name=others]");
    return box && box.checked ? toOthers(this.session) : {};
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
        headers: { "Content-Type": "application/json", ...this.account.headers(), ...this.echo() },
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
      const others = Object.keys(this.echo()).length > 0;
      this.form.reset();
      this.form.querySelector("[name=others]").checked = others;
      this.formStatus.dataset.kind = "ok";
      this.formStatus.textContent = others
        ? `Created #${body.id}: its event goes to every other tab, not this one.`
        : `Created #${body.id}: it reaches the feed through the bridge and router.`;
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
