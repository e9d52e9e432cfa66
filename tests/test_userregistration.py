"""Each signed-in web user as their own phone at a PBX (a Kamailio registrar with digest auth)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import ConfigError, load, worker_count

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
    alice's page closes the PBX no longer has her."""
    with Kamailio(tmp_path / "pbx", PBX_USERS) as pbx:
        gateway = start_gateway(pbx_config(f"127.0.0.1:{pbx.port}", bob_secret="wrong"))
        assert not pbx.events("REGISTER"), "nobody is signed in yet"
        alice, bob = await signed_in(gateway, "alice"), await signed_in(gateway, "bob")
        try:
            [contact] = await asyncio.to_thread(pbx.wait_registered, "201", 10)
            assert contact.uri.split(";")[0] == f"sip:201@{gateway.sip_address}"
            await asyncio.to_thread(wait_for, lambda: len(refusals(pbx)) >= 2, 10, "bob's REGISTER was not tried again")
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
        await bob.close()
        await asyncio.to_thread(wait_for, lambda: not pbx.registered("202"), 10, "bob's registration never went")


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


def test_register_users_runs_the_front_even_for_one_engine(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(pbx_config("192.0.2.10"))
    assert worker_count(load(path), cores=2) == 1
