// Call-progress tones made in the page: a ringtone for incoming calls,
// ringback while the far end rings without early media, and key feedback.
// The AudioContext is only created on a user gesture (see unlock), so the
// browser never has to refuse or warn about it.

const PATTERNS = {
  // [start s, length s, frequencies] repeated every `period` seconds.
  ringtone: { period: 3, gain: 0.12, bursts: [[0, 0.4, [440, 480]], [0.6, 0.4, [440, 480]]] },
  ringback: { period: 6, gain: 0.06, bursts: [[0, 2, [440, 480]]] },
  waiting: { period: 8, gain: 0.05, bursts: [[0, 0.2, [440]], [0.4, 0.2, [440]]] },
};

const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  "*": [941, 1209], 0: [941, 1336], "#": [941, 1477],
};

let ctx = null;
let current = null;
let loop = 0;

/** Call from a user gesture; later tones (a ringtone) can then play. */
export function unlock() {
  // Keys such as Tab or Escape are not activation; the browser would warn.
  if (navigator.userActivation && !navigator.userActivation.isActive) return;
  if (!ctx && window.AudioContext) ctx = new AudioContext();
  if (ctx?.state === "suspended") ctx.resume().catch(() => {});
}

/** Play a named pattern until another (or null) is asked for. */
export function play(name) {
  if (name === current) return;
  current = name;
  clearInterval(loop);
  loop = 0;
  const pattern = PATTERNS[name];
  if (!pattern || !ctx) return;
  const once = () => {
    const t0 = ctx.currentTime + 0.05;
    for (const [start, length, freqs] of pattern.bursts) burst(freqs, t0 + start, length, pattern.gain);
  };
  once();
  loop = setInterval(once, pattern.period * 1000);
}

export function key(k) {
  if (ctx && DTMF[k]) burst(DTMF[k], ctx.currentTime, 0.12, 0.05);
}

function burst(freqs, at, length, gain) {
  const g = ctx.createGain();
  // Short ramps avoid clicks at the edges.
  g.gain.setValueAtTime(0, at);
  g.gain.linearRampToValueAtTime(gain, at + 0.01);
  g.gain.setValueAtTime(gain, at + length - 0.02);
  g.gain.linearRampToValueAtTime(0, at + length);
  g.connect(ctx.destination);
  for (const f of freqs) {
    const osc = ctx.createOscillator();
    osc.frequency.value = f;
    osc.connect(g);
    osc.start(at);
    osc.stop(at + length);
    osc.onended = () => g.disconnect();
  }
}
