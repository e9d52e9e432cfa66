"""The media engine's call logic with fake legs: failover, races, teardown order, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiortc.mediastreams import MediaStreamTrack

from gateway import endcause, engine as engine_module, engineapi as api
from gateway.config import Config
from gateway.engine import MediaEngine
from gateway.sipapi import (
    TOO_MANY_CALLS, CallAudio, Caller, Disconnected, MediaTimeout, NativePort, Quality, Responded, SipError,
    SipEvent, SipEventSink, TransferRequest,
)

from .peers.net import wait_for_async

OFFER = "v=0 offer"


class FakeSipLeg:
    """Records what the engine asks; the test plays the far end by calling ``tell``."""

    address = "192.0.2.1:5060"

    def __init__(self, journal: list[tuple[Any, ...]]) -> None:
        self.journal = journal
        self.refuse: dict[str, SipError] = {}
        """target -> the error make_call raises for it."""
        self.invite_sent = asyncio.Event()
        self.invite_sent.set()
        self._events: SipEventSink | None = None

    def tell(self, event: SipEvent) -> None:
        assert self._events is not None
        self._events(event)

    async def start(self, events: SipEventSink) -> None:
        self._events = events

    async def stop(self) -> None:
        self.journal.append(("sip stop",))

    async def make_call(self, call_id: str, trunk: str, target: str, caller: Caller, audio: CallAudio) -> None:
        self.journal.append(("invite", call_id, target))
        await self.invite_sent.wait()
        if target in self.refuse:
            raise self.refuse[target]

    async def ring(self, call_id: str) -> None:
        self.journal.append(("ring", call_id))

    async def answer(self, call_id: str, audio: CallAudio) -> None:
        self.journal.append(("answer", call_id))

    async def serve(self, call_id: str, app: str, port: NativePort | None) -> None:
        self.journal.append(("serve", call_id, app))

    async def reject(self, call_id: str, code: int, reason: str, users: Sequence[str]) -> None:
        self.journal.append(("reject", call_id, code))

    async def hangup(self, call_id: str) -> None:
        self.journal.append(("hangup", call_id))

    async def send_dtmf(self, call_id: str, digits: str) -> None:
        self.journal.append(("dtmf", call_id, digits))

    async def hold(self, call_id: str, hold: bool) -> None:
        self.journal.append(("hold", call_id, hold))

    async def transfer(self, call_id: str, trunk: str, target: str, replacing: str) -> None:
        self.journal.append(("transfer", call_id, target or replacing))
        if target in self.refuse:
            raise self.refuse[target]

    async def quality(self, call_id: str) -> Quality:
        return ("PCMU/8000", 1.0, 0.0, 2.0)

    async def tick(self) -> None:
        pass


class FakeBrowserLeg:
    def __init__(self, journal: list[tuple[Any, ...]], on_failed: Callable[[], None]) -> None:
        self.journal = journal
        self.on_failed = on_failed

    async def take_media_path(self) -> object:
        raise NotImplementedError("these tests carry no media")

    async def answer(self, offer: str, outgoing: MediaStreamTrack, on_track: Callable[[MediaStreamTrack], None]) -> str:
        if offer != OFFER:
            raise ValueError("not an offer")
        return "v=0 answer"

    async def close(self) -> None:
        self.journal.append(("browser closed",))


class Rig:
    """An engine on fake legs, with everything it emitted and asked for."""

    def __init__(self, config: Config) -> None:
        self.journal: list[tuple[Any, ...]] = []
        self.events: list[api.Event] = []
        self.sip = FakeSipLeg(self.journal)
        self.browsers: list[FakeBrowserLeg] = []
        self.engine = MediaEngine(config, self.events.append, self.sip, self._browser)

    def _browser(self, on_failed: Callable[[], None], on_connected: Callable[[], None] | None) -> FakeBrowserLeg:
        self.browsers.append(FakeBrowserLeg(self.journal, on_failed))
        return self.browsers[-1]

    def dial(self, call_id: str, *targets: str, offer: str = OFFER) -> None:
        self.engine.send(api.Dial(call_id, tuple(("trunk", target) for target in targets), offer, "alice"))

    async def asked(self, *entry: Any) -> None:
        await wait_for_async(lambda: entry in self.journal, 2)

    async def emitted(self, kind: type) -> Any:
        await wait_for_async(lambda: any(isinstance(event, kind) for event in self.events), 2)
        return next(event for event in self.events if isinstance(event, kind))

    def ended(self) -> list[api.Ended]:
        return [event for event in self.events if isinstance(event, api.Ended)]


async def running(monkeypatch: pytest.MonkeyPatch, **sip: float) -> AsyncIterator[Rig]:
    """A started rig whose ``[sip]`` has ``sip``'s values; stopped at the end."""
    monkeypatch.setattr(engine_module, "_SIP_GONE_SECONDS", 0.05)  # calls left up at the end need no confirmation
    config = Config()
    for key, value in sip.items():
        setattr(config.sip, key, value)
    started = Rig(config)
    await started.engine.start()
    yield started
    await started.engine.stop()


