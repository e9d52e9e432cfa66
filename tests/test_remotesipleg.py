"""A SIP leg in another process, as the engine sees it: the link between
:class:`gateway.remotesipleg.RemoteSipLeg` and :class:`gateway.sipprocess.SipServer`.

Both ends run here on one event loop over a real socket pair, the SIP side on
the fake leg the engine tests use, so what crosses the link (replies, errors,
events, sockets, a REFER's verdict, the other process dying) is checked
without pjsua2; the real SIP processes are exercised in tests/test_workers.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway import engineapi as api, siplink, sipprocess
from gateway.config import SipConfig
from gateway.remotesipleg import SIP_PROCESS_GONE, RemoteSipLeg
from gateway.sipapi import TOO_MANY_CALLS, Caller, NativePort, NativeSocket, SipError, TransferRequest
from gateway.sipprocess import SipServer, SipSpec
from gateway.dialplan import CallerId

from .peers.net import wait_for_async
from .test_engine import FakeSipLeg


class OneProcess:
    """Stands in for the fork server: the "SIP process" is a :class:`SipServer` task on this loop."""

    def __init__(self, leg: FakeSipLeg) -> None:
        self.leg = leg
        self.server: SipServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.their_end: socket.socket | None = None

    async def spawn(self, spec: SipSpec) -> tuple[socket.socket, int]:
        ours, self.their_end = siplink.pair()
        self.server = SipServer(self.leg, self.their_end)  # type: ignore[arg-type]
        self.task = asyncio.ensure_future(self.server.run())
        return ours, 4242

    def die(self) -> None:
        assert self.task is not None and self.their_end is not None
        self.task.cancel()
        self.their_end.close()


class Rig:
    def __init__(self) -> None:
        self.journal: list[tuple[Any, ...]] = []
        self.sip = FakeSipLeg(self.journal)
        self.process = OneProcess(self.sip)
        self.events: list[Any] = []
        self.lost = 0
        spec = SipSpec(SipConfig(), api.SipRole(), (), 3, 20, "plain")
        self.leg = RemoteSipLeg(self.process, spec, self._lost)  # type: ignore[arg-type]

    def _lost(self) -> None:
        self.lost += 1


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    started = Rig()
    await started.leg.start(started.events.append)
    yield started
    await started.leg.stop()


async def test_the_leg_starts_with_the_sip_processes_address_and_carries_calls_and_replies(rig: Rig) -> None:
    assert (rig.leg.address, rig.leg.pid) == (FakeSipLeg.address, 4242)
    await rig.leg.make_call("c1", "trunk", "100", Caller("alice", CallerId("alice", "Alice")), NativePort(40000))
    await rig.leg.hold("c1", True)
    assert await rig.leg.quality("c1") == ("PCMU/8000", 1.0, 0.0, 2.0)
    assert rig.journal == [("invite", "c1", "100"), ("hold", "c1", True)]


async def test_a_refusal_comes_back_as_the_same_sip_error(rig: Rig) -> None:
    rig.sip.refuse["100"] = SipError(TOO_MANY_CALLS, "Too many calls")
    with pytest.raises(SipError) as refused:
        await rig.leg.make_call("c1", "trunk", "100", Caller("alice", CallerId("alice", "")), NativePort(40000))
    assert refused.value.no_free_line and refused.value.reason == "Too many calls"


async def test_events_cross_as_they_are_and_sockets_as_descriptors(rig: Rig) -> None:
    rig.sip.tell(api.Progress("c1", 180, False))
    rtp, rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtcp.bind(("127.0.0.1", 0))
    names = rtp.getsockname(), rtcp.getsockname()
    rig.sip.tell(NativeSocket("c1", rtp, rtcp))
    await wait_for_async(lambda: len(rig.events) == 2, 2)
    assert rig.events[0] == api.Progress("c1", 180, False)
    sockets = rig.events[1]
    assert isinstance(sockets, NativeSocket) and (sockets.sock.getsockname(), sockets.rtcp.getsockname()) == names
    assert rtp.fileno() == -1, "the SIP side keeps no copy of the call's sockets"
    sockets.sock.close()
    sockets.rtcp.close()


async def test_a_refer_waits_for_the_engines_verdict(rig: Rig) -> None:
    verdicts: list[tuple[bool, str]] = []
    rig.sip.tell(TransferRequest("c1", "sip:200@example.org", verdicts.append))
    await wait_for_async(lambda: rig.events, 2)
    asked = rig.events[0]
    assert isinstance(asked, TransferRequest) and asked.target == "sip:200@example.org"
    asked.answer((False, "not allowed"))
    await wait_for_async(lambda: verdicts, 2)
    assert verdicts == [(False, "not allowed")]


async def test_a_sip_process_that_dies_fails_what_waits_and_is_reported_once(rig: Rig) -> None:
    rig.sip.invite_sent.clear()  # the INVITE never returns
    waiting = asyncio.ensure_future(
        rig.leg.make_call("c1", "trunk", "100", Caller("alice", CallerId("alice", "")), NativePort(40000))
    )
    await wait_for_async(lambda: rig.journal, 2)
    rig.process.die()
    with pytest.raises(SipError, match=SIP_PROCESS_GONE):
        await waiting
    assert rig.lost == 1
    with pytest.raises(SipError, match=SIP_PROCESS_GONE):
        await rig.leg.hangup("c1")


async def test_stopping_stops_the_sip_side_and_is_no_loss() -> None:
    rig = Rig()
    await rig.leg.start(rig.events.append)
    await rig.leg.stop()
    assert rig.process.task is not None
    await asyncio.wait_for(rig.process.task, 2)
    assert ("sip stop",) in rig.journal and rig.journal.count(("sip stop",)) == 1 and rig.lost == 0


async def test_the_sip_side_serves_only_the_legs_methods(rig: Rig) -> None:
    with pytest.raises(SipError, match="no such SIP leg method"):
        await rig.leg._call("__init__")


async def test_a_bug_on_the_sip_side_fails_that_request_only(rig: Rig) -> None:
    async def broken(call_id: str) -> None:
        raise RuntimeError("a bug")

    rig.sip.ring = broken  # type: ignore[method-assign]
    with pytest.raises(SipError, match="RuntimeError: a bug"):
        await rig.leg.ring("c1")
    await rig.leg.hold("c1", False)
    assert rig.journal == [("hold", "c1", False)]


async def test_the_sip_side_runs_its_own_housekeeping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sipprocess, "TICK_SECONDS", 0.01)
    rig = Rig()
    ticks: list[int] = []

    async def tick() -> None:
        ticks.append(len(ticks))

    rig.sip.tick = tick  # type: ignore[method-assign]
    await rig.leg.start(rig.events.append)
    await rig.leg.tick()
    await wait_for_async(lambda: len(ticks) >= 3, 2)
    await rig.leg.stop()
