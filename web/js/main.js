// Wiring: gateway messages -> phone and UI, user input -> phone.

import { Signalling, gatewayUrl } from "./signalling.js";
import { Phone, microphoneApiAvailable, NO_MIC_API } from "./phone.js";
import { cleanTarget } from "./dialtarget.js";
import { isMissed } from "./causes.js";
import * as ui from "./ui.js";
import * as tones from "./tones.js";
import { startQualityPanel } from "./quality.js";
import { startHistory } from "./history.js";
import { startContacts } from "./contacts.js";
import { startAudioSettings, startNotifications } from "./devices.js";
import { startRecording } from "./recording.js";
import { startMailbox } from "./mailbox.js";
import { startTransfer } from "./transfer.js";
import { startMerge } from "./merge.js";
import { startRoom } from "./room.js";

const { els } = ui;
const DIAL_KEYS = new Set(["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "+"]);
const REMEMBERED_USER = "webphone.user";

const sig = new Signalling(gatewayUrl());
const phone = new Phone(sig, els.remoteAudio);

let helloSeen = false; // `hello` arrived on the current socket
let account = null; // the `signed_in` reply on the current socket
// What the user signed in with, kept in memory only, to sign in again by
// itself after a reconnect. null once the user signs out.
let credentials = null;
let signInPending = false;
// Bumped by every sign-out, so a sign-in reply that arrives after it is dropped.
let session = 0;

// For tests: read access to the current call's RTCPeerConnection, nothing more.
Object.defineProperty(window, "phone", {
  value: Object.freeze({
    get pc() {
      return phone.pc;
    },
  }),
});

// --- in-call controls, quality, settings, history ---------------------------

els.mute.addEventListener("click", () => phone.setMuted(!phone.view().muted));
els.hold.addEventListener("click", () => phone.setHold(!phone.view().holdLocal));
els.swap.addEventListener("click", () => phone.swap());
els.lines.addEventListener("click", (ev) => {
  const button = ev.target.closest(".line-hangup");
  if (button) phone.hangup(button.closest(".line").dataset.call);
});

const updateQuality = startQualityPanel({
  getPc: () => phone.pc,
  ask: (call, browser) => sig.request({ type: "stats", call, ...(browser ? { browser } : {}) }, 5000),
});

const renderTransfer = startTransfer({ phone, onError: (err) => showFailure(err) });
const renderMerge = startMerge({ phone, audio: els.remoteAudio, onError: (err) => showFailure(err) });

// History and contacts: the gateway keeps both; a press on an entry calls it.
const callBack = {
  sig,
  canDial: () => !!account && !phone.inCall,
  dial: (number) => {
    if (!account || phone.inCall) return;
    els.number.value = number;
    placeCall();
  },
  onError: (err) => showFailure(err),
};
const callHistory = startHistory(callBack);
const contactList = startContacts(callBack);

// A missed call's caller, in the tab title until the user is back at the page.
let missedFrom = "";
phone.addEventListener("callended", (ev) => {
  if (!isMissed(ev.detail)) return;
  missedFrom = ev.detail.peerName || ui.displayAddress(ev.detail.peer) || "an unknown caller";
  render();
});

function backAtThePage() {
  if (!missedFrom || document.visibilityState !== "visible") return;
  missedFrom = "";
  render();
}
for (const type of ["pointerdown", "keydown", "focus"]) window.addEventListener(type, backAtThePage, { capture: true });
document.addEventListener("visibilitychange", backAtThePage);

const recording = startRecording({ sig, onError: (err) => showFailure(err) });
const room = startRoom({ sig });

const audioSettings = startAudioSettings({
  audio: els.remoteAudio,
  useMicrophone: (id) => phone.useMicrophone(id),
  onError: (err) => showFailure(err),
});
let deviceNamesKnown = false;

const notifications = startNotifications({
  onActivate: () => {
    if (!els.answer.hidden) els.answer.focus();
  },
});

const mailbox = startMailbox({
  request: (msg) => sig.request(msg),
  send: (msg) => sig.send(msg, showFailure),
  notify: (title, body, tag) => notifications.notify(title, body, tag),
  onError: (err) => showFailure(err),
});

// --- gateway --------------------------------------------------------------

sig.on("state", ({ state }) => {
  ui.renderConnection(state);
  if (state !== "connected") {
    helloSeen = false;
    account = null;
  }
  refreshControls();
});

sig.on("hello", (msg) => {
  helloSeen = true;
  ui.renderAuthMode(msg.auth);
  if (msg.version !== 1) ui.showError(`This gateway speaks protocol version ${msg.version}; the page expects 1.`);
  if (credentials) signIn(credentials, { again: true });
  refreshControls();
});

sig.on("signed_out", () => {
  // Our own sign_out already cleared credentials; otherwise the gateway did it.
  if (!credentials) return;
  credentials = null;
  account = null;
  phone.signedOut("normal", "Signed out");
  ui.renderAccount(null);
  ui.showError("The gateway signed you out.");
  refreshControls();
});

sig.on("error", (err) => {
  showFailure(err);
});

sig.on("mailbox", (msg) => mailbox.show(msg.entries, msg.added));

// --- sign in / out --------------------------------------------------------

async function signIn(creds, { again = false } = {}) {
  if (signInPending) return;
  signInPending = true;
  ui.setSigningIn(true);
  refreshControls();
  const msg = { type: "sign_in", user: creds.user };
  if (creds.password) msg.password = creds.password;
  const mySession = session;
  try {
    const reply = await sig.request(msg);
    if (mySession !== session) {
      sig.send({ type: "sign_out" }, () => {});
      return;
    }
    account = reply;
    credentials = creds;
    phone.signedIn(reply.ice_servers, reply.ice_transport_policy);
    try {
      localStorage.setItem(REMEMBERED_USER, creds.user);
    } catch {
      // Storage may be disabled; remembering the name is only a convenience.
    }
    if (!again) ui.clearError();
    ui.renderAccount(reply);
    recording.signedIn(reply);
    mailbox.show(reply.mailbox);
    if (!again) els.number.focus();
  } catch (err) {
    // A lost connection retries by itself on the next `hello`.
    if (err.code !== "disconnected" && mySession === session) {
      if (again) {
        credentials = null;
        ui.renderAccount(null);
      }
      showFailure(err);
      if (err.code === "auth_failed" || err.code === "auth_locked") (els.passwordField.hidden ? els.user : els.password).select();
    }
  } finally {
    signInPending = false;
    ui.setSigningIn(false);
    refreshControls();
  }
}

els.signinForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  tones.unlock();
  const user = els.user.value.trim();
  if (!user) {
    ui.showError("Enter a user name to sign in.");
    els.user.focus();
    return;
  }
  const password = els.passwordField.hidden ? "" : els.password.value;
  signIn({ user, password });
});

