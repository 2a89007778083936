/**
 * Sandbar's browser helper around AutobahnJS (loaded as the global `autobahn`).
 *
 * - connect():   a connection that reconnects forever and reports its state;
 * - subscribe(): like session.subscribe, but a refusal rejects with a Refusal that
 *                carries the topics service's reason (asked through explain.subscribe);
 * - send():      a message through a handled topic (session.call(uri, [payload])),
 *                rejecting with a Refusal that carries the handler's reason;
 * - Recovery:    pass `{recover}` to subscribe() and the handler gets every sequenced
 *                event of the topic exactly once, in order, across gaps and reconnects
 *                (missing ones are fetched from the API's GET /events);
 * - toOthers():  headers for a REST request whose events this session should not get;
 * - presence():  who is on a topic declared with `presence=`, kept up to date;
 * - EventAges:   how old each event was when this page got it (commit → browser), shown
 *                to the page and reported in batches to the API's histogram.
 *
 * Event handlers get (payload, meta, details): payload is args[0], meta the envelope
 * fields Sandbar puts in kwargs ({id, name, ts}, and {seq, epoch} for events from the
 * API's outbox), plus, with recovery, `sequenced` and `recovered` (see Recovery), and
 * with EventAges, `age` (seconds from commit to arrival here).
 * `meta.trace` is the W3C traceparent of the request that made the event (live and
 * recovered alike): pass it on (a `traceparent` header, a span link) to join its trace.
 */

export const NOT_AUTHORIZED = "wamp.error.not_authorized";
export const AUTHORIZATION_FAILED = "wamp.error.authorization_failed";
export const REJECTED = "sandbar.error.rejected";

/** A refused subscribe or message: `error` is the WAMP error URI, `reason` is for people. */
export class Refusal extends Error {
  constructor({ action, uri, error, reason }) {
    super(reason ? `${error}: ${reason}` : error);
    this.name = "Refusal";
    this.action = action;
    this.uri = uri;
    this.error = error;
    this.reason = reason || "";
  }

  /** True when nobody decided (the topics service is away): trying again later may work. */
  get temporary() {
    return this.error === AUTHORIZATION_FAILED;
  }
}

/** The default WebSocket URL: /ws on the origin that served the page. */
export function defaultUrl(loc = window.location) {
  return `${loc.protocol === "https:" ? "wss" : "ws"}://${loc.host}/ws`;
}

/**
 * Open a connection that retries forever; `url` may be a list (edge nodes: each retry
 * tries the next). `onState({state, attempt, delay, reason,
 * wampReason, message})`
 * reports "connecting", "open", "reconnecting" and "closed"; `onOpen(session)` runs
 * on every (re)connect, so subscribe there.
 */
export function connect({ url = defaultUrl(), realm = "sandbar", onOpen, onState, ...options } = {}) {
  const ab = globalThis.autobahn;
  if (!ab) {
    throw new Error("AutobahnJS is not loaded (run `make install` to build it into web/vendor/)");
  }
  const report = (state) => onState && onState(state);
  const urls = Array.isArray(url) ? url : [url]; // several: edge nodes, tried in turn
  const connection = new ab.Connection({
    url: urls[0],
    transports: urls.map((each) => ({ type: "websocket", url: each })),
    realm,
    max_retries: -1, // AutobahnJS gives up after 15 tries by default
    initial_retry_delay: 0.5,
    max_retry_delay: 5,
    retry_delay_growth: 1.5,
    use_es6_promises: true,
    ...options,
  });
  connection.onopen = (session, details) => {
    const proof = details && details.authextra && details.authextra.session_proof;
    if (typeof proof === "string") proofs.set(session, proof);
    report({ state: "open", session, details });
    if (onOpen) {
      Promise.resolve(onOpen(session, details)).catch((err) => console.error("onOpen failed", err));
    }
  };
  connection.onclose = (reason, details) => {
    // AutobahnJS takes the first transport it can *create*, and a WebSocket to a node that
    // is down is created all the same: turn the list so each retry tries the next URL.
    const factories = connection._transport_factories;
    if (urls.length > 1 && Array.isArray(factories)) factories.push(factories.shift());
    // details.reason is the router's WAMP reason (e.g. sandbar.error.token_expired
    // when a token is refused, sandbar.close.signed_out when the user signed out).
    const why = { wampReason: details.reason, message: details.message };
    report(
      details.will_retry
        ? { state: "reconnecting", attempt: details.retry_count, delay: details.retry_delay, reason, ...why }
        : { state: "closed", reason: details.message || reason, ...why },
    );
    return false; // returning true would cancel AutobahnJS's retries
  };
  report({ state: "connecting" });
  connection.open();
  return connection;
}

