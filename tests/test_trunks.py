"""SIP trunks against a real Kamailio: registration with digest auth, calls, failover, DIDs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.passwords import hash_password

from .audio import has_tone, read_wav
from .gatewayprocess import GatewayProcess
from .peers import sipp
from .peers.baresip import Baresip
from .peers.kamailio import Kamailio, SilentSipPort, register_phone
from .conftest import PHONE_HZ
from .webclient import WebClient

PASSWORD = "pw"
HASH = hash_password(PASSWORD)
NUMBER = "+44 20 7946 0000"
DIGITS = "442079460000"
PAGE_HZ = 700


def gateway_config(
    trunks: dict[str, str],
    route: list[str],
    *,
    password: str = "secret",
    extra: str = "",
    trunk_keys: str = "",
    alice_keys: str = "",
) -> str:
    """Users alice and bob (group sales), the given trunks (name -> host; each with ``trunk_keys``),
    one route through them; ``alice_keys`` go into alice's table."""
    blocks = "".join(
        f'[[trunks]]\nname = "{name}"\nhost = "{host}"\nusername = "gw"\npassword = "{password}"\n'
        f'register = {"true" if name == "kam" else "false"}\nexpires = 60\nnumber_format = "e164_digits"\n'
        f"{trunk_keys}\n"
        for name, host in trunks.items()
    )
    return f"""
[sip]
register_retry = 2.0
failover_timeout = 2.0

[dialplan]
country = "GB"
emergency_trunks = ["{route[-1]}"]

[groups]
sales = ["alice", "bob"]

[users.alice]
password = "{HASH}"
allow = ["national", "mobile", "international"]
{alice_keys}

[users.bob]
password = "{HASH}"

{blocks}
[[routes]]
trunks = {json.dumps(route)}

{extra}
"""


async def wait_trunk(gateway: GatewayProcess, name: str, registered: bool, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = gateway.health()["trunks"].get(name)
        if state and state["registered"] is registered:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"trunk {name} never became registered={registered}: {state}")
        await asyncio.sleep(0.2)


async def signed_in(gateway: GatewayProcess, user: str = "alice") -> WebClient:
    client = WebClient(gateway.url)
    await client.connect()
    await client.sign_in(user, PASSWORD)
    return client


async def phone_rings_and_is_heard(phone: Baresip, number_uri: str, page: WebClient) -> None:
    """The phone (registered as 1001) dials a DID; the page rings, answers and hears it."""
    phone.dial(number_uri)
    ringing = await page.next("incoming")
    assert ringing["from"].startswith("sip:1001@")
    await page.answer(ringing["call"], tone_hz=PAGE_HZ)
    await page.next("answered")
    await page.wait_tone(PHONE_HZ)


async def calls_the_phone_and_hangs_up(page: WebClient, phone: Baresip) -> None:
    """The page dials NUMBER (routed to the phone), hears the phone for two seconds and hangs up, and the
    phone's call closes: its recording then holds more than a second of the page (callers check after the first)."""
    call = await page.call(NUMBER, tone_hz=PAGE_HZ)
    await page.next("answered")
    await page.wait_tone(PHONE_HZ, seconds=2.0)
    await page.send({"type": "hangup", "call": call})
    await page.next("ended")
    await page.hang_up_media()
    await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Kamailio]:
    with Kamailio(tmp_path / "kam", {"gw": "secret", "1001": "pw1"}) as running:
        yield running


async def test_registers_then_calls_a_number_through_the_trunk(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, phone: Baresip
) -> None:
    with Kamailio(tmp_path / "kam", {"gw": "secret"}, routes={DIGITS: phone.uri}) as kam:
        gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kam.port}"}, ["kam"]))
        await wait_trunk(gateway, "kam", True)
        assert kam.registered("gw")
        alice = await signed_in(gateway)
        try:
            await alice.call(NUMBER, tone_hz=PAGE_HZ)
            await alice.next("answered")
            await alice.wait_tone(PHONE_HZ, seconds=1.5)
        finally:
            await alice.close()
        await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")
        samples, rate = read_wav(phone.recording())
        assert has_tone(samples[rate:], rate, PAGE_HZ)


async def test_wrong_credentials_are_reported_not_retried_in_a_loop(
    start_gateway: Callable[..., GatewayProcess], kamailio: Kamailio
) -> None:
    gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kamailio.port}"}, ["kam"], password="wrong"))
    state = await wait_trunk(gateway, "kam", False)
    assert state["code"] in (401, 403)
    await asyncio.sleep(3)
    assert kamailio.register_count("gw") <= 6, "REGISTER retried in a tight loop"


async def test_a_refused_registration_is_tried_again_until_the_pbx_accepts_it(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """The PBX refuses (401) until its operator adds the gateway's password; then the gateway registers, no restart."""
    with Kamailio(tmp_path / "kam", {"gw": "not-yet"}) as kam:
        gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kam.port}"}, ["kam"]))
        assert (await wait_trunk(gateway, "kam", False))["code"] in (401, 403)
        kam.rpc("htable.sets", "users", "gw", "secret")
        await wait_trunk(gateway, "kam", True, timeout=20)
        assert kam.registered("gw")


