"""SIP over TLS, terminated by the Kamailio front: its ``tls.cfg`` and the trunks' certificate names.

The ``pjsua2-python`` wheel bundles OpenSSL 1.0.2k (out of support, no TLS
1.3), so the gateway's own SIP stack never speaks TLS.  The front does, with
Kamailio's tls module and the system's OpenSSL: it takes TLS from phones and
trunks on ``sip.tls_port`` and reaches trunks whose ``transport`` is "tls",
while the media engines behind it speak UDP on the internal address.

Towards a trunk the front checks the certificate's chain during the
handshake (against ``sip.tls_ca_file``), so nothing is sent to a peer whose
certificate does not verify.  Kamailio 5.6 does not match the certificate
to the host it dialled, and its hook for a new outgoing connection does not
run, so the front checks the name on every reply that comes back over TLS
from a trunk's address (``route[TLS_TRUNK]`` below, ``onreply_route`` in
:file:`front.cfg`): a reply from a certificate that does not name the trunk
is dropped and its connection closed, so no call or registration goes on.
Kamailio shows one name of each kind from a certificate: its first DNS name,
IP address and ``sip:`` URI in subjectAltName, and its common name.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from .dialplan import Trunk

from .config import SYSTEM_CA_FILE, Config
from .hostaddr import own_addresses
from .tlscert import certificate_files

TLS_PORT = 5061
"""A trunk's port when its host names none (RFC 3261, sips and transport=tls)."""


def tls_trunks(config: Config) -> list[Trunk]:
    return [trunk for trunk in config.plan.trunks.values() if trunk.transport == "tls"]


def trunk_port(trunk: Trunk) -> int:
    return trunk.port or TLS_PORT


def kamailio_tls_config(config: Config, addresses: dict[str, list[str]]) -> str:
    """Kamailio's ``tls.cfg``: our certificate as a server, the checks as a client.

    ``addresses`` maps each TLS trunk's name to the addresses its host
    resolved to; each gets a client profile that sends its name as SNI.
    """
    sip = config.sip
    if sip.tls_certificate:
        cert, key = Path(sip.tls_certificate), Path(sip.tls_private_key)
    else:
        cert, key = certificate_files(config.state_dir.resolve(), [*own_addresses(loopback=False), *filter(None, [sip.public_host])])
    verify = "yes" if sip.tls_verify else "no"
    client = [
        "method = TLSv1.2+",
        f"verify_certificate = {verify}",
        f"require_certificate = {verify}",
        f"ca_list = {Path(sip.tls_ca_file or SYSTEM_CA_FILE).resolve()}",
    ]
    lines = [
        "# Written by the gateway (gateway/siptls.py) from its [sip] tls_* settings.",
        "[server:default]",
        "method = TLSv1.2+",
        f"certificate = {cert.resolve()}",
        f"private_key = {key.resolve()}",
        "verify_certificate = no",
        "require_certificate = no",
        "",
        "[client:default]",
        *client,
    ]
    for trunk in tls_trunks(config):
        for address in addresses.get(trunk.name, []):
            lines += ["", f"[client:{address}:{trunk_port(trunk)}]", *client]
            if not _is_address(trunk.certificate_name):
                lines.append(f"server_name = {trunk.certificate_name}")
    return "\n".join(lines) + "\n"


def trunk_names_route(config: Config, addresses: dict[str, list[str]]) -> list[str]:
    """``route[TLS_TRUNK]``: for a message from a TLS trunk's address, ``$var(tls_name)`` is
    the name its certificate must carry, and the route returns 1; otherwise -1."""
    checks = []
    if config.sip.tls_verify:
        for trunk in tls_trunks(config):
            for address in addresses.get(trunk.name, []):
                checks.append(
                    f'\tif ($si == "{address}" && $sp == {trunk_port(trunk)}) '
                    f'{{ $var(tls_name) = "{trunk.certificate_name.lower()}"; return 1; }}'
                )
    return ["route[TLS_TRUNK] {", *checks, "\treturn -1;", "}"]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