@pytest.fixture
async def rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    async for started in running(monkeypatch, failover_timeout=0.05):
        yield started


@pytest.fixture
async def impatient_rig(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    """Gives up a target that sends nothing back after 50 ms."""
    async for started in running(monkeypatch, no_response_timeout=0.05):
        yield started


async def test_a_target_failing_with_503_fails_over_to_the_next(rig: Rig) -> None:
    rig.dial("c1", "first", "second")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(Disconnected("c1", 503, "Service Unavailable"))
    await rig.asked("invite", "c1", "second")
    rig.sip.tell(api.Progress("c1", 180, False))
    rig.sip.tell(api.Answered("c1"))
    assert await rig.emitted(api.Answered) == api.Answered("c1")
    assert [type(event) for event in rig.events if not isinstance(event, api.EngineReady)] == [
        api.WebrtcAnswer, api.Progress, api.Answered,
    ]


async def test_a_busy_target_ends_the_call_without_failover(rig: Rig) -> None:
    rig.dial("c1", "first", "second")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(Disconnected("c1", 486, "Busy Here"))
    ended = await rig.emitted(api.Ended)
    assert (ended.cause, ended.code) == ("busy", 486)
    assert ("invite", "c1", "second") not in rig.journal


async def test_a_silent_target_is_given_up_for_the_next(rig: Rig) -> None:
    rig.dial("c1", "silent", "second")
    await rig.asked("hangup", "c1")
    rig.sip.tell(Disconnected("c1", 487, "Request Terminated"))
    await rig.asked("invite", "c1", "second")
    assert not rig.ended()


async def test_a_target_that_sends_nothing_back_ends_the_call_as_not_responding(impatient_rig: Rig) -> None:
    rig = impatient_rig
    rig.dial("c1", "silent")
    await rig.asked("hangup", "c1")
    rig.sip.tell(Disconnected("c1", 487, "Request Terminated"))
    ended = await rig.emitted(api.Ended)
    assert ended == api.Ended("c1", *dataclass_values(endcause.NOT_RESPONDING))


async def test_a_target_that_does_not_respond_fails_over_to_the_next(impatient_rig: Rig) -> None:
    rig = impatient_rig
    rig.dial("c1", "silent", "second")
    await rig.asked("hangup", "c1")
    rig.sip.tell(Disconnected("c1", 487, "Request Terminated"))
    await rig.asked("invite", "c1", "second")
    rig.sip.tell(Responded("c1"))
    await asyncio.sleep(0.2)
    assert rig.journal.count(("hangup", "c1")) == 1, "a target that sent 100 Trying was given up"
    assert not rig.ended()


async def test_no_free_line_on_any_target_ends_the_call_as_busy(rig: Rig) -> None:
    rig.sip.refuse = {target: SipError(TOO_MANY_CALLS, "Too many objects") for target in ("first", "second")}
    rig.dial("c1", "first", "second")
    ended = await rig.emitted(api.Ended)
    assert ended == api.Ended("c1", *dataclass_values(endcause.NO_FREE_LINE))


async def test_a_hang_up_racing_the_invite_ends_the_dialog_it_created(rig: Rig) -> None:
    rig.sip.invite_sent.clear()
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.engine.send(api.Hangup("c1"))
    await rig.emitted(api.Ended)
    rig.sip.invite_sent.set()
    await rig.asked("hangup", "c1")
    assert len(rig.ended()) == 1


async def test_an_answer_that_overtakes_the_invites_return_is_taken(rig: Rig) -> None:
    """On loopback the far end's 183 and 200 can reach the loop before make_call has returned."""
    rig.sip.invite_sent.clear()
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(api.Progress("c1", 183, True))
    rig.sip.tell(api.Answered("c1"))
    rig.sip.invite_sent.set()
    assert await rig.emitted(api.Answered) == api.Answered("c1")
    assert api.Progress("c1", 183, True) in rig.events


async def test_teardown_sends_bye_first_and_closes_media_once_the_dialog_ended(rig: Rig) -> None:
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(api.Answered("c1"))
    rig.engine.send(api.Hangup("c1"))
    await rig.asked("hangup", "c1")
    assert ("browser closed",) not in rig.journal, "media closed before the SIP leg confirmed the end"
    rig.sip.tell(Disconnected("c1", 200, "Normal call clearing"))
    ended = await rig.emitted(api.Ended)
    assert rig.journal.index(("hangup", "c1")) < rig.journal.index(("browser closed",))
    assert (ended.cause, ended.code) == ("normal", 200)


async def test_a_sip_leg_that_never_confirms_the_end_does_not_keep_the_call(rig: Rig) -> None:
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.engine.send(api.Hangup("c1"))
    ended = await rig.emitted(api.Ended)
    assert ended.cause == "normal"
    assert ("browser closed",) in rig.journal


async def test_events_after_the_end_are_dropped(rig: Rig) -> None:
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(Disconnected("c1", 404, "Not Found"))
    await rig.emitted(api.Ended)
    rig.sip.tell(api.Answered("c1"))
    rig.sip.tell(Disconnected("c1", 200, ""))
    rig.sip.tell(MediaTimeout("c1"))
    await asyncio.sleep(0)
    assert len(rig.ended()) == 1
    assert not any(isinstance(event, api.Answered) for event in rig.events)


async def test_an_unusable_browser_offer_ends_the_call_before_any_invite(rig: Rig) -> None:
    rig.dial("c1", "first", offer="v=0 nonsense")
    ended = await rig.emitted(api.Ended)
    assert (ended.cause, ended.code) == ("failed", 488)
    assert not any(entry[0] == "invite" for entry in rig.journal)


async def test_an_incoming_call_rejected_by_control_ends_with_controls_cause(rig: Rig) -> None:
    rig.sip.tell(api.Incoming("in1", "alice", "sip:bob@192.0.2.7", "Bob", "", "192.0.2.7:5060"))
    assert (await rig.emitted(api.Incoming)).call_id == "in1"
    rig.engine.send(api.Reject("in1", 480, "Not available"))
    await rig.asked("reject", "in1", 480)
    rig.sip.tell(Disconnected("in1", 480, "Not available"))
    ended = await rig.emitted(api.Ended)
    assert (ended.cause, ended.code) == ("unavailable", 480)


async def test_an_answer_is_taken_only_once(rig: Rig) -> None:
    rig.sip.tell(api.Incoming("in1", "alice", "sip:bob@192.0.2.7", "Bob", "", "192.0.2.7:5060"))
    rig.engine.send(api.Ring("in1"))
    rig.engine.send(api.Accept("in1", OFFER))
    rig.engine.send(api.Accept("in1", OFFER))
    await rig.asked("answer", "in1")
    assert rig.journal.count(("answer", "in1")) == 1
    assert len(rig.browsers) == 1


async def answered_call(rig: Rig) -> None:
    rig.dial("c1", "first")
    await rig.asked("invite", "c1", "first")
    rig.sip.tell(api.Answered("c1"))
    await rig.emitted(api.Answered)


async def test_a_far_ends_refer_waits_for_controls_verdict_and_only_one_at_a_time(rig: Rig) -> None:
    await answered_call(rig)
    verdicts: list[tuple[bool, str]] = []
    rig.sip.tell(TransferRequest("c1", "sip:601@192.0.2.1:5060", verdicts.append))
    assert await rig.emitted(api.TransferAsked) == api.TransferAsked("c1", "sip:601@192.0.2.1:5060")
    rig.sip.tell(TransferRequest("c1", "sip:600@192.0.2.1:5060", verdicts.append))
    rig.engine.send(api.TransferVerdict("c1", True))
    await wait_for_async(lambda: len(verdicts) == 2, 2)
    assert verdicts == [(False, "the call is not answered"), (True, "")]
    rig.sip.tell(api.Transferred("c1", "sip:601@192.0.2.1:5060", ""))
    assert await rig.emitted(api.Transferred) == api.Transferred("c1", "sip:601@192.0.2.1:5060", "")
    rig.sip.tell(TransferRequest("c1", "sip:600@192.0.2.1:5060", verdicts.append))
    assert len([event for event in rig.events if isinstance(event, api.TransferAsked)]) == 2, "answered again after it"


async def test_a_verdict_still_awaited_when_the_call_ends_is_no(rig: Rig) -> None:
    await answered_call(rig)
    verdicts: list[tuple[bool, str]] = []
    rig.sip.tell(TransferRequest("c1", "sip:601@192.0.2.1:5060", verdicts.append))
    await rig.emitted(api.TransferAsked)
    rig.sip.tell(Disconnected("c1", 200, "Normal call clearing"))
    await rig.emitted(api.Ended)
    assert verdicts == [(False, "the call ended")]
    rig.sip.tell(TransferRequest("c2", "sip:601@192.0.2.1:5060", verdicts.append))
    await wait_for_async(lambda: len(verdicts) == 2, 2)
    assert verdicts[1][0] is False, "a REFER for a call the engine does not know"


async def test_a_refer_pjsua2_cannot_send_is_a_failed_transfer_and_the_call_goes_on(rig: Rig) -> None:
    await answered_call(rig)
    rig.sip.refuse["sip:b@192.0.2.9"] = SipError(481, "That call is gone")
    rig.engine.send(api.Transfer("c1", "", "sip:b@192.0.2.9"))
    status = await rig.emitted(api.TransferStatus)
    assert (status.code, status.reason) == (500, "Cannot transfer: That call is gone")
    assert not rig.ended()


async def test_stop_hangs_up_every_call_then_stops_the_sip_leg() -> None:
    rig = Rig(Config())
    await rig.engine.start()
    rig.dial("c1", "first")
    rig.sip.tell(api.Incoming("in1", "alice", "sip:bob@192.0.2.7", "Bob", "", "192.0.2.7:5060"))
    await rig.asked("invite", "c1", "first")

    async def far_end_confirms() -> None:
        for call_id in ("c1", "in1"):
            await rig.asked("hangup", call_id)
            rig.sip.tell(Disconnected(call_id, 200, ""))

    await asyncio.gather(rig.engine.stop(), far_end_confirms())
    assert {event.call_id: event.cause for event in rig.ended()} == {"c1": "failed", "in1": "failed"}
    assert rig.journal[-1] == ("sip stop",)


def dataclass_values(cause: endcause.EndCause) -> tuple[str, int, str]:
    return (cause.cause, cause.code, cause.reason)


async def test_a_room_is_refused_plainly_on_the_python_media_path(rig: Rig) -> None:
    rig.engine.send(api.Join("w1", "standup", OFFER))
    ended = await rig.emitted(api.Ended)
    assert (ended.call_id, ended.cause, ended.code) == ("w1", "failed", 503) and "native media relay" in ended.reason
    assert not rig.browsers
    rig.sip.tell(api.Incoming("in1", "700", "sip:bob@192.0.2.7", "Bob", "", "192.0.2.7:5060"))
    rig.engine.send(api.Join("in1", "standup"))
    await rig.asked("reject", "in1", 488)


async def test_a_lost_sip_leg_ends_every_call_at_once_without_waiting_for_a_bye(rig: Rig) -> None:
    rig.dial("c1", "first")
    rig.dial("c2", "second")
    await rig.asked("invite", "c2", "second")
    rig.sip.tell(api.Answered("c1"))
    rig.engine.sip_lost()
    await wait_for_async(lambda: len(rig.ended()) == 2, 2)
    assert {event.call_id for event in rig.ended()} == {"c1", "c2"}
    assert all(event == api.Ended(event.call_id, *dataclass_values(engine_module.SIP_LOST)) for event in rig.ended())
    assert ("hangup", "c1") not in rig.journal and rig.journal.count(("browser closed",)) == 2


async def test_an_engine_whose_sip_leg_is_lost_is_down_until_a_new_one_is_up(rig: Rig) -> None:
    starts: list[int] = []
    start = rig.sip.start

    async def failing_once(events: SipEventSink) -> None:
        starts.append(len(starts))
        if len(starts) == 1:
            raise OSError("the SIP process could not start: port taken")
        await start(events)

    rig.sip.start = failing_once  # type: ignore[method-assign]
    rig.engine._config.engines.restart_delay = 0.01
    rig.engine.sip_lost()
    await wait_for_async(lambda: [type(event) for event in rig.events].count(api.EngineReady) == 2, 2)
    kinds = [type(event) for event in rig.events]
    assert kinds == [api.EngineReady, api.EngineDown, api.EngineReady] and starts == [0, 1]
