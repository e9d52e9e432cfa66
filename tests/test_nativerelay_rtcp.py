"""RTCP on both legs of the native relay: what it measures of what arrives, what it reports, and the
round trip it takes from the far ends' report blocks.

The far ends are hand-made (tests/relayharness.py): a "phone" with plain RTP and an RTCP socket of
its own, a "browser" with SRTP/SRTCP. The relay reports every 0.1 s here instead of 5 s.
"""

from __future__ import annotations

import pytest
from pylibsrtp import Error as SrtpError
from pylibsrtp import Policy, Session

from gateway.nativerelay import load_error

from .audio import tone
from .relayharness import (
    BROWSER_HZ,
    DTMF_PT,
    FRAME_8K,
    Block,
    Call,
    Report,
    middle,
    ntp_now,
    parse_rtcp,
    receive_all,
    relay_call,
    rtp,
    wait_for,
)

INTERVAL = 0.1
SECOND = 65536
"""LSR and DLSR count 1/65536 s."""


@pytest.fixture(autouse=True)
def native_relay_loads() -> None:
    assert load_error() is None, load_error()


def reports_to_phone(call: Call, wanted, timeout: float = 10.0) -> tuple[Report, dict[int, str]]:
    """The first report (and the CNAMEs of its compound packet) the phone's RTCP socket gets that is `wanted`."""
    found: list[tuple[Report, dict[int, str]]] = []

    def arrived() -> bool:
        for packet in receive_all(call.phone_rtcp):
            reports, cnames = parse_rtcp(packet)
            found.extend((report, cnames) for report in reports if wanted(report))
        return bool(found)

    assert wait_for(arrived, timeout), call.relay.stats(call.handle)
    return found[0]


def reports_to_browser(call: Call, wanted, timeout: float = 10.0) -> Report:
    """The first SRTCP report the browser gets that is `wanted`, unprotected."""
    found: list[Report] = []

    def arrived() -> bool:
        call.hear_browser()
        while call.rtcp_to_browser:
            reports, _ = parse_rtcp(call.browser_rx.unprotect_rtcp(call.rtcp_to_browser.pop(0)))
            found.extend(report for report in reports if wanted(report))
        return bool(found)

    assert wait_for(arrived, timeout), call.relay.stats(call.handle)
    return found[0]


def phone_stream(call: Call, sequence_numbers: list[int], pt: int | None = None) -> None:
    """RTP from the phone, all at once: each packet's timestamp 20 ms after the one before in sequence."""
    for seq in sequence_numbers:
        payload = bytes([5, 0x0A, 0, 160]) if pt == DTMF_PT else bytes([0xFF]) * FRAME_8K
        call.send_from_phone(rtp(call.law if pt is None else pt, seq, seq * FRAME_8K, call.phone_ssrc, payload))


def expected_jitter_ms(sequence_numbers: list[int]) -> float:
    """RFC 3550 A.8's estimate for packets that all arrive at once: each difference is the timestamps'."""
    jitter = 0.0
    counted = sequence_numbers[1:]  # A.1 counts a new source from its second packet in sequence
    for before, after in zip(counted, counted[1:]):
        jitter += (abs(after - before) * FRAME_8K - jitter) / 16
    return jitter / 8  # 8 kHz: timestamp units to ms


def test_what_arrives_from_the_phone_is_measured_and_reported_to_it() -> None:
    """Known loss and jitter in, the same figures in the relay's stats and its RR to the phone."""
    first, lost = 5001, {5040, 5041, 5070}
    sequence = [seq for seq in range(first, first + 100) if seq not in lost]
    with relay_call(rtcp_interval=INTERVAL) as call:
        phone_stream(call, sequence)
        assert wait_for(lambda: call.relay.stats(call.handle)["sip_expected"] == 99)  # from the second packet on
        stats = call.relay.stats(call.handle)
        assert stats["sip_lost"] == len(lost)
        assert stats["sip_jitter_ms"] == pytest.approx(expected_jitter_ms(sequence), abs=3)

        report, cnames = reports_to_phone(call, lambda r: r.blocks and r.blocks[0].highest == sequence[-1])
        assert (report.type, report.ssrc) == (201, call.relay_to_phone_ssrc)  # RR: it sent the phone nothing
        block = report.blocks[0]
        assert (block.ssrc, block.lost, block.lsr, block.dlsr) == (call.phone_ssrc, len(lost), 0, 0)
        assert block.jitter / 8 == pytest.approx(stats["sip_jitter_ms"], abs=3)
        assert len(cnames[call.relay_to_phone_ssrc]) == 16
        assert call.relay.stats(call.handle)["sip_fraction_lost"] == pytest.approx(len(lost) / 99, abs=1 / 256)


