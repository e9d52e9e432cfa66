// Many calls from one Chromium page: each leg is its own RTCPeerConnection (and, through the
// gateway, its own WebSocket), sends its own frequency in 40 ms bursts twice a second, and
// times each burst's return on the AudioContext clock. bench/scale_calls.py injects this file
// into about:blank (a secure context, so AudioWorklet is allowed) and drives window.bench.
"use strict";

(() => {
  const PERIOD_S = 0.5;
  const BURST_S = 0.04;
  const AMPLITUDE = 0.5;
  const CAPTURE = 1536; // samples kept of each returned burst (32 ms at 48 kHz), for its frequency
  const SETUP_MS = 30000;

  // One node per leg. Input 0 is what the leg sends, input 1 what comes back; a burst onset is
  // the first sample above THRESHOLD after QUIET_S of quiet, timed in frames of the audio clock,
  // so both sides of a round trip are read on the same clock.
  const WORKLET = `
    const THRESHOLD = 0.1, QUIET_S = 0.1, CAPTURE = ${CAPTURE};
    registerProcessor("bursts", class extends AudioWorkletProcessor {
      constructor() {
        super();
        this.quiet = [0, 0];
        this.capture = null;
      }
      process(inputs) {
        const quietFrames = QUIET_S * sampleRate;
        for (let side = 0; side < 2; side++) {
          const samples = inputs[side][0];
          if (!samples) continue;
          for (let j = 0; j < samples.length; j++) {
            if (Math.abs(samples[j]) <= THRESHOLD) { this.quiet[side]++; continue; }
            if (this.quiet[side] >= quietFrames) {
              const at = (currentFrame + j) / sampleRate;
              this.port.postMessage({ side, at });
              if (side === 1) this.capture = { at, samples: new Float32Array(CAPTURE), filled: 0 };
            }
            this.quiet[side] = 0;
          }
          const capture = this.capture;
          if (side === 1 && capture) {
            const start = capture.filled === 0 ? Math.round((capture.at - currentFrame / sampleRate) * sampleRate) : 0;
            const take = samples.subarray(start, start + CAPTURE - capture.filled);
            capture.samples.set(take, capture.filled);
            capture.filled += take.length;
            if (capture.filled >= CAPTURE) {
              this.port.postMessage({ side: 2, at: capture.at, samples: capture.samples });
              this.capture = null;
            }
          }
        }
        return true;
      }
    });`;

  let ctx = null;
  let sink = null;
  const legs = [];

  async function audio() {
    if (ctx) return ctx;
    ctx = new AudioContext({ sampleRate: 48000 });
    const url = URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" }));
    await ctx.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    sink = ctx.createGain(); // the detectors are pulled only while connected to the destination
    sink.gain.value = 0;
    sink.connect(ctx.destination);
    await ctx.resume();
    return ctx;
  }

  function burstBuffer(freq) {
    const buffer = ctx.createBuffer(1, Math.round(PERIOD_S * ctx.sampleRate), ctx.sampleRate);
    const data = buffer.getChannelData(0);
    const burst = Math.round(BURST_S * ctx.sampleRate);
    for (let j = 0; j < burst; j++) data[j] = AMPLITUDE * Math.sin((2 * Math.PI * freq * j) / ctx.sampleRate);
    return buffer;
  }

  // One end of a call: a looping burst source into the connection, the remote stream into the detector.
  class Leg {
    constructor(freq, offset) {
      this.freq = freq;
      this.sent = [];
      this.back = [];
      this.bursts = [];
      this.detector = new AudioWorkletNode(ctx, "bursts", { numberOfInputs: 2, numberOfOutputs: 1 });
      this.detector.connect(sink);
      this.detector.port.onmessage = (ev) => {
        const { side, at, samples } = ev.data;
        if (side === 0) this.sent.push(at);
        else if (side === 1) this.back.push(at);
        else this.bursts.push({ at, samples: Array.from(samples) });
      };
      const source = ctx.createBufferSource();
      source.buffer = burstBuffer(freq);
      source.loop = true;
      this.outgoing = ctx.createMediaStreamDestination();
      source.connect(this.outgoing);
      source.connect(this.detector, 0, 0);
      source.start(ctx.currentTime + 0.1 + offset);
    }

    attach(pc) {
      this.pc = pc;
      pc.addTrack(this.outgoing.stream.getAudioTracks()[0], this.outgoing.stream);
      pc.ontrack = (ev) => {
        const stream = ev.streams[0] || new MediaStream([ev.track]);
        // A remote stream reaches WebAudio only while a media element plays it; volume 0 keeps it silent.
        this.player = new Audio();
        this.player.srcObject = stream;
        this.player.volume = 0;
        this.player.play().catch(() => {});
        ctx.createMediaStreamSource(stream).connect(this.detector, 0, 1);
      };
    }

    async stats() {
      const totals = { packetsReceived: 0, packetsLost: 0, concealedSamples: 0, totalSamplesReceived: 0 };
      if (!this.pc) return totals;
      (await this.pc.getStats()).forEach((report) => {
        if (report.type === "inbound-rtp" && report.kind === "audio") {
          for (const key of Object.keys(totals)) totals[key] += report[key] || 0;
        }
      });
      return totals;
    }
  }

  function gathered(pc) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    });
  }

  // sign_in, call, apply the answer; resolves with "answered" or why the call did not get there.
  function callThroughGateway(leg, wsUrl, user, to) {
    return new Promise((resolve) => {
      const ws = (leg.ws = new WebSocket(wsUrl));
      const timer = setTimeout(() => resolve("no answer within 30 s"), SETUP_MS);
      const done = (outcome) => { clearTimeout(timer); resolve(outcome); };
      ws.onerror = () => done("websocket error");
      ws.onclose = () => done("websocket closed");
      ws.onmessage = async (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "hello") {
          ws.send(JSON.stringify({ type: "sign_in", user }));
        } else if (msg.type === "signed_in") {
          const pc = new RTCPeerConnection({ iceServers: msg.ice_servers, iceTransportPolicy: msg.ice_transport_policy });
          leg.attach(pc);
          await pc.setLocalDescription(await pc.createOffer());
          await gathered(pc);
          ws.send(JSON.stringify({ type: "call", to, sdp: pc.localDescription.sdp }));
        } else if (msg.type === "sdp") {
          await leg.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
        } else if (msg.type === "answered") {
          done("answered");
        } else if (msg.type === "ended" || msg.type === "error") {
          done(`${msg.type}: ${msg.reason || msg.message || msg.cause || msg.code}`);
        }
      };
    });
  }

  window.bench = {
    // Calls number i to uris[i] from user `${prefix}${i}`, 1000/rate ms apart; each call's outcome.
    async startCalls(wsUrl, uris, freqs, prefix, rate) {
      await audio();
      const outcomes = [];
      for (let i = 0; i < uris.length; i++) {
        const leg = new Leg(freqs[i], (i * PERIOD_S) / uris.length);
        legs.push(leg);
        outcomes.push(callThroughGateway(leg, wsUrl, `${prefix}${i}`, uris[i]));
        await new Promise((r) => setTimeout(r, 1000 / rate));
      }
      return Promise.all(outcomes);
    },

    // A second connection in this page echoes the first: the browser's own share of a round trip.
    async startDirect(freq) {
      await audio();
      const leg = new Leg(freq, 0);
      legs.push(leg);
      const caller = new RTCPeerConnection();
      const echo = new RTCPeerConnection();
      leg.attach(caller);
      leg.echo = echo; // held by the leg, so it lives as long as the measurement
      echo.ontrack = (ev) => {
        echo.addTrack(ev.track, ...ev.streams);
        leg.echoPlayer = new Audio();
        leg.echoPlayer.srcObject = ev.streams[0] || new MediaStream([ev.track]);
        leg.echoPlayer.volume = 0;
        leg.echoPlayer.play().catch(() => {});
      };
      await caller.setLocalDescription(await caller.createOffer());
      await gathered(caller);
      await echo.setRemoteDescription(caller.localDescription);
      await echo.setLocalDescription(await echo.createAnswer());
      await gathered(echo);
      await caller.setRemoteDescription(echo.localDescription);
      return "answered";
    },

    // The audio clock now, and every leg's receive counters: the start of a measured window.
    async mark() {
      return { at: ctx.currentTime, stats: await Promise.all(legs.map((leg) => leg.stats())) };
    },

    // What each leg sent and got back since `since` (audio clock seconds), and its counters now.
    async report(since) {
      const stats = await Promise.all(legs.map((leg) => leg.stats()));
      return legs.map((leg, i) => ({
        freq: leg.freq,
        rate: ctx.sampleRate,
        sent: leg.sent.filter((t) => t >= since - PERIOD_S),
        back: leg.back.filter((t) => t >= since),
        bursts: leg.bursts.filter((b) => b.at >= since).slice(0, 8).map((b) => b.samples),
        stats: stats[i],
      }));
    },
  };
})();
