/** Times in the inspector's answers: unix seconds (the backends), unix ms or ISO 8601 (the API). */

/** `value` as unix ms, or null. */
export function toMs(value) {
  if (typeof value === "number") return value < 1e11 ? value * 1000 : value; // seconds or ms
  if (typeof value === "string" && value) {
    const parsed = /^[0-9.]+$/.test(value) ? toMs(Number(value)) : Date.parse(value);
    return Number.isFinite(parsed) ? parsed : null;
  }
  return null;
}

/** The local wall-clock time, 24 h, with milliseconds: what happened when, to the event. */
export function when(value) {
  const ms = toMs(value);
  if (ms === null) return String(value ?? "–");
  const t = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}.${String(t.getMilliseconds()).padStart(3, "0")}`;
}

/** "4 s ago", "3 min ago", "2 h ago". */
export function ago(value, now = Date.now()) {
  const ms = toMs(value);
  if (ms === null) return "–";
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
