"""The Kamailio trunk harness itself, against real baresip and sipp (no gateway involved).

These fail, never skip, when kamailio is missing: the gateway's trunk tests stand on
this harness, and a harness that silently skipped would let them pass untested.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .audio import dominant_frequency, has_tone, read_wav, tone, write_wav
from .peers import sipp
from .peers.baresip import Baresip
from .peers.kamailio import (
    KAMAILIO,
    KAMCMD,
    Kamailio,
    KamailioError,
    SilentSipPort,
    register_phone,
)
from .peers.net import udp_port_bound, wait_for

pytestmark = pytest.mark.timeout(30)

RATE = 8000
CALLER_HZ, CALLEE_HZ = 1000, 700
USERS = {"1001": "pw-1001", "1002": "pw-1002", "gw": "gw-secret"}


def phone_playing(directory: Path, freq: int) -> Baresip:
    """A baresip phone (not started) that plays `freq` Hz into its calls.

    Stop it before the Kamailio it registered with: on exit baresip un-registers
    and, with nobody answering, lingers until stop_process kills it 5 s later.
    """
    path = directory / f"tone-{freq}.wav"
    write_wav(path, tone(freq, 20, RATE), RATE)
    return Baresip(directory, path, user=f"phone{freq}")


@pytest.fixture
def trunk(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path, USERS) as running:
        yield running


# Requested after `trunk`, so torn down before it (see phone_playing).
@pytest.fixture
def caller(tmp_path: Path, trunk: Kamailio) -> Iterator[Baresip]:
    with phone_playing(tmp_path, CALLER_HZ) as phone:
        yield phone


@pytest.fixture
def callee(tmp_path: Path, trunk: Kamailio) -> Iterator[Baresip]:
    with phone_playing(tmp_path, CALLEE_HZ) as phone:
        yield phone


def assert_heard(phone: Baresip, freq: int) -> None:
    samples, rate = read_wav(phone.recording())
    assert len(samples) > rate // 2, "less than half a second recorded"
    assert has_tone(samples, rate, freq), f"dominant frequency {dominant_frequency(samples, rate):.0f} Hz"


def talk_and_hang_up(phone: Baresip, seconds: float = 1.5) -> None:
    phone.wait_event("CALL_RTPESTAB")
    time.sleep(seconds)
    phone.hangup()
    phone.wait_event("CALL_CLOSED")


# --- process and configuration ------------------------------------------------------


def test_kamailio_and_kamcmd_are_installed() -> None:
    missing = [program for program in (KAMAILIO, KAMCMD) if shutil.which(program) is None]
    assert not missing, f"missing {missing}: apt-get install kamailio"


def test_arguments_that_would_break_the_config_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="final non-2xx"):
        Kamailio(tmp_path, USERS, respond=200)
    with pytest.raises(ValueError, match="unsupported value"):
        Kamailio(tmp_path, {"alice": 'pass"word'})
    with pytest.raises(ValueError, match="unsupported user"):
        Kamailio(tmp_path, {"al ice": "x"})
    with pytest.raises(ValueError, match="not a SIP URI"):
        Kamailio(tmp_path, USERS, routes={"500": "http://example.test"})


def test_answers_keepalive_options_and_leaves_no_process_behind(tmp_path: Path) -> None:
    trunk = Kamailio(tmp_path, USERS)
    with trunk:
        assert sipp.send_request(trunk.uri) == 200
        group = trunk.pid
        assert group is not None
        assert _group_size(group) > 3, "Kamailio forks UDP, TCP, timer and ctl workers"
        assert (trunk.dir / "kamailio.pid").exists() and (trunk.dir / "kamailio_ctl").exists()
    assert not trunk.running and not udp_port_bound(trunk.port)
    assert _group_size(group) == 0, "Kamailio workers outlived stop()"


def test_a_taken_fixed_port_is_reported_not_replaced(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        trunk = Kamailio(tmp_path, USERS, port=taken.getsockname()[1])
        with pytest.raises(KamailioError, match="could not bind"):
            trunk.start()
    assert not trunk.running


def _group_size(pgid: int) -> int:
    """Number of processes in process group `pgid`."""
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True, check=False)
    return len(found.stdout.split())


# --- registration ----------------------------------------------------------------------


def test_register_is_challenged_then_stored_with_the_expires_asked_for(trunk: Kamailio) -> None:
    assert trunk.register("gw", "sip:gw@127.0.0.1:5999", expires=30) == 200
    [contact] = trunk.wait_registered("gw")
    assert contact.uri == "sip:gw@127.0.0.1:5999" and 25 <= contact.expires <= 30
    assert trunk.register_count("gw") == 2  # the unauthenticated one (401) and the answer
    assert [event.fields["expires"] for event in trunk.events("REGISTERED", user="gw")] == ["30"]
    assert trunk.register("gw", "sip:gw@127.0.0.1:5999", expires=0) == 200  # un-register
    assert not trunk.registered("gw")


def test_registration_expires_when_not_refreshed(trunk: Kamailio) -> None:
    assert trunk.register("1001", "sip:1001@127.0.0.1:5999", expires=2) == 200
    assert trunk.registered("1001")
    wait_for(lambda: not trunk.registered("1001"), timeout=5)


@pytest.mark.parametrize(("user", "password"), [("gw", "wrong"), ("nobody", "x")])
def test_wrong_credentials_get_403_after_the_challenge(trunk: Kamailio, user: str, password: str) -> None:
    assert trunk.register(user, "sip:x@127.0.0.1:5999", password=password) == 403
    assert trunk.register_count(user) == 2
    assert trunk.events("AUTH-FAILED", user=user)
    assert not trunk.registered(user)


def test_auth_user_must_be_the_registered_user(trunk: Kamailio) -> None:
    """1002's valid credentials must not register a contact for 1001."""
    assert trunk.register("1001", "sip:x@127.0.0.1:5999", auth_user="1002") == 403
    assert trunk.events("AUTH-FAILED", user="1001", auth="1002")


