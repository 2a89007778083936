/**
 * The publish form: a test event sent through the real path (`POST /inspect/api/publish`:
 * the API's outbox, in a transaction, then the bridge), with the staff token. The event
 * names come from the API's AsyncAPI document (`GET /asyncapi.json`); picking one fills the
 * payload with a skeleton of its schema. The answer (or the API's error) shows below.
 */

import { HttpError, describe, request } from "./http.js";

export class Publish {
  constructor({ root, apiUrl, headers }) {
    this.$ = (selector) => root.querySelector(selector);
    this.apiUrl = apiUrl;
    this.headers = headers;
    this.schemas = new Map(); // event name → payload skeleton
    this.loaded = false;
    this.select = this.$("#publish-event");
    this.payload = this.$("#publish-payload");
    this.select.addEventListener("change", () => this.fillSkeleton());
    this.$("#publish-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  /** The events the API declares, once per page. */
  async load() {
    if (this.loaded) return;
    const status = this.$("#publish-events-status");
    try {
      const doc = await request(this.apiUrl, "/asyncapi.json");
      const messages = Object.values((doc.components && doc.components.messages) || {});
      for (const message of messages) this.schemas.set(message.name, skeleton(doc, message.payload));
      const names = [...this.schemas.keys()].sort();
      this.select.replaceChildren(...names.map((name) => new Option(name, name)));
      if (names.includes("article.created")) this.select.value = "article.created";
      this.fillSkeleton();
      this.loaded = true;
      status.textContent = `${names.length} events declared (GET /asyncapi.json)`;
    } catch (err) {
      status.textContent = `could not list the events: ${describe(err)}`;
    }
  }

  /** Signed out: no answer of the last staff user's stays on the page. */
  reset() {
    this.$("#publish-answer").hidden = true;
    this.fillSkeleton();
  }

  fillSkeleton() {
    const example = this.schemas.get(this.select.value);
    if (example !== undefined) this.payload.value = JSON.stringify(example, null, 2);
  }

  async send() {
    let payload;
    try {
      payload = JSON.parse(this.payload.value);
    } catch (err) {
      return this.answer("error", `The payload is not JSON: ${err.message}`);
    }
    this.answer("pending", "Sending…");
    try {
      const body = await request(this.apiUrl, "/inspect/api/publish", {
        method: "POST",
        headers: this.headers(),
        json: { event: this.select.value, payload },
      });
      const seq = body.seq == null ? "" : `, seq ${body.seq}`;
      this.answer("ok", `Accepted: ${body.event} ${body.id} on ${body.topic}${seq}\n${JSON.stringify(body, null, 2)}`, body.id);
    } catch (err) {
      const field = err instanceof HttpError && err.body && err.body.error && err.body.error.field;
      this.answer("error", `Refused: ${describe(err)}${field ? `\n(field: ${field})` : ""}`);
    }
  }

  answer(kind, text, id = "") {
    const box = this.$("#publish-answer");
    box.hidden = false;
    box.dataset.kind = kind;
    box.dataset.id = id;
    box.textContent = text;
  }
}

/** A payload to start from: each property of the schema with a placeholder of its type. */
export function skeleton(doc, schema, depth = 0) {
  schema = resolve(doc, schema);
  if (!schema || depth > 4) return {};
  if (schema.type === "object" || schema.properties) {
    const out = {};
    for (const [name, property] of Object.entries(schema.properties || {})) {
      out[name] = placeholder(doc, name, resolve(doc, property), depth);
    }
    return out;
  }
  return placeholder(doc, "value", schema, depth);
}

function placeholder(doc, name, schema, depth) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (schema.default !== undefined) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  if (type === "string") {
    return schema.format === "date-time" || /ISO 8601/.test(schema.description || "")
      ? new Date().toISOString().replace(/\.\d+Z$/, "Z")
      : `test ${name}`;
  }
  if (type === "integer" || type === "number") return 1;
  if (type === "boolean") return false;
  if (type === "array") return [];
  if (type === "object" || schema.properties) return skeleton(doc, schema, depth + 1);
  return null;
}

function resolve(doc, schema) {
  for (let hops = 0; schema && schema.$ref && hops < 8; hops++) {
    const path = String(schema.$ref).replace(/^#\//, "").split("/");
    schema = path.reduce((node, key) => (node ? node[key] : undefined), doc);
  }
  return schema;
}