async def test_registration_recovers_after_kamailio_restarts(
    start_gateway: Callable[..., GatewayProcess], kamailio: Kamailio
) -> None:
    """A restarted registrar has forgotten the gateway; the next refresh puts it back."""
    gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kamailio.port}"}, ["kam"]).replace("expires = 60", "expires = 10"))
    await wait_trunk(gateway, "kam", True)
    kamailio.restart()
    assert not kamailio.registered("gw")
    await asyncio.to_thread(kamailio.wait_registered, "gw", 15)
    assert gateway.health()["trunks"]["kam"]["registered"]


@pytest.mark.parametrize("failure", ["503", "silence"])
async def test_a_failing_first_trunk_fails_over_to_the_second(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, failure: str
) -> None:
    with (
        sipp.echo_uas(tmp_path / "echo") as echo,
        Kamailio(tmp_path / "good", {"gw": "secret"}, routes={DIGITS: echo.uri("echo")}) as good,
        Kamailio(tmp_path / "bad", {"gw": "secret"}, respond=503) as bad,
        SilentSipPort() as silent,
    ):
        first = f"127.0.0.1:{bad.port}" if failure == "503" else f"{silent.ip}:{silent.port}"
        gateway = start_gateway(gateway_config({"first": first, "kam": f"127.0.0.1:{good.port}"}, ["first", "kam"]))
        await wait_trunk(gateway, "kam", True)
        alice = await signed_in(gateway)
        try:
            await alice.call(NUMBER, tone_hz=PAGE_HZ)
            await alice.next("answered", timeout=15)
            await alice.wait_tone(PAGE_HZ)
        finally:
            await alice.close()


OFFICE_ROUTE = '[[routes]]\nname = "office"\nextensions = ["_2XXX", "_*XX"]\ntrunks = ["kam"]\n'
ALICE_IDENTITY = 'extension = "3001"\ndisplay_name = "Alice Smith"\n'


def sip_header(message: str, name: str) -> str | None:
    """The value of header ``name`` in a SIP message as sipp logged it, or None."""
    found = re.search(rf"^{name}:[ \t]*(.*?)\r?$", message, re.M | re.I)
    return found.group(1) if found else None


async def test_office_extensions_reach_the_pbx_through_its_registered_trunk(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """A colleague's 2050 and the PBX's *97 are no phone numbers: an extension route takes them."""
    with (
        sipp.echo_uas(tmp_path / "desk") as desk,
        Kamailio(tmp_path / "kam", {"gw": "secret"}, routes={"2050": desk.uri("2050")}) as pbx,
    ):
        pbx.rpc("htable.sets", "routes", "s:*97", f"s:{desk.uri('voicemail')}")
        gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{pbx.port}"}, ["kam"], extra=OFFICE_ROUTE))
        await wait_trunk(gateway, "kam", True)
        alice = await signed_in(gateway)
        try:
            for extension in ("2050", "*97"):
                call = await alice.call(extension, tone_hz=PAGE_HZ)
                await alice.next("answered")
                await alice.wait_tone(PAGE_HZ)  # the echo behind the extension
                await alice.send({"type": "hangup", "call": call})
                await alice.next("ended")
                await alice.hang_up_media()
        finally:
            await alice.close()
    assert [event.fields["number"] for event in pbx.events("ROUTE")] == ["2050", "*97"]


@pytest.mark.parametrize(
    ("registered", "trunk_keys", "sent_from", "asserted"),
    [
        (True, 'caller_id = "user"\n', "<?sip:gw@", True),
        (False, 'caller_id = "user"\nidentity_header = "from"\n', '"Alice Smith" <sip:3001@', False),
        (False, 'caller_id = "user"\nidentity_header = "both"\n', '"Alice Smith" <sip:3001@', True),
        (False, "", "<?sip:gw@", False),
    ],
    ids=["registered-pai", "from", "both", "trunk"],
)
async def test_calls_through_a_trunk_say_which_user_calls(
    start_gateway: Callable[..., GatewayProcess],
    tmp_path: Path,
    registered: bool,
    trunk_keys: str,
    sent_from: str,
    asserted: bool,
) -> None:
    """Through a registered trunk From stays the trunk's account and P-Asserted-Identity names the user;
    a trunk peered by address may have the user in From as well; caller_id = "trunk" names nobody."""
    with sipp.echo_uas(tmp_path / "pbx") as phone, contextlib.ExitStack() as stack:
        name, host = "pbx", f"127.0.0.1:{phone.port}"
        if registered:
            kam = stack.enter_context(Kamailio(tmp_path / "kam", {"gw": "secret"}, routes={DIGITS: phone.uri()}))
            name, host = "kam", f"127.0.0.1:{kam.port}"
        gateway = start_gateway(gateway_config({name: host}, [name], trunk_keys=trunk_keys, alice_keys=ALICE_IDENTITY))
        if registered:
            await wait_trunk(gateway, "kam", True)
        alice = await signed_in(gateway)
        try:
            call = await alice.call(NUMBER)
            await alice.next("answered")
            await alice.send({"type": "hangup", "call": call})
            await alice.next("ended")
        finally:
            await alice.close()
    [invite] = sipp.received(phone, "INVITE")
    assert re.match(sent_from, sip_header(invite, "From") or ""), invite
    pai = sip_header(invite, "P-Asserted-Identity")
    if asserted:
        assert pai is not None and re.fullmatch(r'"Alice Smith" <sip:3001@127\.0\.0\.1:\d+>', pai), invite
    else:
        assert pai is None, invite


async def test_inbound_did_rings_a_user_and_a_group_rings_everyone(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, phone: Baresip
) -> None:
    inbound = '[[inbound]]\ndid = "+442079460000"\nuser = "alice"\n\n[[inbound]]\ndid = "+442079460001"\ngroup = "sales"\n'
    routes: dict[str, str] = {}
    with Kamailio(tmp_path / "kam", {"gw": "secret", "1001": "pw1"}, routes=routes) as kam:
        gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kam.port}"}, ["kam"], extra=inbound))
        for did in (DIGITS, "442079460001"):
            kam.rpc("htable.sets", "routes", f"s:{did}", f"s:sip:{did}@{gateway.sip_address}")
        await wait_trunk(gateway, "kam", True)
        alice, bob = await signed_in(gateway, "alice"), await signed_in(gateway, "bob")
        try:
            register_phone(phone, kam, "1001")
            await phone_rings_and_is_heard(phone, kam.user_uri(DIGITS), alice)
            phone.hangup()
            await alice.next("ended")
            await asyncio.to_thread(phone.wait_event, "CALL_CLOSED")
            phone.dial(kam.user_uri("442079460001"))
            calls = {(await alice.next("incoming"))["call"], (await bob.next("incoming"))["call"]}
            assert len(calls) == 1
        finally:
            await alice.close()
            await bob.close()