def test_telephone_events_count_for_loss_but_not_jitter() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        phone_stream(call, list(range(100, 110)), DTMF_PT)
        assert wait_for(lambda: call.relay.stats(call.handle)["sip_expected"] == 9)
        stats = call.relay.stats(call.handle)
        assert (stats["sip_lost"], stats["sip_jitter_ms"]) == (0, 0.0)


def test_the_relays_sr_counts_what_it_sent_the_phone() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        call.talk(0.5)

        def all_sent(report: Report) -> bool:  # the relay may still be flushing its reorder window
            return report.type == 200 and report.packets == call.relay.stats(call.handle)["sip_tx_packets"]

        report, _ = reports_to_phone(call, all_sent)
        assert report.packets > 0 and report.octets == report.packets * FRAME_8K
        assert abs(report.ntp - ntp_now()) < 5 * 2**32  # the wall clock, not another


def test_the_phones_sr_is_echoed_and_its_rr_gives_the_round_trip() -> None:
    """LSR/DLSR both ways: the relay echoes the phone's SR, and takes the phone's RR about its own SR."""
    with relay_call(rtcp_interval=INTERVAL) as call:
        phone_stream(call, [1, 2, 3])
        phone_sr = Report(200, call.phone_ssrc, ntp=ntp_now(), packets=3, octets=480)
        call.phone_rtcp.sendto(phone_sr.pack(), call.relay_sip_rtcp.getsockname())
        echo, _ = reports_to_phone(call, lambda r: r.blocks and r.blocks[0].lsr)
        assert echo.blocks[0].lsr == middle(phone_sr.ntp)
        assert 0 < echo.blocks[0].dlsr < 5 * SECOND

        call.talk(0.3)  # the relay sends the phone RTP, so it reports with SRs
        relay_sr, _ = reports_to_phone(call, lambda r: r.type == 200)
        assert call.relay.stats(call.handle)["sip_rtt_ms"] is None
        # The phone says it got the SR 0.25 s before it did and held it 0.05 s: 0.2 s more than the real round trip.
        block = Block(call.relay_to_phone_ssrc, fraction=64, lost=7, jitter=80,
                      lsr=middle(relay_sr.ntp) - SECOND // 4, dlsr=SECOND // 20)
        dropped = call.relay.stats(call.handle)["dropped"]
        call.phone.sendto(Report(201, call.phone_ssrc, (block,)).pack(), call.relay_sip_rtcp.getsockname())
        assert wait_for(lambda: call.relay.stats(call.handle)["dropped"] > dropped)  # not from the phone's RTCP address
        assert call.relay.stats(call.handle)["sip_rtt_ms"] is None
        call.phone_rtcp.sendto(Report(201, call.phone_ssrc, (block,)).pack(), call.relay_sip_rtcp.getsockname())
        assert wait_for(lambda: call.relay.stats(call.handle)["sip_rtt_ms"] is not None)
        stats = call.relay.stats(call.handle)
        assert 200 <= stats["sip_rtt_ms"] < 1200
        assert (stats["sip_remote_lost"], stats["sip_remote_fraction_lost"], stats["sip_remote_jitter_ms"]) == (7, 0.25, 10.0)
        assert stats["sip_rtcp_packets"] == 2


def test_a_new_rtcp_address_from_a_reinvite_gets_the_reports() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        reports_to_phone(call, lambda r: True)
        moved = Call(call.relay, 0, call.profile)  # only its phone's RTCP socket is used
        try:
            call.relay.update_sip(call.handle, call.phone.getsockname(), 0, True, True, moved.phone_rtcp.getsockname())
            receive_all(call.phone_rtcp)
            assert wait_for(lambda: receive_all(moved.phone_rtcp) != [])
            assert receive_all(call.phone_rtcp) == []
        finally:
            moved.close()


def test_malformed_reports_are_counted_and_change_nothing() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        good = Report(201, call.phone_ssrc, (Block(call.relay_to_phone_ssrc, lost=1),)).pack()
        for bad in (good[:3], good[:-4], b"\x40" + good[1:], good + b"\x00\x00"):
            call.phone_rtcp.sendto(bad, call.relay_sip_rtcp.getsockname())
        assert wait_for(lambda: call.relay.stats(call.handle)["malformed"] == 4)
        stats = call.relay.stats(call.handle)
        assert (stats["sip_rtcp_packets"], stats["sip_remote_lost"]) == (0, None)


def test_the_browser_gets_srtcp_and_its_reports_give_the_round_trip() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        call.talk(0.5)
        browser_sr = Report(200, call.browser_ssrc, ntp=ntp_now(), packets=25, octets=2500)
        call.send_from_browser(call.browser_tx.protect_rtcp(browser_sr.pack()))
        relay_sr = reports_to_browser(call, lambda r: r.type == 200 and r.blocks and r.blocks[0].lsr)
        assert relay_sr.ssrc == call.relay_to_browser_ssrc
        block = relay_sr.blocks[0]
        assert (block.ssrc, block.lsr, block.lost) == (call.browser_ssrc, middle(browser_sr.ntp), 0)
        assert relay_sr.packets == call.relay.stats(call.handle)["browser_tx_packets"]

        reply = Block(call.relay_to_browser_ssrc, lsr=middle(relay_sr.ntp) - SECOND // 4, dlsr=SECOND // 20)
        call.send_from_browser(call.browser_tx.protect_rtcp(Report(201, call.browser_ssrc, (reply,)).pack()))
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_rtt_ms"] is not None)
        stats = call.relay.stats(call.handle)
        assert 200 <= stats["browser_rtt_ms"] < 1200
        assert stats["browser_remote_lost"] == 0
        assert stats["browser_expected"] > 0 and stats["browser_lost"] == 0


@pytest.mark.parametrize("srtcp_index, refused", [(3, 0), (0, 3)], ids=["goes-on", "without-the-index"])
def test_srtcp_goes_on_from_the_index_aiortc_reached(srtcp_index: int, refused: int) -> None:
    """aiortc sent 3 SRTCP packets under our SSRC before the hand-off: the browser takes the relay's only after them."""
    with relay_call(rtcp_interval=INTERVAL, srtcp_index=srtcp_index) as call:
        aiortc = Session(Policy(call.relay_key, Policy.SSRC_ANY_OUTBOUND, srtp_profile=call.profile))
        for _ in range(3):
            call.browser_rx.unprotect_rtcp(aiortc.protect_rtcp(Report(201, call.relay_to_browser_ssrc).pack()))
        assert wait_for(lambda: (call.hear_browser(), len(call.rtcp_to_browser) >= 4)[1])
        outcomes = []
        for packet in call.rtcp_to_browser[:4]:
            try:
                call.browser_rx.unprotect_rtcp(packet)
                outcomes.append(True)
            except SrtpError:
                outcomes.append(False)
        assert outcomes == [False] * refused + [True] * (4 - refused)


def test_the_browser_leg_reports_while_the_sip_leg_has_no_rtcp_socket() -> None:
    with relay_call(rtcp_interval=INTERVAL, rtcp_fd=None, rtcp_remote=None) as call:
        heard_browser, _ = call.talk(0.3)
        assert wait_for(lambda: (call.hear_browser(), len(call.rtcp_to_browser) >= 2)[1])
        assert receive_all(call.phone_rtcp) == []
        stats = call.relay.stats(call.handle)
        assert stats["sip_rtcp_tx_packets"] == 0 and stats["browser_rtcp_tx_packets"] >= 2
        assert heard_browser  # the media went on as ever


@pytest.mark.parametrize("problem", [{"srtcp_index": 1 << 21}, {"rtcp_interval": 0.0}])
def test_bad_rtcp_parameters_are_refused(problem: dict) -> None:
    with relay_call() as call:
        other = Call(call.relay, 0, call.profile)
        try:
            with pytest.raises(ValueError, match="RTCP"):
                other.add(**problem)
        finally:
            other.close()


def test_a_lost_browser_packet_counts_as_lost_on_the_browser_leg() -> None:
    with relay_call(rtcp_interval=INTERVAL) as call:
        packets = [call.browser_packet(p) for p in call.opus_packets(tone(BROWSER_HZ, 0.5, 48000))]
        for i, packet in enumerate(packets):
            if i != 10:
                call.send_from_browser(packet)
        assert wait_for(lambda: call.relay.stats(call.handle)["browser_expected"] == len(packets) - 1)
        assert call.relay.stats(call.handle)["browser_lost"] == 1