def test_baresip_registers_with_digest_auth(trunk: Kamailio, caller: Baresip) -> None:
    assert register_phone(caller, trunk, "1001") == "200 OK"
    [contact] = trunk.contacts("1001")
    assert contact.uri.startswith("sip:1001-") and contact.uri.endswith(f"@127.0.0.1:{caller.sip_port}")


def test_baresip_with_a_wrong_password_gets_403_and_stops(trunk: Kamailio, caller: Baresip) -> None:
    assert register_phone(caller, trunk, "1001", password="wrong") == "403 Forbidden"
    time.sleep(2)  # a client looping on bad credentials would have sent many more by now
    assert trunk.register_count("1001") == 2
    assert not trunk.registered("1001")


def test_restart_keeps_the_port_forgets_registrations_and_accepts_new_ones(tmp_path: Path) -> None:
    with Kamailio(tmp_path, USERS) as trunk:
        port = trunk.port
        assert trunk.register("gw", "sip:gw@127.0.0.1:5999") == 200
        trunk.restart()
        assert trunk.port == port and trunk.uri.endswith(f":{port}")
        assert not trunk.registered("gw")
        assert trunk.register("gw", "sip:gw@127.0.0.1:5999") == 200
        assert trunk.registered("gw")
        assert trunk.register_count("gw") == 4  # the log spans both runs


def test_baresip_reregisters_after_a_restart(trunk: Kamailio, caller: Baresip) -> None:
    """What the gateway must do too: refresh before Expires runs out, so a restarted
    (amnesic) provider learns the contact again within one interval."""
    assert register_phone(caller, trunk, "1001", regint=3) == "200 OK"
    trunk.restart()
    assert not trunk.registered("1001")
    trunk.wait_registered("1001", timeout=6)


# --- calls --------------------------------------------------------------------------------


