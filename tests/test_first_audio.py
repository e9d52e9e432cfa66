"""The page sends its offer as soon as it holds usable candidates, not after ICE gathering completes.

Chromium gathers TCP candidates for about 150 ms after its UDP host
candidates; the gateway's ICE never uses them, and waiting for them was most
of the time from pressing Call to first audio.  The figures are in
``bench/first_audio.py``; here the rules are checked in Chromium itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from .browser import OpenPhone
from .gatewayprocess import GatewayProcess

pytestmark = pytest.mark.timeout(90)

TONE_601_HZ = 440

# Records, for each message carrying an SDP, the ICE gathering state of the page's newest peer connection.
_WATCH_OFFERS_JS = """
() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.__offers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config) { super(config); window.__pcs.push(this); }
  };
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    const message = JSON.parse(data);
    if (message.sdp) window.__offers.push({ gathering: window.__pcs.at(-1).iceGatheringState, sdp: message.sdp });
    return send.call(this, data);
  };
}
"""

# Drives gathering.js with a stand-in peer connection through each rule; returns which steps had resolved.
_RULES_JS = """
async () => {
  const { usableCandidates } = await import("/js/gathering.js");
  const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
  const candidate = (type, protocol = "udp") => {
    const ev = new Event("icecandidate");
    ev.candidate = { type, protocol };
    return ev;
  };
  async function scenario(options, steps) {
    const pc = new EventTarget();
    pc.iceGatheringState = "gathering";
    let resolved = false;
    usableCandidates(pc, { timeoutMs: 400, ...options }).then(() => { resolved = true; });
    const seen = [];
    for (const step of steps) {
      if (typeof step === "number") await tick(step);
      else if (step === "complete") {
        pc.iceGatheringState = "complete";
        pc.dispatchEvent(new Event("icegatheringstatechange"));
      } else pc.dispatchEvent(candidate(...step.split("/")));
      await tick();
      seen.push(resolved);
    }
    return seen;
  }
  const stun = [{ urls: "stun:stun.example.org" }];
  const turn = [{ urls: ["turn:turn.example.org?transport=udp"], username: "u", credential: "c" }];
  return {
    host: await scenario({}, ["host/tcp", "host/udp"]),
    relayOnly: await scenario({ iceServers: turn, icePolicy: "relay" }, ["relay/tcp", "relay/udp"]),
    turnWaitsForRelay: await scenario({ iceServers: turn }, ["host/udp", 100, "relay/udp"]),
    turnTimesOut: await scenario({ iceServers: turn }, ["host/udp", 100, 400]),
    stunWithSrflx: await scenario({ iceServers: stun }, ["host/udp", "srflx/udp"]),
    stunGrace: await scenario({ iceServers: stun }, ["host/udp", 20, 200]),
    complete: await scenario({ iceServers: turn }, ["complete"]),
  };
}
"""


async def test_the_offer_goes_before_gathering_completes_and_the_call_has_audio(
    gateway: GatewayProcess, browser: OpenPhone
) -> None:
    async with browser(gateway) as phone:
        await phone.sign_in("alice")
        await phone.page.evaluate(_WATCH_OFFERS_JS)
        await phone.dial("601")
        await phone.wait_state("answered")
        await phone.wait_tone(TONE_601_HZ)
        offers: list[dict[str, Any]] = await phone.page.evaluate("window.__offers")
    assert len(offers) == 1
    assert offers[0]["gathering"] == "gathering"
    assert " udp " in offers[0]["sdp"].lower() and "typ host" in offers[0]["sdp"]


async def test_the_offer_waits_for_the_candidates_each_setting_needs(gateway: GatewayProcess, browser: OpenPhone) -> None:
    async with browser(gateway) as phone:
        steps = await phone.page.evaluate(_RULES_JS)
    assert steps == {
        "host": [False, True],  # a TCP candidate is not enough
        "relayOnly": [False, True],  # TURN only: the host candidates are never offered
        "turnWaitsForRelay": [False, False, True],  # TURN is the way through NAT: wait for it
        "turnTimesOut": [False, False, True],  # an unreachable TURN server: go with what there is
        "stunWithSrflx": [False, True],
        "stunGrace": [False, False, True],  # no srflx comes when it would equal a host address
        "complete": [True],
    }
