/**
 * "Why not?": did this user (or session) get that event (or events of that topic), and if
 * not, why? Answered from records, in two parts shown as one list of steps: the API says
 * whether the event was committed (`GET /inspect/api/events/<id>`, its outbox row), then
 * the topics leader (`inspect.why_not`) says what happened next: published (when, which
 * seq), the user connected, subscribed, refused (when, why), excluded by the event's
 * addressing, or delivered. The verdict comes first.
 */

import { el } from "../demo/ui.js";
import { HttpError, describe, request } from "./http.js";
import { when } from "./time.js";

export const VERDICTS = {
  delivered: "Delivered",
  refused: "Refused",
  not_subscribed: "Not subscribed",
  not_connected: "Not connected",
  excluded: "Excluded by addressing",
  not_published: "Not published",
  unknown: "Unknown",
};

// a step's `ok`: true (no obstacle to delivery), false (an obstacle), null (the records cannot tell)
const MARKS = { true: "✓", false: "✗", unknown: "?" };
const SAID = { true: "passed: ", false: "failed: ", unknown: "unknown: " };

export class WhyNot {
  constructor({ root, apiUrl, headers }) {
    this.$ = (selector) => root.querySelector(selector);
    this.apiUrl = apiUrl;
    this.headers = headers;
    this.session = null;
    this.asking = 0; // bumps per question: an older answer arriving late is left out
    this.form = this.$("#why-form");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(this.form);
      this.ask({
        whoKind: String(data.get("who_kind")),
        who: String(data.get("who")).trim(),
        whatKind: String(data.get("what_kind")),
        what: String(data.get("what")).trim(),
      });
    });
  }

  attach(session) {
    this.session = session;
  }

  detach() {
    this.session = null;
  }

  reset() {
    this.detach();
    this.form.reset();
    this.$("#why-answer").hidden = true;
  }

  /** Fill in the event (from the tap's "why?") and put the cursor on the user. */
  prefill(eventId) {
    this.$("#why-what-kind").value = "event";
    this.$("#why-what").value = eventId;
    this.$("#why-who").focus();
  }

  async ask({ whoKind, who, whatKind, what }) {
    const session = this.session;
    const asking = ++this.asking;
    if (!session) return this.show({ verdict: "unknown", reason: "Not connected." }, []);
    if (whoKind === "session" && !/^[0-9]+$/.test(who)) {
      return this.show({ verdict: "unknown", reason: `a session id is a number, not '${who}'` }, []);
    }
    this.show({ verdict: "pending", reason: "Asking…" }, []);
    const steps = whatKind === "event" ? [await this.committed(what)] : [];
    const kwargs = { [whoKind]: whoKind === "session" ? Number(who) : who, [whatKind]: what };
    let answer;
    try {
      answer = await session.call("inspect.why_not", [], kwargs);
    } catch (err) {
      if (asking === this.asking) this.show({ verdict: "unknown", reason: `inspect.why_not failed: ${describe(err)}` }, steps);
      return;
    }
    if (asking !== this.asking) return;
    const all = [...steps, ...(answer.steps || [])];
    this.show({ verdict: answer.verdict, reason: reasonOf(answer) }, all);
  }

  /** The API's step: was the event committed (its outbox row)? */
  async committed(id) {
    const check = "committed";
    try {
      const row = await request(this.apiUrl, `/inspect/api/events/${encodeURIComponent(id)}`, { headers: this.headers() });
      const ack = row.acknowledged ? "acknowledged by the bridge" : "not acknowledged by the bridge yet";
      return {
        check,
        ok: true,
        detail: `${row.event} committed to the outbox for ${row.topic}, seq ${row.seq}; ${ack}`,
        at: row.committed_at,
      };
    } catch (err) {
      const reason = err instanceof HttpError ? err.reason || err.message : describe(err);
      return { check, ok: false, detail: `GET /inspect/api/events/${id}: ${reason}` };
    }
  }

  show({ verdict, reason }, steps) {
    this.$("#why-answer").hidden = false;
    const line = this.$("#why-verdict");
    line.dataset.verdict = verdict;
    const label = VERDICTS[verdict] || (verdict === "pending" ? "" : verdict);
    // "Not subscribed" + "not subscribed when it was published: …" reads as one sentence
    const repeats = label && reason.toLowerCase().startsWith(label.toLowerCase());
    const rest = repeats ? reason.slice(label.length) : reason && label ? `: ${reason}` : reason;
    line.replaceChildren(...(label ? [el("strong", {}, label)] : []), rest);
    this.$("#why-steps").replaceChildren(
      ...steps.map((step) =>
        el(
          "li.step",
          { dataset: { testid: "why-step", check: step.check || "", ok: String(step.ok ?? "unknown") } },
          el("span.mark", { "aria-hidden": "true" }, MARKS[String(step.ok ?? "unknown")]),
          el("span.sr-only", {}, SAID[String(step.ok ?? "unknown")]),
          el("strong", {}, step.check || "check"),
          " ",
          el("span.detail", {}, step.detail || ""),
          step.at ? el("time", { title: String(step.at) }, when(step.at)) : null,
        ),
      ),
    );
  }
}

/** The check each verdict stems from: its step's detail is the verdict's reason. */
const BECAUSE = {
  delivered: "addressing",
  refused: "refused",
  not_subscribed: "subscribed",
  not_connected: "connected",
  excluded: "addressing",
  not_published: "published",
};

/** The verdict's reason: the detail of the step it stems from, else the first doubtful one. */
function reasonOf(answer) {
  const steps = answer.steps || [];
  const step = steps.find((s) => s.check === BECAUSE[answer.verdict]) || steps.find((s) => s.ok !== true);
  return step ? step.detail || step.check : "";
}
