"""Each signed-in web user as their own phone at a PBX (a Kamailio registrar with digest auth)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load, worker_count
from gateway.userregistration import UserRegistrations

from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.kamailio import Kamailio, register_phone
from .test_trunks import HASH, phone_rings_and_is_heard, signed_in

PBX_USERS = {"201": "alice-secret", "202": "bob-secret", "1001": "pw1"}


def pbx_config(pbx: str, bob_secret: str = "bob-secret") -> str:
    """alice (201) and bob (202) register at the PBX while signed in; carol has no PBX secret."""
    return f"""
[sip]
register_retry = 0.5

[dialplan]
country = "GB"

[users.alice]
password = "{HASH}"
extension = "201"
sip_password = "alice-secret"

[users.bob]
password = "{HASH}"
extension = "202"
sip_password = "{bob_secret}"

[users.carol]
password = "{HASH}"

[[trunks]]
name = "pbx"
host = "{pbx}"
register_users = true
expires = 60
"""


def refusals(pbx: Kamailio) -> list[object]:
    """bob's REGISTERs the PBX refused (a wrong secret)."""
    return list(pbx.events("AUTH-FAILED", user="202"))


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.1)
    return result


async def test_a_signed_in_user_is_a_phone_at_the_pbx_until_they_sign_out(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, phone: Baresip
) -> None:
    """alice's page makes her extension reachable at the PBX with the gateway's Contact; the PBX's call to
    201 rings her page; bob's wrong secret is retried later, with back-off, and holds up nobody; once
    alice's page closes the PBX no longer has her, nor bob once the gateway stops."""
    with Kamailio(tmp_path / "pbx", PBX_USERS) as pbx:
        gateway = start_gateway(pbx_config(f"127.0.0.1:{pbx.port}", bob_secret="wrong"))
        assert not pbx.events("REGISTER"), "nobody is signed in yet"
        alice, bob = await signed_in(gateway, "alice"), await signed_in(gateway, "bob")
        try:
            [contact] = await asyncio.to_thread(pbx.wait_registered, "201", 10)
            assert contact.uri.split(";")[0] == f"sip:201@{gateway.sip_address}"
            await asyncio.to_thread(wait_for, lambda: len(refusals(pbx)) >= 2, 10, "bob's REGISTER was not tried again")
            await asyncio.to_thread(
                wait_for, lambda: gateway.health()["registrations"]["alice"]["registered"], 5, "/health never showed alice"
            )
            shown = gateway.health()["registrations"]
            assert shown["alice"] == {"extension": "201", "registered": True, "failures": 0}
            assert not shown["bob"]["registered"] and shown["bob"]["failures"] >= 1
            pbx.rpc("htable.sets", "users", "s:202", "wrong")  # the PBX's operator takes bob's secret
            register_phone(phone, pbx, "1001")
            await phone_rings_and_is_heard(phone, pbx.user_uri("201"), alice)
            phone.hangup()
            await alice.next("ended")
            await asyncio.to_thread(pbx.wait_registered, "202", 20)
            assert len(refusals(pbx)) <= 5, "a refused REGISTER is tried again and again"
        finally:
            await alice.close()
        await asyncio.to_thread(wait_for, lambda: not pbx.registered("201"), 10, "alice's registration never went")
        assert pbx.events("REGISTERED", user="201", expires="0"), "no REGISTER with Expires: 0"
        assert pbx.registered("202"), "bob is still signed in"
        assert gateway.front_rpc("uac.reg_dump")[0]["l_uuid"] == "202"
        assert await asyncio.to_thread(gateway.stop) == 0
        assert not pbx.registered("202"), "a stopping gateway leaves bob registered"
        await bob.close()


async def test_more_users_than_pjsua_has_accounts_register_at_once(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    """pjsua2 aborts on a ninth account; the front's registrations have no such limit."""
    extensions = [str(number) for number in range(211, 223)]
    users = "".join(
        f'[users.u{number}]\npassword = "{HASH}"\nextension = "{number}"\nsip_password = "pw{number}"\n\n'
        for number in extensions
    )
    with Kamailio(tmp_path / "pbx", {number: f"pw{number}" for number in extensions}) as pbx:
        config = f'[dialplan]\ncountry = "GB"\n\n{users}[[trunks]]\nname = "pbx"\nhost = "127.0.0.1:{pbx.port}"\nregister_users = true\n'
        gateway = start_gateway(config)
        pages = [await signed_in(gateway, f"u{number}") for number in extensions]
        try:
            for number in extensions:
                await asyncio.to_thread(pbx.wait_registered, number, 15)
        finally:
            for page in pages:
                await page.close()
        await asyncio.to_thread(
            wait_for, lambda: not any(pbx.registered(number) for number in extensions), 15, "registrations stayed"
        )


@pytest.mark.parametrize(
    ("users", "trunks", "says"),
    [
        ('[users.alice]\npassword = "H"\nextension = "201"\nsip_password = "s"\n', "", "needs a trunk with register_users"),
        ('[users.alice]\npassword = "H"\nsip_password = "s"\n', "register_users = true\n", "needs users.alice.extension"),
        ('[users.alice]\npassword = "H"\nextension = "201"\n', "register_users = true\n", "no user has a sip_password"),
        ('[users.alice]\npassword = "H"\nextension = "201"\nsip_password = "."\n', "register_users = true\n", "1-64 printable"),
    ],
)
def test_register_users_and_sip_passwords_go_together(tmp_path: Path, users: str, trunks: str, says: str) -> None:
    path = tmp_path / "gateway.toml"
    trunk = f'[[trunks]]\nname = "pbx"\nhost = "192.0.2.10"\n{trunks}'
    path.write_text(f'[dialplan]\ncountry = "GB"\n\n{users.replace("H", HASH)}\n{trunk}')
    with pytest.raises(ConfigError, match=says):
        load(path)


class FakeFront:
    """The front's JSON-RPC as UserRegistrations uses it: the calls made, records kept, flags given."""

    def __init__(self, flags: int = 0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.records: set[str] = set()
        self.flags = flags

    async def rpc(self, method: str, *params: Any) -> Any:
        self.calls.append((method, *params))
        if method == "uac.reg_add":
            if params[0] in self.records:
                raise OSError("uac.reg_add: uuid already exists")
            self.records.add(params[0])
        if method == "uac.reg_remove":
            self.records.discard(params[0])
        return {"flags": self.flags} if method == "uac.reg_info" else None


async def test_a_leftover_record_is_replaced_and_a_refused_one_is_not_unregistered(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(pbx_config("192.0.2.10:5060"))
    front = FakeFront(flags=1)  # uac_reg's "disabled": the PBX refused the last REGISTER
    front.records.add("201")
    registrations = UserRegistrations(load(path), front.rpc, "198.51.100.1:5060")
    registrations.signed_in("alice")
    registrations.signed_in("carol")  # no sip_password: not registered
    registrations.signed_out("alice")
    await registrations.close()
    record = ("201", "alice", "198.51.100.1", "201", "192.0.2.10:5060", "", "201", "alice-secret", ".",
              "sip:192.0.2.10:5060;transport=udp", 60, 0, 0, ".", "198.51.100.1:5060")
    assert front.calls == [
        ("uac.reg_add", *record), ("uac.reg_remove", "201"), ("uac.reg_add", *record),
        ("uac.reg_info", "l_uuid", "201"), ("uac.reg_remove", "201"),
    ]


def test_register_users_runs_the_front_even_for_one_engine(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(pbx_config("192.0.2.10"))
    assert worker_count(load(path), cores=2) == 1
