/**
 * The chat: one channel at a time (`chat.<channel>`), with presence (welcome, join, leave,
 * member count) and messages sent through the handled topic, so the topics service checks
 * and stamps each one. Refusals show in place and in the page's refusal log.
 */

import { send, subscribe } from "../sandbar.js";
import { avatar, clockTime, el, shortName } from "./ui.js";

const RETRY_MS = 1000; // when the topics service is briefly away (router restart)

export class Chat {
  constructor({ root, refusals, channels }) {
    this.refusals = refusals;
    this.session = null;
    this.wanted = null; // the channel the user chose, kept across reconnects
    this.joined = null; // the channel we are subscribed to now
    this.subscription = null;
    this.me = null;
    this.attempt = 0; // bumps on every join/leave so stale answers are ignored
    this.$ = (selector) => root.querySelector(selector);
    this.messages = this.$("#chat-messages");
    this.composer = this.$("#chat-form");
    this.input = this.$("#chat-text");
    this.renderChannels(channels);
    this.$("#channel-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const name = this.$("#channel-name").value.trim();
      if (name) this.join(name);
    });
    this.$("#chat-leave").addEventListener("click", () => this.leave());
    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendMessage();
    });
    this.render();
  }

  renderChannels(channels) {
    const list = this.$("#channel-list");
    for (const name of channels) {
      list.append(
        el(
          "button.chip",
          { type: "button", dataset: { channel: name }, onclick: () => this.join(name) },
          `#${name}`,
        ),
      );
    }
  }

  /** On every (re)connect: rejoin the chosen channel on the new session. */
  attach(session) {
    this.session = session;
    this.joined = null;
    this.subscription = null;
    if (this.wanted) this.subscribeTo(this.wanted, true);
    this.render();
  }

  detach() {
    this.session = null;
    this.joined = null;
    this.subscription = null;
    this.render();
  }

  async join(channel) {
    if (channel === this.wanted && this.joined === channel) return;
    await this.unsubscribe();
    this.wanted = channel;
    this.messages.replaceChildren();
    this.setMembers(null);
    this.setSendError(null);
    this.$("#channel-name").value = "";
    if (this.session) await this.subscribeTo(channel, false);
    this.render();
  }

  async subscribeTo(channel, rejoin) {
    const attempt = ++this.attempt;
    const session = this.session;
    this.setNotice("pending", `${rejoin ? "Rejoining" : "Joining"} #${channel}…`);
    try {
      const subscription = await subscribe(session, `chat.${channel}`, (payload, meta) =>
        this.onEvent(channel, payload, meta),
      );
      if (attempt !== this.attempt || session !== this.session) {
        await subscription.unsubscribe().catch(() => {});
        return;
      }
      this.subscription = subscription;
      this.joined = channel;
      this.setNotice(null);
    } catch (refusal) {
      if (attempt !== this.attempt || session !== this.session) return;
      this.refusals.add({
        what: `join #${channel}`,
        error: refusal.error,
        reason: refusal.reason,
      });
      if (refusal.temporary) {
        this.setNotice("error", `Could not join #${channel} yet: ${refusal.reason || refusal.error}. Retrying…`);
        setTimeout(() => {
          if (attempt === this.attempt && session === this.session) this.subscribeTo(channel, rejoin);
        }, RETRY_MS);
      } else {
        this.wanted = null;
        this.setNotice("error", `Could not join #${channel}: ${refusal.reason || "refused"}`, refusal.error);
      }
    }
    this.render();
  }

  async unsubscribe() {
    this.attempt += 1;
    const subscription = this.subscription;
    this.subscription = null;
    this.joined = null;
    if (subscription && this.session) await subscription.unsubscribe().catch(() => {});
  }

  async leave() {
    const channel = this.joined || this.wanted;
    await this.unsubscribe();
    this.wanted = null;
    this.setMembers(null);
    if (channel) this.system(`You left #${channel}.`, "leave");
    this.setNotice(null);
    this.render();
  }

  onEvent(channel, payload, meta) {
    if (channel !== this.joined && channel !== this.wanted) return;
    const who = payload && payload.member;
    switch (meta.name) {
      case "chat.welcome":
        this.me = payload.you;
        this.setMembers(payload.members);
        this.system(
          `Welcome to #${channel}. You are ${shortName(payload.you)}; ${plural(payload.members, "member")} here.`,
          "welcome",
        );
        break;
      case "chat.join":
        this.setMembers(payload.members);
        this.system(`${shortName(who)} joined.`, "join");
        break;
      case "chat.leave":
        this.setMembers(payload.members);
        this.system(`${shortName(who)} left.`, "leave");
        break;
      case "chat.message":
        this.message(payload, meta);
        break;
      default:
        console.warn("unknown chat event", meta, payload);
    }
  }

  system(text, kind) {
    this.append(el("li.system", { dataset: { kind } }, text));
  }

  message(payload, meta) {
    const mine = payload.author === this.me;
    this.append(
      el(
        "li.message",
        { dataset: { mine: String(mine), id: meta.id } },
        avatar(payload.author),
        el(
          "div.bubble",
          {},
          el(
            "div.message-head",
            {},
            el("strong.author", {}, mine ? "you" : shortName(payload.author)),
            el("time", {}, clockTime(payload.at || meta.ts || Date.now())),
          ),
          el("p.message-text", {}, payload.text),
        ),
      ),
    );
  }

  append(node) {
    const nearBottom =
      this.messages.scrollHeight - this.messages.scrollTop - this.messages.clientHeight < 80;
    this.messages.append(node);
    while (this.messages.children.length > 200) this.messages.firstChild.remove();
    if (nearBottom) this.messages.scrollTop = this.messages.scrollHeight;
  }

  async sendMessage() {
    const channel = this.joined;
    if (!channel || !this.session) return;
    const text = this.input.value;
    try {
      await send(this.session, `chat.${channel}`, { text });
      this.input.value = "";
      this.setSendError(null);
    } catch (refusal) {
      this.setSendError(refusal);
      this.refusals.add({
        what: `message to #${channel}`,
        error: refusal.error,
        reason: refusal.reason,
      });
    }
    this.input.focus();
  }

  setMembers(count) {
    this.members = count;
    this.$("#chat-members").textContent = count == null ? "" : plural(count, "member");
  }

  setNotice(kind, text, code) {
    const notice = this.$("#chat-notice");
    notice.hidden = !kind;
    notice.dataset.kind = kind || "";
    notice.replaceChildren(...(kind ? [text, code ? el("code", {}, code) : ""] : []));
  }

  setSendError(refusal) {
    const box = this.$("#chat-send-error");
    box.hidden = !refusal;
    box.replaceChildren(
      ...(refusal ? [`Not sent: ${refusal.reason || "rejected"}`, el("code", {}, refusal.error)] : []),
    );
  }

  render() {
    const channel = this.joined || this.wanted;
    this.$("#chat-title").textContent = channel ? `#${channel}` : "No channel";
    this.$("#chat-leave").hidden = !channel;
    for (const chip of this.$("#channel-list").children) {
      chip.setAttribute("aria-pressed", String(chip.dataset.channel === channel));
    }
    const ready = Boolean(this.session && this.joined);
    this.input.disabled = !ready;
    this.composer.querySelector("button").disabled = !ready;
    this.input.placeholder = ready ? `Message #${this.joined}` : "Join a channel to chat";
    this.$("#chat-empty").hidden = Boolean(channel) || this.messages.children.length > 0;
  }
}

function plural(count, word) {
  return `${count} ${word}${count === 1 ? "" : "s"}`;
}
