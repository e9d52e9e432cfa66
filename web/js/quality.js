// Call-quality panel: once a second during an answered call, the browser
// leg's round-trip time, jitter, loss and codec from getStats(), an estimated
// MOS, a small graph, and the SIP leg's figures when the gateway gives them
// (a direct call to another web user's browser has no SIP leg: its `stats`
// reply says `direct`, and the browser's figures are the whole path).
// The browser leg's figures go to the gateway with each `stats` request, for
// its metrics (loss over the whole call there, not over the last second).

import { $ } from "./dom.js";

const EVERY_MS = 1000;
const HISTORY = 60; // graph points (seconds)
const GRAPH_H = 40; // the SVG viewBox height
const GRAPH_RTT_MAX_MS = 500;
const LIMITS = { rtt: 400, jitter: 30, loss: 3, mos: 3.5 };
const ON_HOLD = "On hold: no audio flows, so there is nothing to measure.";
const DIRECT = "Direct to the other browser: no phone network leg.";

/**
 * Estimated MOS with the simplified E-model Twilio's Voice SDK uses.
 * rttMs, jitterMs in milliseconds, lossPct in percent.
 */
export function estimateMos(rttMs, jitterMs, lossPct) {
  const latency = (rttMs || 0) + 2 * (jitterMs || 0) + 10;
  let r = 93.2 - (latency < 160 ? latency / 40 : (latency - 120) / 10);
  r -= 2.5 * (lossPct || 0);
  if (r <= 0) return 1;
  if (r >= 100) return 4.5;
  const mos = 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r);
  return Math.min(4.5, Math.max(1, mos));
}

/** What one getStats() report says about the audio call, with loss over the interval since `prev`. */
export function readStats(report, prev = null) {
  let pair = null;
  let inbound = null;
  let remoteInbound = null;
  let outbound = null;
  const codecs = new Map();
  let selectedPairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) selectedPairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === "candidate-pair") {
      if (s.id === selectedPairId || (!selectedPairId && s.nominated && s.state === "succeeded")) pair = s;
    } else if (s.type === "inbound-rtp" && (s.kind ?? s.mediaType) === "audio") inbound = s;
    else if (s.type === "remote-inbound-rtp" && (s.kind ?? s.mediaType) === "audio") remoteInbound = s;
    else if (s.type === "outbound-rtp" && (s.kind ?? s.mediaType) === "audio") outbound = s;
    else if (s.type === "codec") codecs.set(s.id, s);
  });

  let rttMs = null;
  if (typeof remoteInbound?.roundTripTime === "number") rttMs = remoteInbound.roundTripTime * 1000;
  else if (typeof pair?.currentRoundTripTime === "number") rttMs = pair.currentRoundTripTime * 1000;

  const jitterMs = typeof inbound?.jitter === "number" ? inbound.jitter * 1000 : null;

  const lost = Math.max(0, inbound?.packetsLost ?? 0);
  const received = inbound?.packetsReceived ?? 0;
  let lossPct = null;
  if (inbound) {
    const dLost = lost - (prev?.lost ?? 0);
    const dReceived = received - (prev?.received ?? 0);
    const total = prev && dLost >= 0 && dReceived >= 0 ? dLost + dReceived : lost + received;
    const part = prev && dLost >= 0 && dReceived >= 0 ? dLost : lost;
    lossPct = total > 0 ? (100 * part) / total : 0;
  }

  const codecStat = codecs.get(inbound?.codecId) ?? codecs.get(outbound?.codecId) ?? null;
  let codec = "";
  if (codecStat?.mimeType) {
    codec = codecStat.mimeType.replace(/^audio\//i, "");
    if (codecStat.clockRate) codec += `/${codecStat.clockRate}`;
    if (codecStat.channels > 1) codec += `/${codecStat.channels}`;
  }
  return { rttMs, jitterMs, lossPct, codec, lost, received };
}

/** The browser leg's figures for the gateway's `stats` request: only those measured; null when none are. */
export function browserFigures(s) {
  const figures = {};
  if (s.rttMs != null) figures.rtt_ms = s.rttMs;
  if (s.jitterMs != null) figures.jitter_ms = s.jitterMs;
  if (s.lost + s.received > 0) figures.loss_pct = (100 * s.lost) / (s.lost + s.received);
  return Object.keys(figures).length ? figures : null;
}

/**
 * Wire the panel. getPc: the live RTCPeerConnection or null; ask(callId, browser): the gateway's `stats`
 * reply (a promise), browser the figures of browserFigures() or null.
 */
