// Call logic: one RTCPeerConnection per call, and the page makes the offer (in
// `call` for outgoing calls, in `answer` for incoming ones), sent whole once it
// holds usable candidates because the gateway does not trickle. A direct call
// from another web user (docs/protocol.md) comes with that page's offer, and
// `answer` carries this page's SDP answer: the two browsers then talk to each
// other, and hold stops both pages' microphones. When the other page transfers
// such a call (`transfer_request`), this page calls the new party itself, beside
// the call, and the gateway ends the old call once the new one is answered.
// Like a desk phone it holds two calls at most: the one shown (talking) and
// one on hold; only the shown call's far end is heard and only it hears the
// microphone, unless the two are merged (merge.js mixes their audio then).

import { answerWithOpusOnly } from "./directcall.js";
import { usableCandidates } from "./gathering.js";

const ICE_GATHER_TIMEOUT_MS = 5000;
const DTMF_DIGIT = /^[0-9*#A-D]$/;
// An ended call is remembered this long so the gateway's `ended`, which may
// come after we hung up locally, can still put its reason and code on screen.
const ENDED_MEMORY_MS = 30000;
// Events for a call id we don't know yet (its `calling` reply still pending).
const ORPHAN_MEMORY_MS = 5000;

// Browsers hide getUserMedia from pages that are not a secure context.
export const NO_MIC_API = window.isSecureContext
  ? "This browser gives the page no microphone access, so it cannot make calls."
  : "The microphone is only available to secure pages: open this page over https:// (or on localhost) to make calls.";

/** True when the browser will let this page ask for the microphone at all. */
export function microphoneApiAvailable() {
  return !!navigator.mediaDevices?.getUserMedia;
}

// Thrown inside call setup when the call ended while we were awaiting.
class Aborted extends Error {}

class Call {
  constructor(direction, id = null) {
    this.id = id;
    this.direction = direction; // "out" | "in"
    this.state = direction === "in" ? "incoming" : "calling";
    this.peer = "";
    this.peerName = "";
    this.dial = ""; // click-to-call: answering this "incoming" call dials this number
    this.direct = false; // browser to browser with another web user's page, no SIP leg
    this.remoteOffer = ""; // a direct incoming call: the calling page's offer, answered in `answer`
    this.pc = null;
    this.mic = null;
    this.remoteStream = null;
    this.answering = false; // incoming call: we are preparing/sent our `answer`
    this.answeredAt = 0;
    this.startedAt = Date.now();
    this.end = null; // {cause, code, reason, local}
    this.dtmfSent = "";
    this.dtmfReceived = "";
    this.muted = false; // our microphone track is disabled (no renegotiation)
    this.holdLocal = false; // we put the call on hold (gateway's `hold` event)
    this.holdRemote = false; // the SIP side put us on hold
    this.holdPending = false; // a `hold`/`resume` was sent, its event not yet here
    this.holdWanted = false; // what we last asked for: the microphone goes quiet at once, not when the gateway confirms
    this.transferTo = ""; // a transfer of ours under way: to this number, or "call" (to our other call)
    this.transferredTo = ""; // the other side is transferring us there (the gateway, or for a direct call this page, calls it)
    this.transferOf = ""; // this call carries out the other side's transfer of that call (a direct call's `transfer_request`)
  }
}

export class Phone extends EventTarget {
  #sig;
  #audio;
  #iceServers = [];
  #icePolicy = "all";
  #signedIn = false;
  #calls = new Map(); // gateway call id -> Call
  #active = null; // the call in the main panel: outgoing or answered, live or just ended
  #endedBeside = null; // a call that ended while another stayed (on hold, perhaps): said in a note
  #orphans = new Map(); // call id -> [{msg, at}]
  #placing = 0; // `call` requests whose `calling` reply is still on its way
  #micDeviceId = ""; // the chosen microphone, "" for the browser's default
  #merged = false; // both calls talk together (merge.js mixes them); off once fewer than two remain

  constructor(sig, audioElement) {
    super();
    this.#sig = sig;
    this.#audio = audioElement;
    sig.on("incoming", (m) => this.#onIncoming(m));
    for (const type of ["sdp", "ringing", "early_media", "answered", "ended", "dtmf", "hold", "transferring", "transferred", "transfer_failed", "transfer_request"]) {
      sig.on(type, (m) => this.#route(m));
    }
    sig.on("close", () => this.signedOut("network_error", "Connection to the gateway was lost"));
  }

  /** From `signed_in`: its `ice_servers` and `ice_transport_policy` apply to every RTCPeerConnection from now on. */
  signedIn(iceServers, icePolicy = "all") {
    this.#icePolicy = icePolicy === "relay" ? "relay" : "all";
    this.#signedIn = true;
    this.#iceServers = Array.isArray(iceServers) ? iceServers : [];
  }

  /** Signed out or disconnected: calls end, and a late `incoming` is not for us. */
  signedOut(cause, reason) {
    this.#signedIn = false;
    this.#endAll(cause, reason);
  }

  /** The RTCPeerConnection of the call in progress, or null. */
  get pc() {
    return this.#live()?.pc ?? null;
  }

  /** True while a call is set up or connected (not ringing-in, not ended). */
  get inCall() {
    return this.#live() !== null;
  }

  /** True when pad digits should go out as DTMF. */
  get canSendDtmf() {
    const call = this.#live();
    return !!call?.id && (call.state === "answered" || call.state === "early_media");
  }

  /** The first incoming call still ringing here, or null. */
  get ringing() {
    for (const call of this.#calls.values()) {
      if (call.state === "incoming" && !call.answering) return call;
    }
    return null;
  }

  /** A plain snapshot for rendering. */
  view() {
    const live = this.#live();
    const ringing = this.ringing;
    const lines = this.#lines();
    const other = lines.find((c) => c !== live) ?? null;
    const shown = live ?? (ringing ? null : this.#active);
    let state = "idle";
    if (live) state = live.state;
    else if (ringing) state = "incoming";
    else if (shown) state = "ended";
    const call = shown ?? ringing;
    return {
      state,
      callId: call?.id ?? "",
      direction: call?.direction ?? "",
      peer: call?.peer ?? "",
      peerName: call?.peerName ?? "",
      answering: !!live?.answering,
      answeredAt: live?.answeredAt ?? 0,
      // How the call shown ended: {cause, code, reason, answeredAt}, or null.
      ended: shown && !live && shown.end ? { ...shown.end, answeredAt: shown.answeredAt } : null,
      dtmfSent: shown?.dtmfSent ?? "",
      dtmfReceived: shown?.dtmfReceived ?? "",
      muted: !!live?.muted,
      holdLocal: !!live?.holdLocal,
      holdRemote: !!live?.holdRemote,
      holdPending: !!live?.holdPending,
      incoming: ringing ? { id: ringing.id, from: ringing.peer, fromName: ringing.peerName } : null,
      // A call ringing while one is in progress: answering holds it ("hold"), ends it while it is
      // still being set up ("end"), or must wait until one of two calls ends ("full").
      waiting: ringing && live ? (other ? "full" : live.state === "answered" ? "hold" : "end") : "",
      // Both calls, oldest first, once there are two.
      lines: other ? lines.map((c) => lineView(c, c === live, this.#merged)) : [],
      canSwap: !!other && !this.#merged && bothAnswered(live, other),
      // Both calls talk together, the page mixing their audio (merge.js); Merge once both are answered.
      merged: !!other && this.#merged,
      canMerge: !!other && bothAnswered(live, other),
      // Transfer (see transfer.js): ours under way (its target), the other side's, and what may be done now.
      transferTo: live?.transferTo ?? "",
      transferredTo: live?.transferredTo ?? "",
      canTransfer: !other && live?.state === "answered" && !live.transferTo && !live.transferredTo,
      // Not while merged: the page mixes the three then; Merge again splits them, and the transfer is offered again.
      canCompleteTransfer:
        !!other && !this.#merged && live?.state === "answered" && other.state === "answered" && !live.transferTo && !other.transferTo &&
        !live.transferOf && !other.transferOf,
      // The other call ended while this one stays on hold: {peer, peerName}, until the user acts.
      endedBeside:
        live && !other && this.#endedBeside && (live.holdWanted || live.holdLocal)
          ? { peer: this.#endedBeside.peer, peerName: this.#endedBeside.peerName }
          : null,
    };
  }

  /**
   * Place a call to `to` (see dialtarget.js). Resolves when the attempt is over or under way.
   * `beside`: the call in progress is answered and stays, on hold (the consultation of an attended transfer).
   */
  async dial(to, { beside = false } = {}) {
    const live = this.#live();
    if (!to || (live && !(beside && live.state === "answered" && this.#lines().length === 1))) return;
    if (live) this.#requestHold(live, true);
    const call = new Call("out");
    call.peer = to;
    this.#endedBeside = null;
    this.#focus(call);
    this.#changed();
    await this.#place(call, { type: "call", to });
  }

  /** Send `request` (a `call`) with `call`'s offer; `call` is known by its id from the reply on. */
  async #place(call, request) {
    this.#placing += 1;
    try {
      await this.#prepareDescription(call);
      const reply = await this.#sig.request({ ...request, sdp: call.pc.localDescription.sdp });
      call.id = String(reply.call);
      call.direct = reply.direct === true;
      if (typeof reply.to === "string" && reply.to) call.peer = reply.to;
      this.#calls.set(call.id, call);
      if (call.state === "ended") {
        // Hung up while the gateway was still accepting the call.
        this.#sig.send({ type: "hangup", call: call.id }, () => {});
        this.#forgetLater(call);
      }
      this.#changed();
      this.#replayOrphans(call.id);
    } catch (err) {
      if (err instanceof Aborted) return;
      // No microphone, or the gateway refused it: there never was a call, only an error to show.
      if (call.state !== "ended") this.#discard(call);
      this.#error(err);
    } finally {
      this.#placing -= 1;
    }
  }

  /**
   * Answer a ringing call. A call in progress is put on hold first (desk phones' "answer and hold"),
   * or hung up while it is still being set up; with two calls already, one must end first.
   */
  async answer(id) {
    const call = this.#calls.get(id);
    if (!call || call.state !== "incoming" || call.answering) return;
    const live = this.#live();
    if (live && this.#lines().length > 1) {
      this.#error(new Error("You have two calls already: hang up one to answer this call."));
      return;
    }
    if (live?.state === "answered") this.#requestHold(live, true);
    else if (live) this.hangup();
    call.answering = true;
    this.#endedBeside = null;
    this.#focus(call);
    this.#changed();
    try {
      await this.#prepareDescription(call);
    } catch (err) {
      if (err instanceof Aborted) return;
      this.#backToRinging(call);
      this.#error(err);
      return;
    }
    // A click-to-call now rings `dial` and goes on as an outgoing call: ringing, then answered.
    if (call.dial) call.direction = "out";
    this.#sig.send({ type: "answer", call: call.id, sdp: call.pc.localDescription.sdp }, (err) => {
      if (call.state === "ended") return;
      if (err.code === "no_such_call") this.#finish(call, { cause: "failed", code: 0, reason: "Call failed", local: true });
      else this.#backToRinging(call);
      this.#error(err);
    });
  }

  decline(id) {
    const call = this.#calls.get(id);
    if (!call || call.state !== "incoming" || call.answering) return;
    this.#sig.send({ type: "decline", call: call.id }, (err) => this.#errorUnlessGone(err));
    this.#finish(call, { cause: "declined", code: 0, reason: "Declined", local: true });
  }

  /** End a call at once: the one shown, or the one `id` names; the gateway's `ended` refines the reason later. */
  hangup(id = "") {
    const call = id ? this.#lines().find((c) => c.id === id) : this.#live();
    if (!call) return;
    // Without an id the `calling` reply is still on its way; dial() sends the hangup then.
    if (call.id) this.#sig.send({ type: "hangup", call: call.id }, (err) => this.#errorUnlessGone(err));
    this.#finish(call, { cause: "normal", code: 0, reason: "Hung up", local: true });
  }

  sendDtmf(digit) {
    if (!this.canSendDtmf || !DTMF_DIGIT.test(digit)) return false;
    const call = this.#live();
    this.#sig.send({ type: "dtmf", call: call.id, digits: digit }, (err) => this.#error(err));
    call.dtmfSent = (call.dtmfSent + digit).slice(-32);
    this.#changed();
    return true;
  }

  /** Mute or unmute the microphone of the call in progress (of both, merged): the track is disabled, nothing is renegotiated. */
  setMuted(muted) {
    const call = this.#live();
    if (!call) return;
    for (const c of this.#merged ? this.#lines() : [call]) {
      c.muted = !!muted;
      this.#applyMute(c);
    }
    this.#changed();
  }

  /** Put the answered call on hold (true) or take it off (false); the gateway's `hold` event confirms it. */
  setHold(hold) {
    const call = this.#live();
    if (!call || call.holdPending) return;
    this.#endedBeside = null;
    this.#requestHold(call, hold);
    this.#changed();
  }

  /** With two answered calls: both off hold, talking together (merge.js mixes them), the user muted in both or neither. */
  merge() {
    if (!this.view().canMerge || this.#merged) return;
    const live = this.#live();
    const other = this.#lines().find((c) => c !== live);
    this.#merged = true;
    other.muted = live.muted;
    this.#requestHold(live, false);
    this.#requestHold(other, false);
    this.#changed();
  }

  /** Undo merge(): the call shown talks on, the other goes back on hold. */
  split() {
    if (!this.view().merged) return;
    this.#merged = false;
    const live = this.#live();
    this.#requestHold(this.#lines().find((c) => c !== live), true);
    this.#changed();
  }

  /** Each call's media, oldest first, for merge.js: {id, shown, pc, mic, remoteStream}; never changes a call. */
  lineMedia() {
    const live = this.#live();
    return this.#lines().map((c) => ({ id: c.id ?? "", shown: c === live, pc: c.pc, mic: c.mic, remoteStream: c.remoteStream }));
  }

  /** With two answered calls: hold the one shown, take the other off hold and show it. */
  swap() {
    if (!this.view().canSwap) return;
    const live = this.#live();
    const other = this.#lines().find((c) => c !== live);
    this.#requestHold(live, true);
    this.#requestHold(other, false);
    this.#focus(other);
    this.#changed();
  }

  /** Blind transfer: the far end of the call shown is connected to `to`; this call ends once it says so. */
  transfer(to) {
    const call = this.#live();
    if (!to || !this.view().canTransfer) return;
    this.#askTransfer(call, to, { to });
  }

  /** Attended transfer, once the consultation call is answered: join the far ends of both calls and leave. */
  completeTransfer() {
    if (!this.view().canCompleteTransfer) return;
    const live = this.#live();
    const held = this.#lines().find((c) => c !== live);
    live.transferTo = "call";
    this.#askTransfer(held, "call", { to_call: live.id });
  }

  #askTransfer(call, to, target) {
    call.transferTo = to;
    this.#changed();
    this.#sig.send({ type: "transfer", call: call.id, ...target }, (err) => {
      for (const c of this.#lines()) c.transferTo = "";
      this.#changed();
      this.#error(err);
    });
  }

  /** Ask the gateway to hold or resume `call`; its microphone follows at once, the display on the `hold` event. */
  #requestHold(call, hold) {
    if (!call.id || call.state !== "answered") return;
    call.holdWanted = hold;
    this.#applyMute(call);
    // A request on its way is followed up when its event comes (#onHold).
    if (call.holdPending || call.holdLocal === hold) return;
    call.holdPending = true;
    const undo = () => {
      call.holdPending = false;
      call.holdWanted = call.holdLocal;
      this.#applyMute(call);
      this.#changed();
    };
    const sent = this.#sig.send({ type: hold ? "hold" : "resume", call: call.id }, (err) => {
      undo();
      this.#errorUnlessGone(err);
    });
    if (!sent) undo();
  }

  /** The microphone to use ("" for the default); switched at once in every call, without renegotiation. */
  async useMicrophone(deviceId) {
    this.#micDeviceId = deviceId || "";
    await Promise.all(this.#lines().map((call) => this.#switchMicrophone(call)));
  }

  async #switchMicrophone(call) {
    const sender = call.pc?.getSenders().find((s) => s.track?.kind === "audio");
    if (!sender || !call.mic) return;
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({ audio: this.#audioConstraints(), video: false });
    } catch (err) {
      this.#error(new Error(microphoneProblem(err)));
      return;
    }
    if (call.state === "ended" || !call.mic) {
      for (const track of mic.getTracks()) track.stop();
      return;
    }
    const [track] = mic.getAudioTracks();
    await sender.replaceTrack(track);
    for (const old of call.mic.getTracks()) old.stop();
    call.mic = mic;
    this.#applyMute(call);
    this.#changed(); // a merged call's mix takes the new microphone
  }

  #audioConstraints() {
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    if (this.#micDeviceId) audio.deviceId = { ideal: this.#micDeviceId };
    return audio;
  }

  #applyMute(call) {
    // A held call hears nothing from us, whatever the SIP side does with a=sendonly; in a direct call
    // no gateway stands between the pages, so the page the other holds stops sending too.
    const held = call.holdWanted || (call.direct && call.holdRemote);
    for (const track of call.mic?.getAudioTracks() ?? []) track.enabled = !call.muted && !held;
  }

  /** End every call locally (signed out, socket lost): the gateway ends its side itself. */
  #endAll(cause, reason) {
    // Ringing calls first, so the call in progress keeps the panel.
    const calls = [...this.#calls.values()].filter((c) => c !== this.#active);
    for (const call of [...calls, this.#active]) {
      if (call && call.state !== "ended") this.#finish(call, { cause, code: 0, reason, local: true });
    }
    this.#orphans.clear();
  }

  /** Forget the ended call shown in the panel (back to idle). */
  clearEnded() {
    if (this.#active && this.#active.state === "ended") {
      this.#active = null;
      this.#changed();
    }
  }

  // --- gateway events -----------------------------------------------------

  #route(msg) {
    const id = String(msg.call ?? "");
    const call = this.#calls.get(id);
    if (call) {
      this.#handle(call, msg);
      return;
    }
    // Possibly for an outgoing call whose `calling` reply we are awaiting.
    if (this.#placing > 0 || (this.#active && this.#active.direction === "out" && !this.#active.id)) {
      const list = this.#orphans.get(id) ?? [];
      list.push({ msg, at: Date.now() });
      this.#orphans.set(id, list);
    }
  }

  #replayOrphans(id) {
    const list = this.#orphans.get(id) ?? [];
    this.#orphans.clear();
    const fresh = Date.now() - ORPHAN_MEMORY_MS;
    for (const { msg, at } of list) {
      if (at >= fresh) this.#route(msg);
    }
  }

  #handle(call, msg) {
    switch (msg.type) {
      case "sdp":
        return this.#onSdp(call, msg);
      case "ringing":
      case "early_media":
        return this.#progress(call, msg.type);
      case "answered":
        return this.#onAnswered(call);
      case "ended":
        return this.#onEnded(call, msg);
      case "dtmf":
        return this.#onDtmf(call, msg);
      case "hold":
        return this.#onHold(call, msg);
      case "transferring":
        return this.#onTransfer(call, { transferredTo: String(msg.to ?? "") });
      case "transferred":
        return this.#onTransfer(call, { peer: String(msg.peer ?? ""), peerName: String(msg.peer_name ?? ""), transferredTo: "" });
      case "transfer_request":
        return this.#onTransferRequest(call, String(msg.to ?? ""));
      case "transfer_failed":
        for (const c of this.#lines()) c.transferTo = "";
        this.#onTransfer(call, { transferredTo: "" });
        return this.#error(new Error(String(msg.reason || "The transfer failed")));
    }
  }

  /** A transfer's news for `call`: who it is with now, and what is under way. */
  #onTransfer(call, changes) {
    if (call.state === "ended") return;
    Object.assign(call, changes);
    this.#changed();
  }

  /**
   * The other page transfers our direct call to `to`: call it beside this call, as a phone obeying a REFER.
   * The gateway ends this call once the new one is answered, or says `transfer_failed`; we keep talking meanwhile.
   */
  #onTransferRequest(call, to) {
    if (!to || call.state !== "answered" || call.transferredTo || call.transferTo) return;
    call.transferredTo = to;
    const next = new Call("out");
    next.peer = to;
    next.transferOf = call.id;
    this.#changed();
    this.#place(next, { type: "call", to, transfer_of: call.id });
  }

  #onIncoming(msg) {
    const id = String(msg.call ?? "");
    if (!id || this.#calls.has(id) || !this.#signedIn) return;
    const call = new Call("in", id);
    call.peer = typeof msg.from === "string" ? msg.from : "";
    call.peerName = typeof msg.from_name === "string" ? msg.from_name : "";
    call.dial = typeof msg.dial === "string" ? msg.dial : "";
    call.direct = msg.direct === true && typeof msg.sdp === "string";
    call.remoteOffer = call.direct ? msg.sdp : "";
    this.#calls.set(id, call);
    this.#changed();
  }

  async #onSdp(call, msg) {
    const pc = call.pc;
    if (!pc || call.state === "ended" || pc.signalingState !== "have-local-offer") return;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: String(msg.sdp) });
    } catch (err) {
      if (call.state === "ended") return;
      this.#error(new Error(`The ${call.direct ? "other browser's" : "gateway's"} media answer was not usable: ${err.message}`));
      this.#hangupCall(call, "failed", "Media negotiation failed");
    }
  }

  #progress(call, state) {
    if (call.direction !== "out" || call.state === "answered" || call.state === "ended") return;
    call.state = state;
    this.#changed();
  }

  #onAnswered(call) {
    if (call.state === "ended" || call.state === "answered") return;
    if (call.direction === "in" && !call.answering) return; // not ours to take
    call.state = "answered";
    call.answering = false;
    call.answeredAt = Date.now();
    this.#changed();
  }

  #onEnded(call, msg) {
    const end = { cause: msg.cause, code: msg.code, reason: msg.reason, local: false };
    if (call.state === "ended") {
      // We ended it locally first: show the gateway's own words for it.
      if (call.end?.local) {
        call.end = end;
        this.#changed();
      }
      return;
    }
    this.#finish(call, end);
  }

  #onDtmf(call, msg) {
    if (call.state === "ended" || typeof msg.digit !== "string") return;
    call.dtmfReceived = (call.dtmfReceived + msg.digit).slice(-32);
    this.#changed();
  }

  #onHold(call, msg) {
    if (call.state === "ended") return;
    call.holdLocal = !!msg.local;
    call.holdRemote = !!msg.remote;
    call.holdPending = false;
    this.#applyMute(call);
    // Asked otherwise while that request was on its way (Hold, then at once Answer and hold or Swap).
    if (call.holdWanted !== call.holdLocal) this.#requestHold(call, call.holdWanted);
    this.#changed();
  }

  // --- media --------------------------------------------------------------

  async #prepareDescription(call) {
    const stillWanted = () => {
      if (call.state === "ended") {
        this.#releaseMedia(call);
        throw new Aborted();
      }
    };
    if (!navigator.mediaDevices?.getUserMedia) throw new Error(NO_MIC_API);
    let mic;
    try {
      mic = await navigator.mediaDevices.getUserMedia({
        audio: this.#audioConstraints(),
        video: false,
      });
    } catch (err) {
      stillWanted();
      throw new Error(microphoneProblem(err));
    }
    call.mic = mic;
    this.#applyMute(call);
    stillWanted();

    const pc = new RTCPeerConnection({ iceServers: this.#iceServers, iceTransportPolicy: this.#icePolicy });
    call.pc = pc;
    for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
    pc.addEventListener("track", (ev) => {
      call.remoteStream = ev.streams[0] ?? new MediaStream([ev.track]);
      if (this.#active === call) this.#playRemote(call);
    });
    pc.addEventListener("connectionstatechange", () => {
      // The gateway notices too, but the user should not wait for it.
      if (pc.connectionState === "failed" && call.state !== "ended") {
        this.#error(new Error(`The media connection to ${call.direct ? "the other browser" : "the gateway"} failed`));
        this.#hangupCall(call, "network_error", "Media connection failed");
      }
    });

    if (call.remoteOffer) {
      await pc.setRemoteDescription({ type: "offer", sdp: call.remoteOffer });
      stillWanted();
      answerWithOpusOnly(pc);
    }
    await pc.setLocalDescription(await (call.remoteOffer ? pc.createAnswer() : pc.createOffer()));
    stillWanted();
    await usableCandidates(pc, { iceServers: this.#iceServers, icePolicy: this.#icePolicy, timeoutMs: ICE_GATHER_TIMEOUT_MS });
    stillWanted();
  }

  /** Show `call` in the panel and hear only its far end (null: nothing). */
  #focus(call) {
    this.#active = call;
    if (call?.remoteStream) this.#playRemote(call);
    else if (this.#audio) this.#audio.srcObject = null;
  }

  #playRemote(call) {
    if (!this.#audio || !call.remoteStream) return;
    if (this.#audio.srcObject !== call.remoteStream) this.#audio.srcObject = call.remoteStream;
    // autoplay normally suffices; a refusal here would only repeat what autoplay said.
    this.#audio.play().catch(() => {});
  }

  #releaseMedia(call) {
    for (const track of call.mic?.getTracks() ?? []) track.stop();
    call.mic = null;
    if (call.pc && call.pc.signalingState !== "closed") call.pc.close();
    if (this.#audio && call.remoteStream && this.#audio.srcObject === call.remoteStream) {
      this.#audio.srcObject = null;
    }
  }

  // --- bookkeeping --------------------------------------------------------

  #live() {
    const call = this.#active;
    return call && call.state !== "ended" ? call : null;
  }

  /** Calls placed or answered here and not ended (two at most), oldest first: the shown one and the other. */
  #lines() {
    const lines = [...this.#calls.values()].filter(
      (c) => c.state !== "ended" && (c.direction === "out" || c.answering || c.state === "answered"),
    );
    const live = this.#live();
    if (live && !lines.includes(live)) lines.push(live); // its `calling` reply is still on its way
    return lines.sort((a, b) => a.startedAt - b.startedAt);
  }

  #hangupCall(call, cause, reason) {
    if (call.id) this.#sig.send({ type: "hangup", call: call.id }, (err) => this.#errorUnlessGone(err));
    this.#finish(call, { cause, code: 0, reason, local: true });
  }

  #backToRinging(call) {
    this.#releaseMedia(call);
    call.pc = null;
    call.remoteStream = null;
    call.answering = false;
    // Back to the call put on hold for it, if any: it stays held until the user resumes it.
    if (this.#active === call) this.#focus(this.#lines()[0] ?? null);
    this.#changed();
  }

  #discard(call) {
    call.state = "ended";
    this.#releaseMedia(call);
    if (this.#active === call) this.#active = null;
    this.#changed();
  }

  #finish(call, end) {
    const endedAt = Date.now();
    const wasLine = this.#lines().includes(call);
    call.state = "ended";
    call.answering = false;
    call.end = end;
    this.#releaseMedia(call);
    const [remaining, another] = this.#lines();
    if (!another) this.#merged = false;
    if (wasLine && remaining) {
      // The other call stays as it is (on hold until the user resumes it, as on a desk phone).
      this.#endedBeside = call;
      if (this.#active === call) this.#focus(remaining);
    } else if (this.#active !== call && !this.#live()) {
      // An incoming call that stops ringing is shown as ended only when nothing else is.
      this.#active = call;
    }
    this.#forgetLater(call);
    this.#changed();
    this.dispatchEvent(
      new CustomEvent("callended", {
        detail: {
          direction: call.direction,
          peer: call.peer,
          peerName: call.peerName,
          startedAt: call.startedAt,
          answeredAt: call.answeredAt,
          endedAt,
          cause: end.cause,
        },
      }),
    );
  }

  #forgetLater(call) {
    if (!call.id) return;
    setTimeout(() => {
      if (this.#calls.get(call.id) === call) this.#calls.delete(call.id);
    }, ENDED_MEMORY_MS);
  }

  #errorUnlessGone(err) {
    // The call ended on the gateway at the same moment: nothing the user must know.
    if (err.code !== "no_such_call" && err.code !== "wrong_state") this.#error(err);
  }

  #error(err) {
    this.dispatchEvent(new CustomEvent("error", { detail: err }));
  }

  #changed() {
    this.dispatchEvent(new Event("change"));
  }
}

function bothAnswered(a, b) {
  return a.state === "answered" && b.state === "answered" && !a.holdPending && !b.holdPending;
}

/** One of two calls, for the list of calls. */
function lineView(call, shown, merged) {
  return {
    merged,
    id: call.id ?? "",
    peer: call.peer,
    peerName: call.peerName,
    state: call.state,
    answering: call.answering,
    answeredAt: call.answeredAt,
    shown,
    held: call.holdWanted || call.holdLocal,
    holdRemote: call.holdRemote,
  };
}

function microphoneProblem(err) {
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Microphone access was refused. Allow it in the browser to make calls.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found.";
    case "NotReadableError":
      return "The microphone is in use by another program.";
    default:
      return `The microphone could not be opened${err?.message ? `: ${err.message}` : ""}.`;
  }
}
