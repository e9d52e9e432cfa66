// Merge: the two calls of call waiting become one three-way call, with the
// page as the mixer (as a desk phone's or Linphone's local conference). With
// WebAudio each far end gets the microphone plus the other far end, and the
// user hears both far ends. Each call stays an ordinary call to the gateway:
// only what its RTCRtpSender sends changes (replaceTrack, no renegotiation),
// so it works whatever carries each call, and costs the gateway nothing more.
// Pressing Merge again splits them: the call shown talks on, the other is held.

import { $ } from "./dom.js";

/** Wire the Merge toggle to `phone`; audio: #remote-audio. Returns the function that renders it for a Phone.view(). */
export function startMerge({ phone, audio, onError }) {
  const button = $("merge");
  let mixer = null;

  button.addEventListener("click", () => {
    if (phone.view().merged) phone.split();
    else phone.merge();
  });

  function render(v) {
    button.hidden = v.lines.length < 2;
    button.disabled = !v.merged && !v.canMerge;
    button.setAttribute("aria-pressed", String(v.merged));
    const [a, b] = v.merged ? phone.lineMedia() : [];
    const ready = a?.mic && b?.mic && a.remoteStream && b.remoteStream;
    if (mixer && !(ready && mixer.mixes(a, b))) {
      mixer.stop(phone.lineMedia());
      mixer = null;
    }
    if (ready && !mixer) {
      mixer = new Mixer(a, b, audio);
      mixer.start().catch((err) => onError(new Error(`The calls could not be merged: ${err.message}`)));
    }
  }
  return render;
}

/** The audio of two merged calls: a: and b: Phone.lineMedia() entries. */
class Mixer {
  #ctx = new AudioContext({ sampleRate: 48000 }); // WebRTC's own rate: nothing resampled on the way to Opus
  #lines;
  #audio;
  #players;
  #toUser;
  #sent = new Map(); // line -> the mixed track its sender gets

  constructor(a, b, audio) {
    this.#lines = [a, b];
    this.#audio = audio;
    const ctx = this.#ctx;
    // Chromium hands a remote stream to WebAudio only while a media element plays it.
    this.#players = this.#lines.map((line) => {
      const player = new Audio();
      player.muted = true;
      player.srcObject = line.remoteStream;
      player.play().catch(() => {});
      return player;
    });
    const far = this.#lines.map((line) => ctx.createMediaStreamSource(line.remoteStream));
    this.#toUser = ctx.createMediaStreamDestination();
    this.#lines.forEach((line, i) => {
      far[i].connect(this.#toUser);
      const out = ctx.createMediaStreamDestination();
      out.channelCount = 1;
      ctx.createMediaStreamSource(line.mic).connect(out);
      far[1 - i].connect(out);
      this.#sent.set(line, out.stream.getAudioTracks()[0]);
    });
  }

  /** True while `a` and `b` are still the calls and media this mixer was made for. */
  mixes(a, b) {
    return [a, b].every((now, i) => {
      const was = this.#lines[i];
      return now.id === was.id && now.pc === was.pc && now.mic === was.mic && now.remoteStream === was.remoteStream;
    });
  }

  async start() {
    this.#audio.srcObject = this.#toUser.stream;
    this.#audio.play().catch(() => {});
    await Promise.all([this.#ctx.resume(), ...this.#lines.map((line) => sender(line)?.replaceTrack(this.#sent.get(line)))]);
  }

  /** Back to plain calls: each sender still alive gets its microphone again, the user hears the call shown. */
  stop(lines) {
    // Unconditionally: a replaceTrack of start() may still be pending, and the pc runs them in order.
    for (const line of this.#lines) {
      const now = lines.find((l) => l.pc === line.pc);
      const out = now?.mic && sender(now);
      if (out) out.replaceTrack(now.mic.getAudioTracks()[0]).catch(() => {});
    }
    if (this.#audio.srcObject === this.#toUser.stream) {
      this.#audio.srcObject = lines.find((l) => l.shown)?.remoteStream ?? null;
      if (this.#audio.srcObject) this.#audio.play().catch(() => {});
    }
    for (const player of this.#players) player.srcObject = null;
    this.#ctx.close();
  }
}

function sender(line) {
  if (!line.pc || line.pc.signalingState === "closed") return null;
  return line.pc.getSenders().find((s) => s.track?.kind === "audio") ?? null;
}