function errorUri(err) {
  return (err && err.error) || String(err);
}

function firstArg(err) {
  const arg = err && Array.isArray(err.args) ? err.args[0] : undefined;
  return typeof arg === "string" ? arg : "";
}

/**
 * Subscribe to `uri`; a refusal rejects with a Refusal naming the reason. With
 * `options.recover` (a Recovery) the handler gets the topic's events once each, in
 * order, with missed ones fetched; with `options.ages` (an EventAges) each live event's
 * age is measured on arrival; the other options go to session.subscribe.
 */
export async function subscribe(session, uri, handler, options = {}) {
  const { recover, ages, ...wampOptions } = options || {};
  const stream = recover ? recover.stream(uri, handler, session) : null;
  const deliver = stream
    ? (args, kwargs, details) => stream.live((args || [])[0], kwargs || {}, details)
    : (args, kwargs, details) => handler((args || [])[0], kwargs || {}, details);
  // measured on arrival, before the handler (or a gap's catch-up) can delay it
  const onEvent = ages
    ? (args, kwargs, details) => {
        ages.arrived((details && details.topic) || uri, kwargs, session);
        return deliver(args, kwargs, details);
      }
    : deliver;
  try {
    const subscription = await session.subscribe(uri, onEvent, wampOptions);
    if (stream) stream.resume(); // a topic seen before: fetch what was missed while away
    return subscription;
  } catch (err) {
    const error = errorUri(err);
    let reason = firstArg(err);
    if (error === NOT_AUTHORIZED) {
      try {
        const explained = await session.call("explain.subscribe", [uri]);
        reason = (explained && explained.reason) || reason;
      } catch (explainErr) {
        reason = reason || `no reason given (${errorUri(explainErr)})`;
      }
    }
    throw new Refusal({ action: "subscribe", uri, error, reason });
  }
}

/** Send `payload` through the handled topic `uri`; resolves to the publication id. */
export async function send(session, uri, payload) {
  try {
    return await session.call(uri, [payload]);
  } catch (err) {
    throw new Refusal({ action: "send", uri, error: errorUri(err), reason: firstArg(err) });
  }
}

// -- toOthers ---------------------------------------------------------------------------

/** Per session, the proof the topics service gave it at sign-in (WELCOME authextra). */
const proofs = new WeakMap();

export const SESSION_HEADER = "X-Sandbar-Session";

/**
 * Headers that make the API leave this session out of the events a REST request causes
 * (Laravel's toOthers): `fetch(url, {headers: {...auth, ...toOthers(session)}})`. Only a
 * signed-in session has the proof the API needs; otherwise this is `{}` and the request's
 * events reach this session like any other.
 */
export function toOthers(session) {
  const proof = session && proofs.get(session);
  return proof ? { [SESSION_HEADER]: `${session.id}.${proof}` } : {};
}

// -- presence ---------------------------------------------------------------------------

export const PRESENCE_PROCEDURE = "presence.get";

/**
 * Who is on `uri` (a topic declared with `presence=("user",)`): subscribes to it, fetches
 * the list (`presence.get`), then follows `presence.join` / `presence.leave` events.
 * `onChange(list)` gets `[{authid, extra}]`, one entry per user however many tabs, first
 * with the fetched list and then on every change. Resolves to `{subscription, list()}`;
 * a refusal rejects with a Refusal (whoever may not subscribe may not see who is there).
 */