def test_call_between_registered_phones_with_audio_both_ways(trunk: Kamailio, caller: Baresip, callee: Baresip) -> None:
    register_phone(caller, trunk, "1001")
    register_phone(callee, trunk, "1002")
    caller.dial(trunk.user_uri("1002"))
    caller.wait_event("CALL_ESTABLISHED")
    assert callee.wait_event("CALL_ESTABLISHED")["peeruri"] == trunk.user_uri("1001")
    talk_and_hang_up(caller)
    assert callee.wait_event("CALL_CLOSED")["param"] == "Connection reset by peer"
    assert_heard(caller, CALLEE_HZ)
    assert_heard(callee, CALLER_HZ)
    [route] = trunk.events("ROUTE", number="1002")
    assert route.fields["via"] == "registered" and route.fields["target"] == trunk.contacts("1002")[0].uri
    methods = [event.fields["method"] for event in trunk.events("REQUEST", callid=route.fields["callid"])]
    assert methods == ["INVITE", "INVITE", "ACK", "BYE"]  # 407, then authenticated; in dialog via Record-Route


def test_unregistered_number_goes_to_its_route_or_gets_404(tmp_path: Path) -> None:
    with (
        sipp.echo_uas(tmp_path) as echo,
        Kamailio(tmp_path, USERS, routes={"500": echo.uri("echo")}) as trunk,
        phone_playing(tmp_path, CALLER_HZ) as caller,
    ):
        register_phone(caller, trunk, "1001")
        caller.dial(trunk.user_uri("500"))
        caller.wait_event("CALL_ESTABLISHED")
        talk_and_hang_up(caller)
        assert_heard(caller, CALLER_HZ)  # echoed by sipp
        caller.dial(trunk.user_uri("501"))
        assert caller.wait_event("CALL_CLOSED")["param"] == "404 Not Found"
    routed, refused = trunk.events("ROUTE")
    assert (routed.fields["via"], routed.fields["target"]) == ("routes", echo.uri("echo"))
    assert (refused.fields["via"], refused.fields["number"]) == ("none", "501")
    # sipp does not copy Record-Route; the proxy adds it to sipp's replies, so that the
    # BYE also goes through the proxy, which is where sipp sends its 200.
    methods = [event.fields["method"] for event in trunk.events("REQUEST", callid=routed.fields["callid"])]
    assert methods == ["INVITE", "INVITE", "ACK", "BYE"]
    assert trunk.events("ADDED-RR", callid=routed.fields["callid"])


def test_registered_contact_wins_over_a_route_and_can_be_registered_from_python(tmp_path: Path) -> None:
    with (
        sipp.echo_uas(tmp_path) as echo,
        Kamailio(tmp_path, USERS, routes={"gw": "sip:nobody@127.0.0.1:9"}) as trunk,
        phone_playing(tmp_path, CALLER_HZ) as caller,
    ):
        assert trunk.register("gw", echo.uri("gw")) == 200  # a sipp phone "registered" as gw
        register_phone(caller, trunk, "1001")
        caller.dial(trunk.user_uri("gw"))
        caller.wait_event("CALL_ESTABLISHED")
        talk_and_hang_up(caller, 1.0)
    [route] = trunk.events("ROUTE", number="gw")
    assert (route.fields["via"], route.fields["target"]) == ("registered", echo.uri("gw"))


def test_unauthenticated_invite_gets_407(tmp_path: Path, trunk: Kamailio) -> None:
    assert trunk.register("gw", "sip:gw@127.0.0.1:5999") == 200
    assert sipp.uac(tmp_path, trunk.user_uri("gw")).run().final_status == 407


def test_respond_503_rejects_every_invite_but_still_registers(tmp_path: Path) -> None:
    with Kamailio(tmp_path, USERS, respond=503) as failing:
        assert sipp.uac(tmp_path, failing.user_uri("500")).run().final_status == 503
        assert failing.register("gw", "sip:gw@127.0.0.1:5999") == 200
        assert len(failing.events("RESPOND", code="503")) == 1


def test_silent_port_never_answers_but_receives(tmp_path: Path) -> None:
    with SilentSipPort() as silent:
        result = sipp.uac(tmp_path, f"sip:500@127.0.0.1:{silent.port}", answer_timeout_s=1).run()
        assert result.final_status is None
        received = silent.received()
    assert received and received[0].startswith(b"INVITE sip:500@")
    assert silent.uri == f"sip:127.0.0.1:{silent.port}"
