// WebSocket client for the page <-> gateway protocol (docs/protocol.md).
// It knows nothing about calls: it frames JSON, numbers requests, matches
// replies by id, reconnects with back-off and reports its state.

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const REQUEST_TIMEOUT_MS = 15000;
const PING_EVERY_MS = 20000;
const PING_TIMEOUT_MS = 10000;
// How long an error reply to a fire-and-forget send is still routed back to it.
const SENT_MEMORY_MS = 60000;

/** The gateway's WebSocket URL: same origin, wss: when the page is on https. */
export function gatewayUrl(loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/ws`;
}

/** An `error` reply from the gateway, or a local failure (code "disconnected", "timeout"). */
export class GatewayError extends Error {
  constructor(code, message, call = null, retryAfter = null, field = "") {
    super(message || code);
    this.name = "GatewayError";
    this.code = code;
    this.call = call;
    this.retryAfter = retryAfter; // seconds, with auth_locked
    this.field = field; // the request's field at fault, with invalid_contact
  }
}

export class Signalling {
  #url;
  #ws = null;
  #state = "connecting";
  #handlers = new Map();
  #pending = new Map(); // id -> {resolve, reject, timer}: requests awaiting a reply
  #sent = new Map(); // id -> {onError, at}: sends whose only reply can be an error
  #nextId = 1;
  #attempt = 0;
  #retryTimer = 0;
  #pingTimer = 0;

  constructor(url) {
    this.#url = url;
    // Don't sit out a long back-off once the network is back.
    window.addEventListener("online", () => this.#retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.#retryNow();
    });
  }

  /** "connecting" (first attempt), "connected", or "reconnecting" (after a drop). */
  get state() {
    return this.#state;
  }

  /**
   * Listen for a gateway message type ("hello", "incoming", ...) or for the
   * local events "state" (connection state changed) and "close" (socket lost).
   */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, []);
    this.#handlers.get(type).push(handler);
  }

  connect() {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = 0;
    let ws;
    try {
      ws = new WebSocket(this.#url);
    } catch (err) {
      this.#scheduleRetry();
      return;
    }
    this.#ws = ws;
    ws.addEventListener("open", () => {
      if (ws !== this.#ws) return;
      this.#setState("connected");
      this.#startPing();
    });
    ws.addEventListener("message", (ev) => {
      if (ws === this.#ws) this.#onMessage(ev.data);
    });
    ws.addEventListener("close", () => {
      if (ws === this.#ws) this.#onClose();
    });
    // "error" is always followed by "close"; the browser already logs it.
  }

  /**
   * Send a request that has an id-matched reply (sign_in, call, ping).
   * Resolves with the reply; rejects with a GatewayError on an `error`
   * reply, a timeout or a lost connection.
   */
  request(msg, timeoutMs = REQUEST_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const id = this.#newId();
      if (!this.#transmit({ ...msg, id })) {
        reject(new GatewayError("disconnected", "Not connected to the gateway"));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new GatewayError("timeout", "The gateway did not answer in time"));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
    });
  }

  /**
   * Send a message whose success has no id-matched reply (answer, hangup,
   * dtmf, ...). An `error` reply goes to onError if given, else to the
   * "error" listeners. Returns false when not connected.
   */
  send(msg, onError = null) {
    const id = this.#newId();
    if (!this.#transmit({ ...msg, id })) return false;
    this.#forgetOldSends();
    this.#sent.set(id, { onError, at: Date.now() });
    return true;
  }

  #newId() {
    return String(this.#nextId++);
  }

  #transmit(obj) {
    if (!this.#ws || this.#ws.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(obj));
    return true;
  }

  #onMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      console.warn("gateway sent a frame that is not JSON", data);
      return;
    }
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") {
      console.warn("gateway sent a message without a type", msg);
      return;
    }
    if (msg.type === "hello") this.#attempt = 0; // a working gateway: back-off starts over

    const id = typeof msg.id === "string" ? msg.id : null;
    if (id && this.#pending.has(id)) {
      const { resolve, reject, timer } = this.#pending.get(id);
      this.#pending.delete(id);
      clearTimeout(timer);
      if (msg.type === "error") reject(new GatewayError(msg.code, msg.message, msg.call ?? null, msg.retry_after ?? null, msg.field ?? ""));
      else resolve(msg);
      return;
    }
    if (id && msg.type === "error" && this.#sent.has(id)) {
      const { onError } = this.#sent.get(id);
      this.#sent.delete(id);
      if (onError) {
        onError(new GatewayError(msg.code, msg.message, msg.call ?? null));
        return;
      }
    }
    this.#emit(msg.type, msg);
  }

  #onClose() {
    this.#ws = null;
    clearInterval(this.#pingTimer);
    for (const { reject, timer } of this.#pending.values()) {
      clearTimeout(timer);
      reject(new GatewayError("disconnected", "Connection to the gateway was lost"));
    }
    this.#pending.clear();
    this.#sent.clear();
    this.#emit("close", {});
    this.#scheduleRetry();
  }

  #scheduleRetry() {
    // "connecting" lasts until the first success; any later drop is "reconnecting".
    if (this.#state === "connected") this.#setState("reconnecting");
    // Exponential back-off with jitter so many pages don't reconnect in step.
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.#attempt);
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => this.connect(), delay);
  }

  #retryNow() {
    if (this.#retryTimer) this.connect();
  }

  #startPing() {
    clearInterval(this.#pingTimer);
    // A half-open TCP connection is only noticed when something is sent.
    this.#pingTimer = setInterval(() => {
      const ws = this.#ws;
      this.request({ type: "ping" }, PING_TIMEOUT_MS).catch((err) => {
        if (err.code === "timeout" && ws && ws === this.#ws) ws.close();
      });
    }, PING_EVERY_MS);
  }

  #forgetOldSends() {
    const cutoff = Date.now() - SENT_MEMORY_MS;
    for (const [id, entry] of this.#sent) {
      if (entry.at >= cutoff) break; // Map keeps insertion order
      this.#sent.delete(id);
    }
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    this.#emit("state", { state });
  }

  #emit(type, msg) {
    for (const handler of this.#handlers.get(type) ?? []) {
      try {
        handler(msg);
      } catch (err) {
        console.error(`handler for "${type}" failed`, err);
      }
    }
  }
}
