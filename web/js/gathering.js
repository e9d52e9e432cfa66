// When an offer has the candidates the gateway can use, so it can go before
// ICE gathering completes.
//
// The gateway does not trickle: the offer goes once, with what it holds.
// Chromium finds its UDP host candidates within a few milliseconds but goes on
// gathering TCP candidates (which the gateway's ICE never uses) for about
// 150 ms more. So the offer waits only for what matters: a UDP host candidate
// (unless the page must use TURN only), a relay candidate from each TURN
// server it was given, and briefly for a server-reflexive one when STUN is
// configured (none comes when it would equal a host address).

const SRFLX_GRACE_MS = 150;

function urlsOf(servers) {
  return servers.flatMap((server) => [server.urls ?? server.url ?? []].flat());
}

/**
 * Resolves when `pc`'s local description holds usable candidates, or when
 * gathering completes, or after `timeoutMs` (an unreachable STUN/TURN server
 * can hold gathering for a long time; the offer then goes with what it has).
 */
export function usableCandidates(pc, { iceServers = [], icePolicy = "all", timeoutMs }) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  const urls = urlsOf(iceServers);
  const wantHost = icePolicy !== "relay";
  const wantRelay = urls.some((url) => /^turns?:/.test(url));
  const wantSrflx = icePolicy !== "relay" && urls.some((url) => /^stun:/.test(url));
  const seen = new Set();
  return new Promise((resolve) => {
    let grace = null;
    const done = () => {
      clearTimeout(timer);
      clearTimeout(grace);
      pc.removeEventListener("icegatheringstatechange", onState);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const check = () => {
      if ((wantHost && !seen.has("host")) || (wantRelay && !seen.has("relay"))) return;
      if (!wantSrflx || seen.has("srflx")) done();
      else grace ??= setTimeout(done, SRFLX_GRACE_MS);
    };
    const onState = () => pc.iceGatheringState === "complete" && done();
    const onCandidate = (ev) => {
      if (ev.candidate === null) return done();
      if (ev.candidate.protocol === "udp") seen.add(ev.candidate.type);
      check();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onState);
    pc.addEventListener("icecandidate", onCandidate);
  });
}