export function startQualityPanel({ getPc, ask }) {
  const el = {
    panel: $("quality"),
    summary: $("quality-summary"),
    warning: $("quality-warning"),
    alert: $("quality-alert"), // a short pointer to the panel, next to the timer
    rtt: $("q-rtt"),
    jitter: $("q-jitter"),
    loss: $("q-loss"),
    mos: $("q-mos"),
    codec: $("q-codec"),
    sip: $("q-sip"),
    lineMos: $("quality-line-mos"),
    lineRtt: $("quality-line-rtt"),
  };
  let callId = "";
  let timer = 0;
  let prev = null;
  let points = [];
  let sipWanted = true; // false once the gateway said it does not know `stats`
  let busy = false;
  let asking = false; // a `stats` request is on its way
  let held = false; // either side holds the call: no audio, so figures say nothing about the network

  function reset() {
    prev = null;
    points = [];
    sipWanted = true;
    for (const d of [el.rtt, el.jitter, el.loss, el.mos, el.codec]) d.textContent = "–";
    showMeasuring();
    el.alert.hidden = true;
    el.sip.hidden = true;
    el.sip.textContent = "";
    el.lineMos.setAttribute("points", "");
    el.lineRtt.setAttribute("points", "");
  }

  async function tick() {
    const pc = getPc();
    if (!pc || busy) return;
    busy = true;
    const forCall = callId;
    let browser = null;
    try {
      const report = await pc.getStats();
      if (forCall !== callId) return;
      const now = readStats(report, prev);
      prev = now;
      show(now);
      // While held no audio flows: the figures say nothing about the network.
      if (!held) browser = browserFigures(now);
    } catch {
      // A closed connection at the end of a call: the panel goes away anyway.
    } finally {
      busy = false;
    }
    if (sipWanted && forCall && !asking) {
      asking = true;
      ask(forCall, browser)
        .then(
          (reply) => {
            if (forCall !== callId) return;
            if (reply?.sip) showSip(reply.sip);
            else if (reply?.direct) showNote(DIRECT);
          },
          (err) => {
            if (forCall !== callId) return;
            el.sip.hidden = true;
            // An older gateway without `stats`: stop asking for this call.
            if (err?.code === "bad_message") sipWanted = false;
          },
        )
        .finally(() => {
          asking = false;
        });
    }
  }

  function show(s) {
    const mos = estimateMos(s.rttMs ?? 0, s.jitterMs ?? 0, s.lossPct ?? 0);
    el.rtt.textContent = s.rttMs == null ? "–" : `${Math.round(s.rttMs)}\u00a0ms`;
    el.jitter.textContent = s.jitterMs == null ? "–" : `${s.jitterMs.toFixed(1)}\u00a0ms`;
    el.loss.textContent = s.lossPct == null ? "–" : `${s.lossPct.toFixed(1)}\u00a0%`;
    el.mos.textContent = mos.toFixed(2);
    el.codec.textContent = s.codec || "–";

    if (held) {
      showHeld();
      return;
    }
    const problems = [];
    if (s.rttMs != null && s.rttMs > LIMITS.rtt) problems.push(`high delay (${Math.round(s.rttMs)} ms round trip)`);
    if (s.jitterMs != null && s.jitterMs > LIMITS.jitter) problems.push(`uneven delivery (${s.jitterMs.toFixed(0)} ms jitter)`);
    if (s.lossPct != null && s.lossPct > LIMITS.loss) problems.push(`lost audio (${s.lossPct.toFixed(1)} % of packets)`);
    if (mos < LIMITS.mos) problems.push(`estimated MOS ${mos.toFixed(1)}`);
    const text = problems.length ? `Poor connection: ${problems.join(", ")}.` : "";
    if (el.warning.textContent !== text) el.warning.textContent = text;
    el.warning.hidden = !text;
    el.alert.hidden = !text;

    const level = mos >= 4 ? "good" : mos >= LIMITS.mos ? "fair" : "poor";
    el.summary.dataset.level = level;
    el.summary.textContent = { good: "Good", fair: "Fair", poor: "Poor" }[level];

    points.push({ mos, rtt: s.rttMs ?? 0 });
    if (points.length > HISTORY) points.shift();
    const x = (i) => (HISTORY - points.length + i).toFixed(1);
    // 2 units of margin top and bottom, so lines at the limits stay visible.
    const span = GRAPH_H - 4;
    const yMos = (m) => (GRAPH_H - 2 - ((m - 1) / 4) * span).toFixed(2);
    const yRtt = (r) => (GRAPH_H - 2 - (Math.min(r, GRAPH_RTT_MAX_MS) / GRAPH_RTT_MAX_MS) * span).toFixed(2);
    el.lineMos.setAttribute("points", points.map((p, i) => `${x(i)},${yMos(p.mos)}`).join(" "));
    el.lineRtt.setAttribute("points", points.map((p, i) => `${x(i)},${yRtt(p.rtt)}`).join(" "));
  }

  function showMeasuring() {
    el.summary.textContent = "Measuring…";
    el.summary.dataset.level = "";
    el.warning.hidden = true;
    el.warning.textContent = "";
  }

  function showHeld() {
    el.warning.textContent = ON_HOLD;
    el.warning.hidden = false;
    el.alert.hidden = true;
    el.summary.dataset.level = "hold";
    el.summary.textContent = "On hold";
  }

  function showSip(sip) {
    const parts = [];
    if (sip.codec) parts.push(String(sip.codec));
    if (typeof sip.jitter_ms === "number") parts.push(`jitter ${sip.jitter_ms.toFixed(1)}\u00a0ms`);
    if (typeof sip.loss_pct === "number") parts.push(`loss ${sip.loss_pct.toFixed(1)}\u00a0%`);
    if (typeof sip.rtt_ms === "number") parts.push(`round trip ${sip.rtt_ms.toFixed(1)}\u00a0ms`);
    showNote(parts.length ? `Phone network leg: ${parts.join(" · ")}` : "");
  }

  function showNote(text) {
    if (el.sip.textContent !== text) el.sip.textContent = text;
    el.sip.hidden = !text;
  }

  /** v: Phone.view(); the panel runs while a call is answered. */
  return function update(v) {
    const id = v.state === "answered" ? v.callId : "";
    const nowHeld = v.holdLocal || v.holdRemote;
    if (id === callId) {
      if (id && nowHeld !== held) {
        held = nowHeld;
        prev = null; // loss over the held time would be counted against the network
        if (held) showHeld();
        else showMeasuring();
      }
      return;
    }
    held = nowHeld;
    clearInterval(timer);
    timer = 0;
    callId = id;
    reset();
    el.panel.hidden = !id;
    if (!id) return;
    tick();
    timer = setInterval(tick, EVERY_MS);
  };
}
