/**
 * Signing in: the API issues a token (POST /auth/token); the page sends it as a Bearer
 * header to the API and as the WAMP ticket when it connects, so the router knows who
 * this is. The token lives in sessionStorage: one tab, gone when the tab closes.
 */

const KEY = "sandbar.account";

export class Account {
  constructor({ root, apiUrl, onChange }) {
    this.apiUrl = apiUrl;
    this.onChange = onChange;
    this.form = root.querySelector("#signin-form");
    this.status = root.querySelector("#account-status");
    this.who = root.querySelector("#account-user");
    this.signedIn = root.querySelector("#account-signed-in");
    const saved = JSON.parse(sessionStorage.getItem(KEY) || "null");
    this.user = saved && saved.user;
    this.token = saved && saved.token;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const data = new FormData(this.form);
      this.signIn(String(data.get("username")), String(data.get("password")));
    });
    root.querySelector("#signout").addEventListener("click", () => this.signOut());
    this.render();
  }

  /** Options for sandbar.js connect(): the token as a WAMP ticket, or anonymous. */
  wampOptions() {
    if (!this.token) return { authmethods: ["anonymous"] };
    return { authmethods: ["ticket"], authid: this.user, onchallenge: () => this.token };
  }

  headers() {
    return this.token ? { Authorization: `Bearer ${this.token}` } : {};
  }

  async signIn(username, password) {
    this.say("pending", "Signing in…");
    try {
      const response = await fetch(`${this.apiUrl}/auth/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
      this.remember(body.user, body.token);
      this.form.reset();
      this.say("", "");
    } catch (err) {
      this.say("error", err.message);
    }
  }

  /** Ends the token everywhere; the server closes this user's sessions on every tab. */
  async signOut() {
    const headers = this.headers();
    this.forget();
    try {
      await fetch(`${this.apiUrl}/auth/logout`, { method: "POST", headers });
    } catch (err) {
      this.say("error", `signed out here, but the API did not answer: ${err.message}`);
    }
  }

  remember(user, token) {
    this.user = user;
    this.token = token;
    sessionStorage.setItem(KEY, JSON.stringify({ user, token }));
    this.render();
    this.onChange();
  }

  forget(reason) {
    if (!this.token) return;
    this.user = this.token = null;
    sessionStorage.removeItem(KEY);
    this.render();
    if (reason) this.say("error", reason);
    this.onChange();
  }

  render() {
    this.form.hidden = Boolean(this.token);
    this.signedIn.hidden = !this.token;
    this.who.textContent = this.user || "";
  }

  say(kind, text) {
    this.status.dataset.kind = kind;
    this.status.textContent = text;
  }
}
