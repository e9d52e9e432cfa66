"""Routing decisions for the gateway: pure functions of the dialled string and the rules.

No I/O and no imports from ``gateway``: the gateway asks, this package
answers with a :class:`Route`, and the gateway carries it out.
"""

from .config import DialplanError, load_plan
from .identity import CallerId, Presented
from .permissions import DEFAULT_ALLOW, PERMISSIONS, Permission, User
from .plan import BUILTIN_EXTENSIONS, Dialplan
from .route import Route, Target
from .rules import InboundRule, OutboundRule, Room
from .trunks import Trunk

__all__ = [
    "BUILTIN_EXTENSIONS",
    "CallerId",
    "DEFAULT_ALLOW",
    "PERMISSIONS",
    "Dialplan",
    "DialplanError",
    "InboundRule",
    "OutboundRule",
    "Permission",
    "Presented",
    "Room",
    "Route",
    "Target",
    "Trunk",
    "User",
    "load_plan",
]
