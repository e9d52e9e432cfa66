// DOM rendering. Knows the page's elements and how each state looks;
// holds no call logic and sends nothing.

import { describeEnd } from "./causes.js";
import { $, el, iconButton } from "./dom.js";

export const els = {
  body: document.body,
  connState: $("conn-state"),
  connText: $("conn-text"),
  error: $("error"),
  errorText: $("error-text"),
  errorDismiss: $("error-dismiss"),
  notice: $("notice"),
  incoming: $("incoming"),
  incomingTitle: $("incoming-title"),
  incomingName: $("incoming-name"),
  incomingFrom: $("incoming-from"),
  incomingNote: $("incoming-note"),
  answer: $("answer"),
  decline: $("decline"),
  signinView: $("signin-view"),
  signinForm: $("signin-form"),
  user: $("user"),
  passwordField: $("password-field"),
  password: $("password"),
  signIn: $("sign-in"),
  phoneView: $("phone-view"),
  avatar: $("avatar"),
  me: $("me"),
  myUri: $("my-uri"),
  signOut: $("sign-out"),
  status: $("status"),
  peer: $("peer"),
  timer: $("timer"),
  dtmfLog: $("dtmf-log"),
  lineNote: $("line-note"),
  lines: $("lines"),
  dialForm: $("dial-form"),
  number: $("number"),
  numberLetters: $("number-letters"),
  keypad: $("keypad"),
  call: $("call"),
  hangup: $("hangup"),
  backspace: $("backspace"),
  plus: document.querySelector('.key[data-key="+"]'),
  remoteAudio: $("remote-audio"),
  mute: $("mute"),
  hold: $("hold"),
  swap: $("swap"),
  side: $("side"),
};