async def test_behind_the_front_the_trunk_sees_one_address_both_ways(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, phone: Baresip
) -> None:
    """With workers, the registration's Contact is the front's, calls leave through it,
    and the trunk's calls coming back through it are still known as the trunk's."""
    inbound = '[[inbound]]\ndid = "+442079460001"\nuser = "alice"\n\n[engines]\nworkers = 2\n'
    with Kamailio(tmp_path / "kam", {"gw": "secret", "1001": "pw1"}, routes={DIGITS: phone.uri}) as kam:
        gateway = start_gateway(gateway_config({"kam": f"127.0.0.1:{kam.port}"}, ["kam"], extra=inbound))
        kam.rpc("htable.sets", "routes", "s:442079460001", f"s:sip:442079460001@{gateway.sip_address}")
        await wait_trunk(gateway, "kam", True)
        assert [contact.uri.split("@", 1)[1].split(";")[0] for contact in kam.contacts("gw")] == [gateway.sip_address]
        alice = await signed_in(gateway)
        try:
            await calls_the_phone_and_hangs_up(alice, phone)
            register_phone(phone, kam, "1001")
            await phone_rings_and_is_heard(phone, kam.user_uri("442079460001"), alice)
        finally:
            await alice.close()


async def test_behind_the_front_forged_in_dialog_invites_reach_no_trunk(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """Toll fraud through the front: an outsider's INVITE with a To-tag, sent on to the carrier by a
    Route it wrote itself, or by its Request-URI behind the front's own Route, is refused; the
    carrier, which a real call through the same front reaches, receives nothing more."""
    with sipp.echo_uas(tmp_path / "carrier") as carrier:
        config = gateway_config({"carrier": f"127.0.0.1:{carrier.port}"}, ["carrier"], extra="[engines]\nworkers = 2\n")
        gateway = start_gateway(config)
        alice = await signed_in(gateway)
        try:
            call = await alice.call(NUMBER, tone_hz=PAGE_HZ)
            await alice.next("answered")
            await alice.send({"type": "hangup", "call": call})
            await alice.next("ended")
        finally:
            await alice.close()
        number, front = carrier.uri(DIGITS), gateway.sip_address
        routes = {
            "a Route to the carrier": f"<sip:{carrier.ip}:{carrier.port};lr>",
            "the front's Route": f"<sip:{front};lr>",
            "the front's Route with a made-up dialog id": f"<sip:{front};lr;ftag=forged;did=a1.b2>",
        }
        for name, route in routes.items():
            headers = {"To": f"<{number}>;tag=forged", "Route": route}
            status = await asyncio.to_thread(sipp.send_request, number, method="INVITE", headers=headers, proxy=front)
            assert status is not None and status >= 400, f"{name}: {status}"
    received = sipp.received(carrier, "INVITE")
    assert len(received) == 1 and "tag=forged" not in received[0], received
