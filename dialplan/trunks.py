"""SIP trunks: where calls to phone numbers leave, and how each wants the number written."""

from __future__ import annotations

import dataclasses
from typing import Literal

from phonenumbers import PhoneNumber

from . import numbers
from .identity import CallerId, CallerIdPolicy, IdentityHeader, Presented
from .numbers import NumberFormat

Transport = Literal["udp", "tcp", "tls"]
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")
Srtp = Literal["off", "optional", "mandatory"]
SRTP_MODES: tuple[Srtp, ...] = ("off", "optional", "mandatory")


@dataclasses.dataclass(frozen=True)
class Trunk:
    """One carrier or PBX the gateway sends INVITEs (and, with ``register``, REGISTERs) to.

    ``username``/``password`` are digest credentials for the gateway; the
    dialplan only carries them. Rewriting happens in the order of the fields:
    write in ``number_format``, drop ``strip_prefix``, prepend ``add_prefix``,
    then ``tech_prefix`` (a carrier's account code such as ``1234#``).
    ``caller_id`` and ``identity_header`` say who its calls are from
    (:mod:`dialplan.identity`).

    ``tls_name`` is the name the trunk's TLS certificate must carry (default:
    the host without its port); ``srtp`` whether its calls' media is SRTP
    (SDES): never, when the far end agrees, or always.
    """

    name: str
    host: str
    transport: Transport = "udp"
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    register: bool = False
    expires: int = 300
    number_format: NumberFormat = "e164"
    international_prefix: str = "00"
    strip_prefix: str = ""
    add_prefix: str = ""
    tech_prefix: str = ""
    caller_id: CallerIdPolicy = "trunk"
    identity_header: IdentityHeader = "pai"
    tls_name: str = ""
    srtp: Srtp = "off"
    register_users: bool = False
    """REGISTER each signed-in web user who has a PBX secret as their own extension (the gateway's part)."""

    @property
    def hostname(self) -> str:
        """The host without its port (an IPv6 address without its brackets)."""
        return self._host_port()[0]

    @property
    def port(self) -> int | None:
        """The port ``host`` names, if any."""
        return self._host_port()[1]

    def _host_port(self) -> tuple[str, int | None]:
        if self.host.count(":") == 1 or "]:" in self.host:
            name, port = self.host.rsplit(":", 1)
            return name.strip("[]"), int(port)
        return self.host.strip("[]"), None

    @property
    def certificate_name(self) -> str:
        """What the trunk's TLS certificate must name."""
        return self.tls_name or self.hostname

    def dial_string(self, number: PhoneNumber, country: str) -> str:
        """``number`` as this trunk wants it in the Request-URI, for a gateway in ``country``."""
        text = numbers.written(number, self.number_format, country, self.international_prefix)
        if self.strip_prefix and text.startswith(self.strip_prefix):
            text = text[len(self.strip_prefix) :]
        return self.tech_prefix + self.add_prefix + text

    def presents(self, caller: CallerId) -> Presented:
        """The identities a call by ``caller`` carries through this trunk."""
        if self.caller_id == "trunk":
            return Presented()
        header = self.identity_header
        return Presented(caller if header in ("from", "both") else None, caller if header in ("pai", "both") else None)
