"""SIP over TLS through the Kamailio front, against a real Kamailio PBX speaking TLS.

The PBX (tests/peers/kamailio.py with TLS) holds a certificate from a test CA
that the gateway trusts (``sip.tls_ca_file``); the gateway presents one from
the same CA, which the PBX checks when it calls the gateway over TLS.  A
baresip phone behind the PBX (plain UDP) answers and plays its tone.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import siptls
from gateway.config import ConfigError, load, worker_count

from .audio import has_tone, read_wav, tone, write_wav
from .conftest import PHONE_HZ
from .certificates import CertificateAuthority, Issued
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .peers.kamailio import Kamailio, TlsFiles, register_phone
from .test_trunks import (
    DIGITS, NUMBER, PAGE_HZ, calls_the_phone_and_hangs_up, gateway_config, phone_rings_and_is_heard, signed_in, wait_trunk,
)

PBX_NAME = "pbx.test"
INBOUND_DID = "442079460001"
PLAIN_NUMBER, PLAIN_DIGITS = "+44 20 7946 0002", "442079460002"
USERS = {"gw": "secret", "1001": "pw1", "1002": "pw2"}


def tls_gateway_config(pbx: Kamailio, ca: CertificateAuthority, gateway: Issued | None, extra: str = "") -> str:
    """The trunk tests' users and route, through one trunk "pbx" reached over TLS that registers."""
    config = gateway_config({"pbx": pbx.tls_address}, ["pbx"], extra=extra)
    config = config.replace('name = "pbx"\n', f'name = "pbx"\ntransport = "tls"\ntls_name = "{PBX_NAME}"\n')
    config = config.replace('register = false', 'register = true')
    files = f'tls_certificate = "{gateway.cert}"\ntls_private_key = "{gateway.key}"\n' if gateway else ""
    return config.replace("[sip]\n", f'[sip]\ntls_port = 0\ntls_ca_file = "{ca.path}"\n{files}')


def tls_source(pbx: Kamailio, method: str) -> bool:
    """Whether the PBX got ``method`` over TLS."""
    return any(event.fields["src"].startswith("tls:") for event in pbx.events("REQUEST", method=method))


def front_log(gateway: GatewayProcess) -> str:
    return (gateway.workdir / "state" / "front" / "kamailio.log").read_text(errors="replace")


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path / "ca", "test CA")


async def test_a_tls_trunk_registers_carries_calls_both_ways_and_rings_web_users(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, ca: CertificateAuthority, phone: Baresip
) -> None:
    pbx_files = ca.issue("pbx", [PBX_NAME, "127.0.0.1"])
    gateway_files = ca.issue("gateway", ["gateway.test", "127.0.0.1"])
    inbound = f'[[inbound]]\ndid = "+{INBOUND_DID}"\nuser = "alice"\n'
    tls = TlsFiles(pbx_files.cert, pbx_files.key, ca.path)
    with Kamailio(tmp_path / "pbx", {"gw": "secret", "1001": "pw1"}, routes={DIGITS: phone.uri}, tls=tls) as pbx:
        gateway = start_gateway(tls_gateway_config(pbx, ca, gateway_files, extra=inbound))
        tls_address = gateway.tls_address
        await wait_trunk(gateway, "pbx", True)
        [contact] = pbx.contacts("gw")
        assert f"@{tls_address};transport=tls" in contact.uri, contact.uri
        assert tls_source(pbx, "REGISTER")

        alice = await signed_in(gateway)
        try:
            await calls_the_phone_and_hangs_up(alice, phone)
            samples, rate = read_wav(phone.recording())
            assert has_tone(samples[rate:], rate, PAGE_HZ)
            assert tls_source(pbx, "INVITE")

            # The PBX rings alice over TLS, checking the gateway's certificate against the same CA.
            pbx.rpc("htable.sets", "routes", f"s:{INBOUND_DID}", f"s:sip:{INBOUND_DID}@{tls_address};transport=tls")
            register_phone(phone, pbx, "1001")
            await phone_rings_and_is_heard(phone, pbx.user_uri(INBOUND_DID), alice)
        finally:
            await alice.close()
    assert "is not pbx.test" not in front_log(gateway)