const CONN_WORDS = { connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting…" };

const STATE_WORDS = {
  idle: "Ready",
  calling: "Calling",
  ringing: "Ringing",
  early_media: "Early media",
  answered: "Connected",
  incoming: "Incoming call",
};

const LIVE_STATES = new Set(["calling", "ringing", "early_media", "answered"]);

// What answering a call that rings during another does to that other call (Phone.view().waiting).
const WAITING_NOTES = {
  hold: (who) => `Answering puts ${who} on hold.`,
  end: () => "Answering ends the call in progress.",
  full: () => "You have two calls: hang up one to answer.",
};

let timerHandle = 0;
let linesTimer = 0;
let online = false;
let refocus = false; // the focused row of a call that ended is gone: focus what the remaining call needs

export function renderConnection(state) {
  els.connState.dataset.state = state;
  els.connText.textContent = CONN_WORDS[state] ?? state;
  els.body.dataset.conn = state;
}

/** Show the password field only when the gateway asks for passwords. */
export function renderAuthMode(auth) {
  els.passwordField.hidden = auth !== "password";
}

export function setSignInEnabled(enabled) {
  els.signIn.disabled = !enabled;
}

export function setSigningIn(busy) {
  els.signIn.setAttribute("aria-busy", String(busy));
  els.signIn.textContent = busy ? "Signing in…" : "Sign in";
}

/** account: the `signed_in` reply (or a remembered one while reconnecting), or null. */
export function renderAccount(account) {
  const signedIn = !!account;
  els.body.dataset.signedIn = String(signedIn);
  els.signinView.hidden = signedIn;
  els.phoneView.hidden = !signedIn;
  if (signedIn) {
    els.me.textContent = account.user;
    els.myUri.textContent = account.sip_uri ?? "";
    els.avatar.textContent = (account.user || "?").slice(0, 1).toUpperCase();
  }
  els.side.hidden = !signedIn;
}

/** Calls can be placed only while connected and signed in on this socket. */
export function setOnline(isOnline) {
  online = isOnline;
  els.call.disabled = !online;
  els.answer.disabled = !online || els.incoming.dataset.waiting === "full";
}

/** v: Phone.view() */
export function renderCall(v) {
  for (const el of [els.body, els.status]) {
    el.dataset.state = v.state;
    el.dataset.call = v.callId;
  }
  const who = v.peerName || displayAddress(v.peer);
  const end = v.state === "ended" && v.ended ? describeEnd({ direction: v.direction, answeredAt: v.ended.answeredAt, who }, v.ended) : null;
  els.status.textContent = end ? end.text : v.lines.length ? linesText(v.lines) : statusText(v);
  els.status.dataset.tone = end?.tone ?? "";
  els.status.title = end?.detail ?? "";

  // A call still ringing here is shown by the banner, not twice.
  const peerShown = who && v.state !== "idle" && !(v.state === "incoming" && !v.answering);
  els.peer.textContent = peerShown ? who : "";
  els.peer.title = peerShown ? v.peer : "";
  els.peer.hidden = !peerShown;

  renderTimer(v.state === "answered" ? v.answeredAt : 0);

  const dtmf = [];
  if (v.dtmfSent) dtmf.push(`Sent ${v.dtmfSent}`);
  if (v.dtmfReceived) dtmf.push(`Received ${v.dtmfReceived}`);
  els.dtmfLog.textContent = dtmf.join(" · ");
  els.dtmfLog.hidden = dtmf.length === 0;

  const live = LIVE_STATES.has(v.state) || v.answering;
  els.call.hidden = live;
  els.hangup.hidden = !live;
  els.number.readOnly = live;
  // "+" and delete only edit the number, which is fixed during a call: Mute and Hold take their places.
  els.plus.hidden = live;
  els.backspace.hidden = live;
  els.keypad.dataset.mode = live ? "dtmf" : "dial";

  const gone = v.endedBeside ? v.endedBeside.peerName || displayAddress(v.endedBeside.peer) || "the other side" : "";
  els.lineNote.textContent = gone ? `Call with ${gone} ended; ${who || "this call"} is on hold.` : "";
  els.lineNote.title = els.lineNote.textContent;
  els.lineNote.hidden = !gone;

  renderLines(v.lines);
  renderCallControls(v, live);
  renderIncoming(v, who);
  if (refocus) {
    refocus = false;
    // A call left on hold wants Hold (to resume it); one still talking, Hang up.
    const next = v.endedBeside ? els.hold : [els.hangup, els.number].find((el) => !el.hidden);
    next?.focus({ preventScroll: true });
  }
}

/** Both calls, once there are two: who, active or on hold, how long, and a hang-up button each. */
function renderLines(lines) {
  const list = els.lines;
  els.body.dataset.lines = String(lines.length);
  list.hidden = lines.length === 0;
  const rows = lines.map((line) => {
    const key = line.id || "new";
    const row = list.querySelector(`:scope > li[data-call="${CSS.escape(key)}"]`) ?? newLineRow(key);
    const who = line.peerName || displayAddress(line.peer) || "Unknown";
    const state = lineState(line);
    row.dataset.held = String(line.held);
    row.dataset.shown = String(line.shown);
    row.querySelector(".line-state").textContent = state;
    const name = row.querySelector(".line-who");
    name.textContent = who;
    name.title = line.peer;
    row.querySelector(".line-time").dataset.since = String(line.answeredAt || "");
    row.querySelector(".line-hangup").setAttribute("aria-label", `Hang up ${who} (${state.toLowerCase()})`);
    return row;
  });
  // Moving a focused row would blur its button: only rows that are new or gone change the list.
  for (const row of [...list.children]) {
    if (rows.includes(row)) continue;
    refocus ||= row.contains(document.activeElement);
    row.remove();
  }
  rows.forEach((row, i) => {
    if (list.children[i] !== row) list.insertBefore(row, list.children[i] ?? null);
  });
  clearInterval(linesTimer);
  linesTimer = 0;
  if (!lines.length) return;
  const tick = () => {
    for (const time of list.querySelectorAll(".line-time")) {
      const since = Number(time.dataset.since);
      time.textContent = since ? formatDuration(Date.now() - since) : "";
    }
  };
  tick();
  linesTimer = setInterval(tick, 500);
}

function newLineRow(key) {
  const row = el("li", "line");
  row.dataset.call = key;
  const parts = ["line-state", "line-who", "line-time"].map((className) => el("span", className));
  row.append(...parts, iconButton("line-hangup", "i-hangup"));
  return row;
}

function lineState(line) {
  if (line.held) return "On hold";
  if (line.answering) return "Answering";
  if (line.state !== "answered") return STATE_WORDS[line.state] ?? line.state;
  if (line.holdRemote) return "Held by them";
  return line.merged ? "Merged" : "Active";
}

/** For #status (read out, not shown, while the list is): "carol: Active, bob: On hold". */
function linesText(lines) {
  const shownFirst = [...lines].sort((a, b) => Number(b.shown) - Number(a.shown));
  return shownFirst.map((line) => `${line.peerName || displayAddress(line.peer)}: ${lineState(line)}`).join(", ");
}

function renderCallControls(v, live) {
  const inCall = live && !v.answering;
  const two = v.lines.length > 1;
  els.mute.hidden = !live;
  // With two calls, Swap takes Hold's place: one talks, the other waits.
  els.hold.hidden = !live || two;
  els.swap.hidden = !two;
  els.swap.disabled = !v.canSwap;
  const who = v.peerName || displayAddress(v.peer);
  const names = v.lines.map((line) => line.peerName || displayAddress(line.peer) || "Unknown");
  const hangup = v.merged ? `Hang up all (${names.join(" and ")})` : two && who ? `Hang up ${who}` : "";
  els.hangup.setAttribute("aria-label", hangup || "Hang up");
  els.hangup.title = hangup;
  // Constant names: aria-pressed says whether it is on, the look shows it too.
  setToggle(els.mute, v.muted);
  els.mute.disabled = !inCall;
  const held = v.holdLocal;
  setToggle(els.hold, held);
  els.hold.disabled = v.state !== "answered" || v.holdPending;
  els.hold.setAttribute("aria-busy", String(!!v.holdPending));
  els.body.dataset.hold = v.holdLocal ? "local" : v.holdRemote ? "remote" : "";
  els.status.dataset.hold = els.body.dataset.hold;
}

function setToggle(button, pressed) {
  button.setAttribute("aria-pressed", String(!!pressed));
}

function statusText(v) {
  if (v.state === "answered" && v.holdLocal && v.holdRemote) return "On hold (both sides)";
  if (v.state === "answered" && v.holdLocal) return "On hold";
  if (v.state === "answered" && v.holdRemote) return "Held by the other side";
  if (v.state === "ended") return "Call ended";
  if (v.state === "incoming" && v.answering) return "Answering";
  return STATE_WORDS[v.state] ?? v.state;
}

/** The tab title: a call ringing in, the call in progress, else a missed call not yet seen. */
export function renderTitle(v, missedFrom) {
  const who = v.peerName || displayAddress(v.peer);
  let title = "Web Phone";
  if (v.incoming && v.state === "incoming") {
    title = `Incoming call from ${v.incoming.fromName || displayAddress(v.incoming.from)} · Web Phone`;
  } else if (v.incoming) {
    title = `Call waiting: ${v.incoming.fromName || displayAddress(v.incoming.from)} · Web Phone`;
  } else if (LIVE_STATES.has(v.state)) title = `${STATE_WORDS[v.state]}: ${who} · Web Phone`;
  else if (missedFrom) title = `Missed call from ${missedFrom} · Web Phone`;
  document.title = title;
}

/** The banner of a call ringing in, alone or while another is in progress (who: that other call). */
function renderIncoming(v, who) {
  const { incoming, waiting } = v;
  const banner = els.incoming;
  els.body.dataset.ringing = String(!!incoming);
  banner.dataset.waiting = incoming ? waiting : "";
  if (!incoming) {
    if (!banner.hidden && banner.contains(document.activeElement)) els.number.focus({ preventScroll: true });
    banner.hidden = true;
    banner.dataset.call = "";
    return;
  }
  els.incomingTitle.textContent = waiting ? "Call waiting" : "Incoming call";
  els.answer.textContent = waiting === "hold" ? "Answer and hold" : "Answer";
  els.answer.disabled = !online || waiting === "full";
  const note = WAITING_NOTES[waiting]?.(who || "the call in progress") ?? "";
  els.incomingNote.textContent = note;
  els.incomingNote.hidden = !note;
  const number = displayAddress(incoming.from);
  els.incomingName.textContent = incoming.fromName || number || "Unknown caller";
  els.incomingFrom.textContent = incoming.fromName ? number : "";
  els.incomingFrom.title = incoming.from;
  const isNew = banner.hidden || banner.dataset.call !== incoming.id;
  banner.dataset.call = incoming.id;
  banner.hidden = false;
  // Offer Answer to the keyboard, unless the user is typing somewhere.
  const focused = document.activeElement;
  if (isNew && (!focused || focused === document.body)) els.answer.focus({ preventScroll: true });
}

function renderTimer(since) {
  clearInterval(timerHandle);
  timerHandle = 0;
  els.timer.hidden = !since;
  if (!since) return;
  const tick = () => {
    els.timer.textContent = formatDuration(Date.now() - since);
  };
  tick();
  timerHandle = setInterval(tick, 500);
}

/** mm:ss, or h:mm:ss past an hour. */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = String(m).padStart(2, "0");
  const ss = String(s).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** "sip:+4930123@host;x=y" -> "+4930123"; "sip:bob@example.com" -> "bob@example.com". */
export function displayAddress(uri) {
  if (!uri) return "";
  let s = String(uri).trim();
  const angle = s.match(/<([^>]*)>/);
  if (angle) s = angle[1];
  s = s.replace(/^sips?:/i, "").split(/[;?]/)[0];
  const [user, host] = s.split("@");
  if (host && /^[+\d*#]+$/.test(user)) return user;
  return s;
}

/** detail: what support needs (an error code), as the message's tooltip. */
export function showError(text, detail = "") {
  els.errorText.textContent = text;
  els.error.title = detail;
  els.error.hidden = false;
}

/** A lasting warning about the environment (not about one action). */
export function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = false;
}

export function clearError() {
  els.error.hidden = true;
  els.errorText.textContent = "";
  els.error.title = "";
}

/** Type a dial character into the number field at the caret, or at the end. */
export function typeIntoNumber(ch) {
  const input = els.number;
  if (input.readOnly) return;
  if (document.activeElement === input) {
    input.setRangeText(ch, input.selectionStart, input.selectionEnd, "end");
  } else {
    input.value += ch;
  }
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Phones show a keypad for the number field; letters (user names, sip: addresses) on request. */
export function setNumberLetters(letters) {
  els.number.inputMode = letters ? "text" : "tel";
  els.numberLetters.setAttribute("aria-pressed", String(letters));
}

export function backspaceNumber() {
  const input = els.number;
  if (input.readOnly || !input.value) return;
  const { selectionStart: a, selectionEnd: b } = input;
  if (document.activeElement === input && a !== b) input.setRangeText("", a, b, "end");
  else if (document.activeElement === input && a > 0) input.setRangeText("", a - 1, a, "end");
  else input.value = input.value.slice(0, -1);
  input.dispatchEvent(new Event("input", { bubbles: true }));
}

/** Briefly show a pad key as pressed when it was typed on the keyboard. */
export function flashKey(key) {
  const button = els.phoneView.querySelector(`.key[data-key="${CSS.escape(key)}"]`);
  if (!button) return;
  button.classList.add("is-pressed");
  setTimeout(() => button.classList.remove("is-pressed"), 120);
}
