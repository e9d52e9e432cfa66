"""A call as operators' systems see it: the JSON the REST API answers with and webhooks carry.

One shape in both places (it is ``Call`` in ``openapi.json``), so a CRM can
treat a webhook's ``call`` and a ``GET /api/v1/calls/{id}`` alike.
"""

from __future__ import annotations

import datetime
from typing import Any

from .controlcall import ControlCall


def describe(call: ControlCall) -> dict[str, Any]:
    end = call.end
    return {
        "id": call.call_id,
        "direction": call.direction,
        "state": call.state.value,
        "user": call.user or None,
        "from": call.caller,
        "to": call.callee,
        "operator": call.operator or None,
        "created_at": iso_time(call.created),
        "answered_at": iso_time(call.answered),
        "answered_by": answered_by(call),
        "ended_at": iso_time(call.ended),
        "end": None if end is None else {"cause": end.cause, "code": end.code, "reason": end.reason},
    }


def answered_by(call: ControlCall) -> str | None:
    """Who took the call: ``page`` (a web user), ``voicemail``, ``extension`` (a built-in one answered a SIP
    call), ``far_end`` (the party a page or click-to-call dialled); None until it is answered."""
    if call.answered is None:
        return None
    if call.direction != "inbound":
        return "far_end"
    if call.entry:
        return "voicemail"
    return "page" if call.owner is not None else "extension"


def iso_time(moment: float | None) -> str | None:
    """ISO 8601 in UTC, to the millisecond."""
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