async def test_an_srtp_trunk_carries_sdes_srtp_both_ways_and_refuses_plain_rtp(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, ca: CertificateAuthority
) -> None:
    """``srtp = "mandatory"``: the keys go over TLS, a phone that requires SRTP is heard both ways (called
    and calling), and a phone without SRTP neither gets nor makes a call (488)."""
    wav = tmp_path / "phone-tone.wav"
    write_wav(wav, tone(PHONE_HZ, 60, 8000), 8000)
    pbx_files = ca.issue("pbx", [PBX_NAME, "127.0.0.1"])
    gateway_files = ca.issue("gateway", ["gateway.test", "127.0.0.1"])
    inbound = f'[[inbound]]\ndid = "+{INBOUND_DID}"\nuser = "alice"\n'
    tls = TlsFiles(pbx_files.cert, pbx_files.key, ca.path)
    with (
        Baresip(tmp_path, wav, user="secure", mediaenc="srtp-mand") as secure,
        Baresip(tmp_path, wav, user="plain") as plain,
        Kamailio(tmp_path / "pbx", USERS, routes={DIGITS: secure.uri, PLAIN_DIGITS: plain.uri}, tls=tls) as pbx,
    ):
        config = tls_gateway_config(pbx, ca, gateway_files, extra=inbound).replace('transport = "tls"\n', 'transport = "tls"\nsrtp = "mandatory"\n')
        gateway = start_gateway(config)
        await wait_trunk(gateway, "pbx", True)
        assert "media is carried in Python" in gateway.log()
        alice = await signed_in(gateway)
        try:
            await calls_the_phone_and_hangs_up(alice, secure)
            samples, rate = read_wav(secure.recording())
            assert has_tone(samples[rate:], rate, PAGE_HZ)
            assert "RTP/SAVP" in secure.log_path.read_text(errors="replace")

            await alice.call(PLAIN_NUMBER, tone_hz=PAGE_HZ)
            ended = await alice.next("ended", timeout=15)
            assert ended["code"] == 488, ended
            await alice.hang_up_media()
            await asyncio.to_thread(plain.wait_event, "CALL_CLOSED")  # it refused the call

            pbx.rpc("htable.sets", "routes", f"s:{INBOUND_DID}", f"s:sip:{INBOUND_DID}@{gateway.tls_address};transport=tls")
            register_phone(secure, pbx, "1001")
            await phone_rings_and_is_heard(secure, pbx.user_uri(INBOUND_DID), alice)
            secure.hangup()
            await alice.next("ended")

            register_phone(plain, pbx, "1002")
            plain.dial(pbx.user_uri(INBOUND_DID))
            closed = await asyncio.to_thread(plain.wait_event, "CALL_CLOSED")
            assert closed["param"].startswith("488"), closed
        finally:
            await alice.close()


@pytest.mark.parametrize("certificate", ["untrusted", "naming another host"])
async def test_a_trunk_whose_certificate_does_not_verify_is_refused(
    start_gateway: Callable[..., GatewayProcess], tmp_path: Path, ca: CertificateAuthority, certificate: str
) -> None:
    """The call fails with 503 and a reason that says why; the registration is reported failed; the gateway goes on."""
    if certificate == "untrusted":
        pbx_files = CertificateAuthority(tmp_path / "rogue", "rogue CA").issue("pbx", [PBX_NAME, "127.0.0.1"])
    else:
        pbx_files = ca.issue("pbx", ["elsewhere.test", "127.0.0.1"])
    tls = TlsFiles(pbx_files.cert, pbx_files.key, ca.path)
    with Kamailio(tmp_path / "pbx", {"gw": "secret"}, tls=tls) as pbx:
        gateway = start_gateway(tls_gateway_config(pbx, ca, None))
        state = await wait_trunk(gateway, "pbx", False, timeout=15)
        assert state["code"] == 503, state
        alice = await signed_in(gateway)
        try:
            await alice.call(NUMBER, tone_hz=PAGE_HZ)
            ended = await alice.next("ended", timeout=15)
            assert (ended["cause"], ended["code"], ended["reason"]) == ("failed", 503, "No verified TLS connection to the trunk")
            await alice.hang_up_media()
            await alice.call("600", tone_hz=PAGE_HZ)
            await alice.next("answered")
        finally:
            await alice.close()
        if certificate == "untrusted":
            assert "certificate verify failed" in front_log(gateway)
            assert not pbx.events("REQUEST", method="INVITE"), "an INVITE reached a peer whose certificate did not verify"
        else:
            assert "is not pbx.test" in front_log(gateway)


