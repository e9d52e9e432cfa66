"""Routing decisions for the gateway: pure functions of the dialled string and the rules.

No I/O and no imports from ``gateway``: the gateway asks, this package
answers with a :class:`Route`, and the gateway carries it out.
"""

from .route import Route
from .plan import BUILTIN_EXTENSIONS, Dialplan

__all__ = ["BUILTIN_EXTENSIONS", "Dialplan", "Route"]
