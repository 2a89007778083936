/**
 * Sandbar's browser helper around AutobahnJS (loaded as the global `autobahn`).
 *
 * - connect():   a connection that reconnects forever and reports its state;
 * - subscribe(): like session.subscribe, but a refusal rejects with a Refusal that
 *                carries the topics service's reason (asked through explain.subscribe);
 * - send():      a message through a handled topic (session.call(uri, [payload])),
 *                rejecting with a Refusal that carries the handler's reason.
 *
 * Event handlers get (payload, meta, details): payload is args[0], meta the envelope
 * fields {id, name, ts} that Sandbar puts in kwargs.
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
 * Open a connection that retries forever. `onState({state, attempt, delay, reason,
 * wampReason, message})`
 * reports "connecting", "open", "reconnecting" and "closed"; `onOpen(session)` runs
 * on every (re)connect, so subscribe there.
 */
export function connect({ url = defaultUrl(), realm = "sandbar", onOpen, onState, ...options } = {}) {
  const ab = globalThis.autobahn;
  if (!ab) {
    throw new Error("AutobahnJS is not loaded (run `make install` to fetch it into web/vendor/)");
  }
  const report = (state) => onState && onState(state);
  const connection = new ab.Connection({
    url,
    realm,
    max_retries: -1, // AutobahnJS gives up after 15 tries by default
    initial_retry_delay: 0.5,
    max_retry_delay: 5,
    retry_delay_growth: 1.5,
    use_es6_promises: true,
    ...options,
  });
  connection.onopen = (session, details) => {
    report({ state: "open", session, details });
    if (onOpen) {
      Promise.resolve(onOpen(session, details)).catch((err) => console.error("onOpen failed", err));
    }
  };
  connection.onclose = (reason, details) => {
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

/** Subscribe to `uri`; a refusal rejects with a Refusal naming the reason. */
export async function subscribe(session, uri, handler, options) {
  const onEvent = (args, kwargs, details) => handler((args || [])[0], kwargs || {}, details);
  try {
    return await session.subscribe(uri, onEvent, options);
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