export async function presence(session, uri, onChange) {
  const here = new Map();
  const early = []; // events that came before the list: replayed on top of it, in order
  let listed = false;
  const apply = (name, entry) => {
    if (name === "presence.join") here.set(entry.authid, entry);
    else if (name === "presence.leave") here.delete(entry.authid);
  };
  const report = () => onChange && onChange([...here.values()]);
  const subscription = await subscribe(session, uri, (payload, meta) => {
    if (!payload || !meta || !String(meta.name).startsWith("presence.")) return;
    if (!listed) return void early.push([meta.name, payload]);
    apply(meta.name, payload);
    report();
  });
  let list;
  try {
    list = await session.call(PRESENCE_PROCEDURE, [uri]);
  } catch (err) {
    await Promise.resolve(session.unsubscribe(subscription)).catch(() => {});
    throw new Refusal({ action: "presence", uri, error: errorUri(err), reason: firstArg(err) });
  }
  for (const entry of list || []) here.set(entry.authid, entry);
  for (const [name, entry] of early) apply(name, entry);
  listed = true;
  report();
  return { subscription, list: () => [...here.values()] };
}

// -- recovery ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Catch-up for sequenced topics, shared by a page's subscriptions and kept across
 * reconnects (make one per page). For each topic it keeps the last `seq` and `epoch`,
 * drops duplicates, and on a gap (while connected) or a reconnect fetches what is missing
 * from `GET /events` (paging until `more` is false), so the handler gets each event once,
 * in order: `meta.recovered` is true for the fetched ones. Events without a `seq` (the
 * topics service's welcomes, joins, chat messages) pass straight through with
 * `meta.sequenced === false`.
 *
 * `onReload({topic, reason, error})` says the handler's state can no longer be patched up
 * event by event, so the page should reload it (e.g. GET the list again): `reason` is
 * "epoch" (a new database numbers from 1 again), "truncated" (the API no longer keeps
 * the missed events) or "unavailable" (GET /events failed `retries` times). Events then
 * continue after the newest one known.
 */
export class Recovery {
  constructor({ apiUrl, headers = () => ({}), onReload = () => {}, limit = 500, retries = 3 }) {
    this.apiUrl = String(apiUrl).replace(/\/$/, "");
    this.headers = headers;
    this.onReload = onReload;
    this.limit = limit;
    this.retries = retries;
    this.streams = new Map(); // topic → Stream
    this.sessionIds = []; // this page's recent sessions: GET /events leaves out their own echoes
  }

  /** The topic's stream; `handler` and `session` are the current subscription's. */
  stream(uri, handler, session) {
    let stream = this.streams.get(uri);
    if (!stream) this.streams.set(uri, (stream = new Stream(this, uri)));
    stream.handler = handler;
    if (session && !this.sessionIds.includes(session.id)) {
      this.sessionIds = [session.id, ...this.sessionIds].slice(0, 8);
    }
    return stream;
  }

  /** Counts per topic: live, recovered, duplicates, gaps, fetches, reloads, unsequenced. */
  counts() {
    return Object.fromEntries([...this.streams].map(([uri, stream]) => [uri, { ...stream.counts }]));
  }

  /** One page of GET /events after `after`; an HTTP error rejects (4xx: `permanent`). */
  async page(uri, after) {
    const query = new URLSearchParams({ topic: uri, after: String(after), limit: String(this.limit) });
    const headers = { ...(await this.headers()) };
    if (this.sessionIds.length) headers[SESSION_HEADER] = this.sessionIds.join(",");
    const response = await fetch(`${this.apiUrl}/events?${query}`, { headers });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      error.permanent = response.status >= 400 && response.status < 500;
      throw error;
    }
    return body;
  }
}

/** One topic's position and the live events held while a gap is being filled. */
class Stream {
  constructor(recovery, uri) {
    this.recovery = recovery;
    this.uri = uri;
    this.handler = () => {};
    this.epoch = null;
    this.last = null; // the seq of the last event handed over (null: none yet)
    this.held = new Map(); // seq → live event waiting for the ones before it
    this.fetching = null;
    this.again = false; // a fetch was asked for while one ran
    this.counts = { live: 0, recovered: 0, duplicates: 0, gaps: 0, fetches: 0, reloads: 0, unsequenced: 0 };
  }