els.signOut.addEventListener("click", () => {
  session += 1;
  credentials = null;
  account = null;
  phone.signedOut("normal", "Signed out");
  phone.clearEnded();
  mailbox.show([]);
  // Failing because we were not signed in on this socket yet changes nothing.
  sig.send({ type: "sign_out" }, () => {});
  els.password.value = "";
  ui.clearError();
  ui.renderAccount(null);
  refreshControls();
  els.user.focus();
});

// --- calls ----------------------------------------------------------------

function placeCall() {
  if (!account || phone.inCall) return;
  const { to, problem } = cleanTarget(els.number.value);
  if (problem) {
    ui.showError(problem);
    els.number.focus();
    return;
  }
  ui.clearError();
  els.number.value = to; // what is dialled, as dialled
  phone.dial(to);
}

els.dialForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  placeCall();
});

/** The big Hang up button and Escape: the call shown, or, merged, the whole three-way call (as a desk phone's conference). */
function hangUp() {
  const v = phone.view();
  if (v.merged) for (const line of v.lines) phone.hangup(line.id);
  else phone.hangup();
}

els.hangup.addEventListener("click", hangUp);

function answer(call) {
  if (!call || !account) return;
  ui.clearError();
  phone.answer(call.id);
}

els.answer.addEventListener("click", () => answer(phone.ringing));

els.decline.addEventListener("click", () => {
  const call = phone.ringing;
  if (call) phone.decline(call.id);
});

/** A pad key, from a click or the keyboard: DTMF during a call, else dialling. */
function pressKey(key) {
  tones.key(key);
  if (phone.inCall) phone.sendDtmf(key);
  else ui.typeIntoNumber(key);
}

els.phoneView.addEventListener("click", (ev) => {
  const button = ev.target.closest(".key[data-key]");
  if (button) pressKey(button.dataset.key);
});

// Clicking a pad key must not take focus from where it was, so that Enter
// afterwards still means "call" and not "press that key again".
els.phoneView.addEventListener("mousedown", (ev) => {
  if (ev.target.closest(".key")) ev.preventDefault();
});

els.backspace.addEventListener("click", () => ui.backspaceNumber());