async def test_the_tls_listener_presents_the_gateways_own_certificate_by_default(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    """The self-signed certificate of the state directory, over TLS 1.3 (the system's OpenSSL, not pjsua2's)."""
    gateway = start_gateway("[sip]\ntls = true\ntls_port = 0\n")
    host, port = gateway.tls_address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=gateway.workdir / "state" / "tls" / "cert.pem")

    def options() -> tuple[str, bytes]:
        with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw, server_hostname=host) as tls:
            local = "{}:{}".format(*tls.getsockname())
            tls.sendall(
                f"OPTIONS sip:{gateway.tls_address};transport=tls SIP/2.0\r\n"
                f"Via: SIP/2.0/TLS {local};branch=z9hG4bK-tls-probe;rport\r\nMax-Forwards: 70\r\n"
                f"From: <sip:probe@{local}>;tag=probe\r\nTo: <sip:{gateway.tls_address}>\r\n"
                f"Call-ID: tls-probe@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n".encode()
            )
            return str(tls.version()), tls.recv(65535)

    version, reply = await asyncio.to_thread(options)
    assert version == "TLSv1.3"
    assert reply.startswith(b"SIP/2.0 200 ")


def test_tls_settings_are_checked_and_tls_runs_the_front(tmp_path: Path, ca: CertificateAuthority) -> None:
    path = tmp_path / "gateway.toml"
    trunk = '[dialplan]\ncountry = "GB"\n[[trunks]]\nname = "pbx"\nhost = "pbx.example.org"\ntransport = "tls"\n'
    path.write_text(trunk)
    assert worker_count(load(path), 2) == 1
    files = ca.issue("gateway", ["gateway.test"])
    path.write_text(f'[sip]\ntls = true\ntls_certificate = "{files.cert.name}"\ntls_private_key = "{files.key.name}"\n')
    (tmp_path / files.cert.name).write_bytes(files.cert.read_bytes())
    (tmp_path / files.key.name).write_bytes(files.key.read_bytes())
    assert load(path).sip.tls_certificate == str(tmp_path / files.cert.name)
    path.write_text(f'[sip]\ntls = true\ntls_certificate = "{files.cert}"\n')
    with pytest.raises(ConfigError, match="tls_certificate and sip.tls_private_key go together"):
        load(path)
    path.write_text(trunk + '[sip]\ntls_ca_file = "missing.pem"\n')
    with pytest.raises(ConfigError, match="sip.tls_ca_file: no such file"):
        load(path)


@pytest.mark.parametrize("verify", [True, False])
def test_the_fronts_tls_checks_follow_tls_verify(tmp_path: Path, verify: bool) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f'state_dir = "state"\n[sip]\ntls_verify = {str(verify).lower()}\n[dialplan]\ncountry = "GB"\n'
        '[[trunks]]\nname = "pbx"\nhost = "192.0.2.7"\ntransport = "tls"\ntls_name = "PBX.example.org"\n'
    )
    config = load(path)
    tls_cfg = siptls.kamailio_tls_config(config, {"pbx": ["192.0.2.7"]})
    route = "\n".join(siptls.trunk_names_route(config, {"pbx": ["192.0.2.7"]}))
    assert f"[client:192.0.2.7:5061]\nmethod = TLSv1.2+\nverify_certificate = {'yes' if verify else 'no'}" in tls_cfg
    assert "server_name = PBX.example.org" in tls_cfg
    assert f"certificate = {tmp_path / 'state' / 'tls' / 'cert.pem'}" in tls_cfg
    assert ('$var(tls_name) = "pbx.example.org"' in route) is verify
