/**
 * The inspector's HTTP calls to the API: JSON in and out, an API error (`{"error":
 * {"code", "message"}}`) turned into an HttpError whose message names the status and the code.
 */

export class HttpError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(`${status}${error.code ? ` ${error.code}` : ""}: ${error.message || "no message"}`);
    this.name = "HttpError";
    this.status = status;
    this.code = error.code || "";
    this.reason = error.message || "";
    this.body = body;
  }
}

/** `fetch` the API at `apiUrl + path`; resolves to the JSON body, rejects with HttpError. */
export async function request(apiUrl, path, { method = "GET", headers = {}, json } = {}) {
  const init = { method, headers: { ...headers }, cache: "no-store" };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(`${apiUrl}${path}`, init);
  } catch (err) {
    throw new Error(`the API at ${apiUrl} did not answer (${err.message}); is it running, and does it allow this origin (SANDBAR_API_CORS_ORIGINS)?`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new HttpError(response.status, body);
  return body;
}

/** What a failed WAMP call (an autobahn.Error: `error` URI, `args`) or request says, for people. */
export function describe(err) {
  if (err && typeof err.error === "string") {
    const arg = Array.isArray(err.args) && typeof err.args[0] === "string" ? err.args[0] : "";
    return arg ? `${err.error}: ${arg}` : err.error;
  }
  return err instanceof Error ? err.message : String(err);
}