  /** A live event from the router. */
  live(payload, kwargs, details) {
    const { seq, epoch } = kwargs;
    if (!Number.isInteger(seq)) {
      this.counts.unsequenced += 1;
      this.emit(payload, { ...kwargs, sequenced: false, recovered: false }, details);
      return;
    }
    if (this.epoch !== null && epoch !== this.epoch) {
      this.reload("epoch");
      this.held.clear();
      this.last = null;
    }
    this.epoch = epoch;
    if (this.last === null) this.last = seq - 1; // the first event: count from here
    if (seq <= this.last || this.held.has(seq)) {
      this.counts.duplicates += 1;
      return;
    }
    this.held.set(seq, { payload, meta: kwargs, details });
    this.release();
  }

  /** (Re)subscribed: if this topic had events before, fetch what came meanwhile. */
  resume() {
    if (this.last !== null) this.fetch();
  }

  /** Hand over what is in order; a gap starts a fetch. */
  release() {
    if (this.fetching) return;
    while (this.held.has(this.last + 1)) this.deliver(this.last + 1, false);
    if (this.held.size) {
      this.counts.gaps += 1;
      this.fetch();
    }
  }

  fetch() {
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.counts.fetches += 1;
    this.fetching = this.catchUp()
      .catch((error) => {
        this.reload("unavailable", error);
        this.deliverHeld(Infinity); // give up on the gap, keep the order
      })
      .finally(() => {
        this.fetching = null;
        if (this.again) {
          this.again = false;
          this.fetch();
        } else {
          this.release();
        }
      });
  }

  /**
   * Page through GET /events from the last seq. Every live event held when a page is asked
   * for is committed, and so is everything before it: once the last page is in, anything
   * up to those that the outbox did not return is not for this reader (another user's
   * event, this session's own echo), so the held events go out in order.
   */
  async catchUp() {
    let skipping = false; // after a reload: jump to the newest event, handing nothing over
    let horizon = this.last;
    for (let failures = 0; ; ) {
      horizon = Math.max(this.last, ...this.held.keys());
      let page;
      try {
        page = await this.recovery.page(this.uri, this.last);
      } catch (error) {
        if (error.permanent || ++failures > this.recovery.retries) throw error;
        await sleep(250 * 2 ** failures);
        continue;
      }
      failures = 0;
      if (!skipping && page.epoch && this.epoch !== null && page.epoch !== this.epoch) {
        this.epoch = page.epoch;
        skipping = this.reload("epoch") || true;
        this.last = 0;
        continue;
      }
      if (!skipping && page.truncated) skipping = this.reload("truncated") || true;
      const before = this.last;
      for (const event of page.events || []) {
        if (event.seq <= this.last) continue;
        if (skipping) {
          this.last = event.seq;
          continue;
        }
        this.deliverHeld(event.seq - 1);
        if (this.held.has(event.seq)) this.deliver(event.seq, false);
        else this.deliver(event.seq, true, { payload: event.payload, meta: this.metaOf(event) });
      }
      if (!page.more || this.last === before) break; // no progress: nothing more to read
    }
    this.deliverHeld(horizon);
  }

  metaOf(event) {
    const meta = { id: event.id, name: event.name, ts: event.ts, seq: event.seq, epoch: this.epoch };
    if (event.trace) meta.trace = event.trace;
    return meta;
  }

  /** Hand over the held events up to `seq`, in order (dropping those already passed). */
  deliverHeld(seq) {
    for (const held of [...this.held.keys()].sort((a, b) => a - b)) {
      if (held > seq) break;
      if (held <= this.last) {
        this.held.delete(held);
        this.counts.duplicates += 1;
      } else {
        this.deliver(held, false);
      }
    }
  }

  deliver(seq, recovered, event = this.held.get(seq)) {
    this.held.delete(seq);
    this.last = seq;
    this.counts[recovered ? "recovered" : "live"] += 1;
    this.emit(event.payload, { ...event.meta, sequenced: true, recovered }, event.details);
  }

