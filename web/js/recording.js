// Call recording (docs/protocol.md: record, recording, recording_saved, recordings): the Record
// button and the REC indicator of the call in view, and the list of the user's own recordings,
// played from /recordings with the short-lived token the gateway gives over the WebSocket.

import { displayAddress, formatDuration } from "./ui.js";
import { $, el } from "./dom.js";

/** Wire the button, the indicator and the list. onError({message, code}): show a failure. */
export function startRecording({ sig, onError }) {
  const button = $("record");
  const indicator = $("rec-indicator");
  const clock = $("rec-time");
  const panel = $("recordings-panel");
  const listEl = $("recordings");
  const empty = $("recordings-empty");
  const refresh = $("recordings-refresh");
  const started = new Map(); // call id -> when its recording started (ms), while it records
  let enabled = false;
  let view = null;
  let asked = ""; // the call whose record request awaits the gateway's answer
  let ticker = 0;

  sig.on("recording", (msg) => {
    if (msg.on) started.set(msg.call, started.get(msg.call) ?? Date.now());
    else started.delete(msg.call);
    if (msg.call === asked) asked = "";
    if (msg.reason) onError({ message: msg.reason });
    render();
  });
  sig.on("recording_saved", (msg) => {
    if (msg.reason) onError({ message: msg.reason });
    loadList();
  });

  button.addEventListener("click", () => {
    const call = view?.callId;
    if (!call || asked) return;
    asked = call;
    sig.send({ type: "record", call, on: !started.has(call) }, (err) => {
      asked = "";
      onError(err);
      render();
    });
    render();
  });
  refresh.addEventListener("click", loadList);

  async function loadList() {
    if (!enabled) return;
    try {
      const reply = await sig.request({ type: "recordings" });
      showList(reply.recordings ?? [], reply.token);
    } catch (err) {
      if (err.code !== "disconnected") onError(err);
    }
  }

  function showList(recordings, token) {
    listEl.replaceChildren(...recordings.map((r) => item(r, token)));
    empty.hidden = recordings.length > 0;
  }

  function item(r, token) {
    const li = el("li", "recording-item");
    li.dataset.recording = r.id;
    const other = r.direction === "inbound" ? r.caller : r.callee;
    const who = el("span", "recording-who", displayAddress(other) || other || "Call");
    const meta = el("span", "recording-meta");
    const when = new Date(r.start);
    meta.textContent = `${when.toLocaleDateString()} ${when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })} · ${formatDuration(r.duration * 1000)}`;
    const audio = el("audio", "");
    audio.controls = true;
    audio.preload = "none";
    audio.src = `/recordings/${encodeURIComponent(r.files.wav)}?token=${encodeURIComponent(token)}`;
    audio.setAttribute("aria-label", `Recording of the call with ${who.textContent}`);
    li.append(who, meta, audio);
    return li;
  }

  function render() {
    const call = view?.callId ?? "";
    const recording = started.has(call) && view?.state === "answered";
    button.hidden = !enabled || view?.state !== "answered";
    button.disabled = asked !== "";
    button.setAttribute("aria-pressed", String(recording));
    button.setAttribute("aria-busy", String(asked !== ""));
    indicator.hidden = !recording;
    clearInterval(ticker);
    ticker = 0;
    if (recording) {
      const tick = () => (clock.textContent = formatDuration(Date.now() - started.get(call)));
      tick();
      ticker = setInterval(tick, 1000);
    }
  }

  return {
    /** The `signed_in` reply (null once signed out): whether this gateway records. */
    signedIn(account) {
      enabled = !!account?.recording;
      panel.hidden = !enabled;
      started.clear();
      asked = "";
      showList([], "");
      if (enabled) loadList();
      render();
    },
    /** The phone's view changed. */
    update(next) {
      view = next;
      if (next.state !== "answered") started.delete(next.callId);
      if (asked && (next.callId !== asked || next.state !== "answered")) asked = ""; // no answer will come
      render();
    },
  };
}
