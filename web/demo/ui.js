/** Small DOM helpers for the demo page: element building, times, names, the refusal log. */

/** el("li.item", {title: "x"}, "text", child) -> an element; "tag.class1.class2" sets classes. */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag);
  if (classes.length) node.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
  return node;
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** Crossbar names anonymous sessions like "K9WN-FQLU-3UQN-…": the first two groups suffice. */
export function shortName(authid) {
  return String(authid || "someone").split("-").slice(0, 2).join("-");
}

/** A stable hue per name, for avatars. */
export function hue(name) {
  let h = 0;
  for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

export function avatar(authid) {
  const name = shortName(authid);
  return el("span.avatar", { style: `--hue: ${hue(name)}`, "aria-hidden": "true" }, name.slice(0, 2));
}

/** The page-wide log of refusals and errors, newest first. */
export class RefusalLog {
  constructor(list, empty, counter) {
    this.list = list;
    this.empty = empty;
    this.counter = counter;
    this.count = 0;
  }

  /** Record a refusal: `what` says what was tried, `error` the WAMP/HTTP error, `reason` why. */
  add({ what, error, reason }) {
    this.count += 1;
    this.counter.textContent = String(this.count);
    this.empty.hidden = true;
    this.list.prepend(
      el(
        "li.refusal",
        { dataset: { error } },
        el("div.refusal-head", {}, el("strong", {}, what), el("time", {}, clockTime(Date.now()))),
        el("code.refusal-error", {}, error),
        el("p.refusal-reason", {}, reason || "no reason given"),
      ),
    );
    while (this.list.children.length > 50) this.list.lastChild.remove();
  }
}
