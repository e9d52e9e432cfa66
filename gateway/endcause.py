"""Why calls end: one table from SIP status to a cause word and a sentence.

The page words each ``cause`` itself (``web/js/causes.js``) and shows
``reason`` where only the gateway knows what went wrong (a network or engine
failure); the codes follow RFC 3261.  Keeping the table here means no other module invents its
own wording.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class EndCause:
    cause: str
    code: int
    reason: str


_BY_CODE: dict[int, tuple[str, str]] = {
    200: ("normal", "Call ended"),
    403: ("rejected", "Forbidden"),
    404: ("not_found", "Number not found"),
    408: ("no_answer", "No answer"),
    410: ("not_found", "Number no longer in service"),
    480: ("unavailable", "Not available"),
    484: ("not_found", "Incomplete number"),
    486: ("busy", "Busy"),
    487: ("cancelled", "Call cancelled"),
    488: ("failed", "No common audio codec"),
    500: ("failed", "Far end error"),
    502: ("network_error", "Bad gateway"),
    503: ("busy", "Service unavailable"),
    600: ("busy", "Busy everywhere"),
    603: ("declined", "Declined"),
    604: ("not_found", "Number does not exist anywhere"),
}

NORMAL = EndCause("normal", 200, "Call ended")
CANCELLED = EndCause("cancelled", 487, "Call cancelled")
DECLINED = EndCause("declined", 603, "Declined")
NO_ANSWER = EndCause("no_answer", 480, "No Answer")
UNAVAILABLE = EndCause("unavailable", 480, "Not available: nobody is signed in as this user")
BUSY_HERE = EndCause("busy", 486, "Busy Here: already in two calls")
NO_FREE_LINE = EndCause("busy", 503, "All lines of this gateway are busy")
ANSWERED_ELSEWHERE = EndCause("answered_elsewhere", 200, "Answered on another device")
TRANSFERRED = EndCause("transferred", 200, "Transferred")
"""The page transferred the call and its far end has the new party."""
MEDIA_TIMEOUT = EndCause("network_error", 408, "The phone stopped sending audio")
NOT_RESPONDING = EndCause("not_responding", 408, "Not responding")
"""Nothing at all came back for the INVITE (not even 100 Trying): nothing ever rang."""
BROWSER_GONE = EndCause("network_error", 0, "The browser connection was lost")
ICE_FAILED = EndCause("network_error", 0, "Could not connect audio to the browser")
SHUTDOWN = EndCause("failed", 503, "The gateway is shutting down")
TRUNK_TLS_FAILED = EndCause("failed", 503, "No verified TLS connection to the trunk")
"""The front's 503 when a TLS trunk's certificate did not verify or name it (gateway/front.cfg)."""


def from_sip(code: int, reason: str = "") -> EndCause:
    """The cause of a call the SIP side ended with ``code`` (and its reason phrase)."""
    if code == 480 and "answer" in reason.lower():
        cause, text = "no_answer", "No answer"  # a ring timeout (Q.850 cause 19 maps to 480)
    elif code == 408 and reason.lower() == NOT_RESPONDING.reason.lower():
        cause, text = NOT_RESPONDING.cause, NOT_RESPONDING.reason  # the SIP front's word for a silent target
    elif code == TRUNK_TLS_FAILED.code and reason.lower() == TRUNK_TLS_FAILED.reason.lower():
        return TRUNK_TLS_FAILED
    elif code in _BY_CODE:
        cause, text = _BY_CODE[code]
    elif 300 <= code < 700:
        cause, text = "failed", reason or "Call failed"
    else:
        cause, text = "network_error", "No response from the far end"
        code = 0 if code < 100 else code
    return EndCause(cause, code, text)