  emit(payload, meta, details) {
    try {
      this.handler(payload, meta, details);
    } catch (err) {
      console.error(`handler for '${this.uri}' failed`, err);
    }
  }

  reload(reason, error) {
    this.counts.reloads += 1;
    try {
      this.recovery.onReload({ topic: this.uri, reason, error });
    } catch (err) {
      console.error("onReload failed", err);
    }
    return true;
  }
}

// -- event ages -------------------------------------------------------------------------

/**
 * How old each live event is when this page gets it: the API's clock stamps `meta.ts` at
 * commit, so the page learns its offset from that clock (`sync()`, GET /time: the reply
 * with the shortest round trip of a few, taken at its midpoint) and measures
 * `now + offset - ts`. Ages are kept for the page (`quantile(0.5)`, `last`) and sent in
 * batches to the API (POST /event-ages, every `interval` ms, at most `maxBatch` at once),
 * which adds them to `sandbar_browser_event_age_seconds`. Make one per page; call
 * `sync()` on every (re)connect and pass it to subscribe() as `{ages}`.
 */
export class EventAges {
  constructor({ apiUrl, interval = 5000, maxBatch = 200, keep = 1000, onAge = () => {}, headers = () => ({}) }) {
    this.apiUrl = String(apiUrl).replace(/\/$/, "");
    this.interval = interval;
    this.maxBatch = maxBatch;
    this.keep = keep;
    this.onAge = onAge;
    this.headers = headers;
    this.offset = null; // ms to add to Date.now() for the API's clock; null until synced
    this.recent = []; // the last `keep` ages, in seconds
    this.pending = [];
    this.session = null;
    this.sent = 0; // ages the API accepted
    this.timer = null;
    this.sending = null;
    globalThis.addEventListener?.("pagehide", () => this.flush({ keepalive: true }));
  }

  /** Learn the offset to the API's clock (best of `samples` round trips). */
  async sync(samples = 3) {
    let best = null;
    for (let i = 0; i < samples; i++) {
      const sent = Date.now();
      const response = await fetch(`${this.apiUrl}/time`, { cache: "no-store" });
      const { now } = await response.json();
      const received = Date.now();
      if (!best || received - sent < best.rtt) best = { rtt: received - sent, offset: now - (sent + received) / 2 };
    }
    this.offset = best.offset;
    return best;
  }

  /** One live event arrived on `topic` (caught-up ones are not deliveries: not counted). */
  arrived(topic, meta, session) {
    if (this.offset === null || !meta || typeof meta.ts !== "number") return;
    const age = (Date.now() + this.offset - meta.ts) / 1000;
    meta.age = age; // the handler sees it too (meta is this event's own kwargs)
    this.session = session;
    this.recent.push(age);
    if (this.recent.length > this.keep) this.recent.shift();
    this.pending.push({ topic, age });
    if (this.pending.length > this.maxBatch * 5) this.pending.splice(0, this.pending.length - this.maxBatch * 5);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.interval);
    try {
      this.onAge(age, topic, meta);
    } catch (err) {
      console.error("onAge failed", err);
    }
  }

  /** The q-quantile (0..1) of this page's recent ages in seconds, or null. */
  quantile(q) {
    if (!this.recent.length) return null;
    const sorted = [...this.recent].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  }

  /** Send what is pending (one batch now; the rest on the next tick). */
  async flush({ keepalive = false } = {}) {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.sending || !this.pending.length || !this.session) return this.sending;
    const batch = this.pending.splice(0, this.maxBatch);
    const body = JSON.stringify({ session: this.session.id, ages: batch });
    this.sending = fetch(`${this.apiUrl}/event-ages`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...this.headers() },
      body,
      keepalive,
    })
      .then(async (response) => {
        if (response.ok) this.sent += batch.length;
        else if (response.status === 429) this.pending.unshift(...batch); // later
        else console.warn("event ages refused", response.status, await response.text());
      })
      .catch(() => this.pending.unshift(...batch)) // the API is away: keep them for later
      .finally(() => {
        this.sending = null;
        if (this.pending.length && !this.timer) this.timer = setTimeout(() => this.flush(), this.interval);
      });
    return this.sending;
  }
}