els.numberLetters.addEventListener("click", () => {
  ui.setNumberLetters(els.number.inputMode !== "text");
  els.number.focus();
});

// A new number makes the last call's "Ended" message old news.
els.number.addEventListener("input", () => phone.clearEnded());

els.errorDismiss.addEventListener("click", () => ui.clearError());

phone.addEventListener("change", render);
phone.addEventListener("error", (ev) => showFailure(ev.detail));

// --- keyboard -------------------------------------------------------------

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
  if (els.phoneView.hidden) return;
  const target = ev.target;
  const inNumber = target === els.number;

  // A call ringing in comes first: Escape declines it rather than ending the call in progress.
  const ringing = phone.ringing;
  if (ev.key === "Escape") {
    if (ringing) phone.decline(ringing.id);
    else if (phone.inCall) hangUp();
    else return;
    ev.preventDefault();
    return;
  }
  if (isEditable(target) && !inNumber) return;
  // Enter answers (holding a call in progress), wherever it would otherwise call; on a button it presses that button.
  if (ev.key === "Enter" && ringing && !isActivatable(target)) {
    ev.preventDefault();
    answer(ringing);
    return;
  }

  if (DIAL_KEYS.has(ev.key)) {
    if (phone.inCall) {
      ev.preventDefault();
      if (ev.key !== "+") {
        ui.flashKey(ev.key);
        pressKey(ev.key);
      }
    } else if (!inNumber) {
      ev.preventDefault();
      ui.flashKey(ev.key);
      pressKey(ev.key);
    } else {
      ui.flashKey(ev.key); // the field types it itself
      tones.key(ev.key);
    }
    return;
  }
  if (ev.key === "Backspace" && !inNumber && !phone.inCall) {
    ev.preventDefault();
    ui.backspaceNumber();
    return;
  }
  // Enter in the number field submits the form; on a button it presses it.
  if (ev.key === "Enter" && !inNumber && !isActivatable(target)) {
    ev.preventDefault();
    placeCall();
  }
});

// Any gesture may be the one that lets the page make sound later.
for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, tones.unlock, { capture: true });

function isEditable(el) {
  return el instanceof HTMLElement && (el.isContentEditable || el.matches("input, textarea, select"));
}

function isActivatable(el) {
  return el instanceof HTMLElement && el.matches("button, a[href], summary, [role=button]");
}

// --- rendering ------------------------------------------------------------

function render() {
  const view = phone.view();
  ui.renderCall(view);
  renderTransfer(view);
  renderMerge(view);
  ui.renderTitle(view, missedFrom);
  updateQuality(view);
  recording.update(view);
  room.update(view); // after Hold, Record and Transfer: it disables them in a room
  callHistory.refresh();
  contactList.refresh();
  if (view.incoming) {
    const caller = view.incoming.fromName || ui.displayAddress(view.incoming.from) || "Unknown caller";
    notifications.incoming(view.incoming, caller);
  } else {
    notifications.incoming(null);
  }
  // Device names are given only once the microphone has been allowed.
  if (!deviceNamesKnown && view.state === "answered") {
    deviceNamesKnown = true;
    audioSettings.refreshDevices();
  }
  let tone = null;
  if (view.incoming) tone = phone.inCall ? "waiting" : "ringtone";
  else if (view.state === "ringing") tone = "ringback";
  tones.play(tone);
}

function refreshControls() {
  const connected = sig.state === "connected" && helloSeen;
  ui.setSignInEnabled(connected && !signInPending);
  ui.setOnline(connected && !!account);
  callHistory.refresh();
  contactList.refresh();
}

/** A failed request or action in words; the gateway's error code only in the tooltip, for support. */
function showFailure(err) {
  const code = err?.code;
  // Our own failures carry no gateway code worth keeping.
  const detail = !code || code === "disconnected" || code === "timeout" ? "" : code;
  if (code === "auth_locked") {
    const wait = Number(err.retryAfter) > 0 ? ` Wait ${Math.ceil(err.retryAfter)} seconds, then try again.` : " Try again later.";
    ui.showError(`Too many wrong passwords.${wait}`, detail);
  } else {
    ui.showError(err?.message || "Something went wrong", detail);
  }
}

// --- start ----------------------------------------------------------------

try {
  els.user.value = localStorage.getItem(REMEMBERED_USER) ?? "";
} catch {
  // Storage may be disabled.
}
// Say it before the first call fails, not after.
if (!microphoneApiAvailable()) ui.showNotice(NO_MIC_API);
ui.renderConnection(sig.state);
render();
refreshControls();
sig.connect();
els.user.focus();
