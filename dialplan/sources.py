"""Who may ring the gateway's web users over SIP, besides its trunks.

On the internet anybody can send an INVITE.  With ``anyone`` (the try-it
default of open sign-in) every source may ring a user or a built-in
extension; with ``trunks`` (the default once ``[users]`` are configured)
only the trunks, the gateway itself and the networks listed in
``trusted_sources`` (a PBX or desk phones peered by address) may.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Literal

InboundFrom = Literal["anyone", "trunks"]
INBOUND_FROM: tuple[InboundFrom, ...] = ("anyone", "trunks")


class InboundSources:
    """Decides whether an INVITE from an address that is no trunk may ring anyone."""

    def __init__(self, inbound_from: InboundFrom = "anyone", trusted: Sequence[str] = ()) -> None:
        self.inbound_from = inbound_from
        self._trusted = tuple(ipaddress.ip_network(network, strict=False) for network in trusted)

    def admits(self, source: str) -> bool:
        """``source`` is ``ip:port`` (``[v6]:port``) or a bare address; anything unreadable is refused."""
        return self.inbound_from == "anyone" or self.trusts(source)

    def trusts(self, source: str) -> bool:
        """Whether ``source`` is in ``trusted_sources``, whoever may ring users (a REFER needs that)."""
        host = source.rsplit(":", 1)[0] if source.count(":") == 1 or source.startswith("[") else source
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in self._trusted)


def network_problem(text: str) -> str | None:
    """Why ``text`` is not an address or network (``192.0.2.0/24``), or None."""
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        return str(exc)
    return None
