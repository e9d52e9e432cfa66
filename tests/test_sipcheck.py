"""sipcheck: which INVITEs get 400 before anything acts on them (RFC 4475 section 3.1.2)."""

from __future__ import annotations

import pytest

from gateway.sipcheck import invite_problem

SDP = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
HEADERS = {
    "Via": "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
    "Max-Forwards": "70",
    "From": '"Ann" <sip:ann@192.0.2.1>;tag=1',
    "To": "<sip:601@192.0.2.9>",
    "Call-ID": "c1@192.0.2.1",
    "CSeq": "1 INVITE",
    "Content-Type": "application/sdp",
    "Content-Length": str(len(SDP)),
}


def invite(request_line: str = "INVITE sip:601@192.0.2.9 SIP/2.0", body: str = SDP, **changes: str | None) -> str:
    headers = {**HEADERS, **{name.replace("_", "-"): value for name, value in changes.items()}}
    lines = [f"{name}: {value}" for name, value in headers.items() if value is not None]
    return "\r\n".join([request_line, *lines]) + "\r\n\r\n" + body


@pytest.mark.parametrize(
    "message",
    [
        invite(),
        invite(From="Ann Smith <sip:ann@192.0.2.1>;tag=1"),
        invite(From='"Smith, Ann" <sip:ann@192.0.2.1>;tag=1'),
        invite(To="sip:601@192.0.2.9;user=phone"),
        invite(Date="Sat, 13 Nov 2010 23:29:00 GMT"),
        invite(body=SDP + "trailing bytes a datagram may carry"),
        invite(Subject="folded\r\n  over two lines"),
        invite(From=None, f='<sip:ann@192.0.2.1>;tag=1', Content_Length=None, l=str(len(SDP))),
        invite(request_line="INVITE tel:+441234567890 SIP/2.0"),
    ],
    ids=["plain", "token-name", "quoted-comma", "bare-addr-spec", "gmt-date", "longer-body", "folded", "compact", "tel-uri"],
)
def test_valid_invites_pass(message: str) -> None:
    assert invite_problem(message) is None


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (invite(Content_Length="9999"), "Content-Length larger than the body"),
        (invite(Content_Length="-1"), "content-length: not a non-negative number"),
        (invite("INVITE  sip:601@192.0.2.9  SIP/2.0"), "malformed request line"),
        (invite("INVITE sip:601@192.0.2.9 SIP/2.0  "), "malformed request line"),
        (invite("INVITE sip:601@192.0.2.9 SIP/7.0"), "malformed request line"),
        (invite("INVITE sip:601@192.0.2.9?Route=%3Csip:evil.example%3E SIP/2.0"), "headers in the Request-URI"),
        (invite("INVITE <sip:601@192.0.2.9> SIP/2.0"), "Request-URI in angle brackets"),
        (invite(Date="Fri, 01 Jan 2010 16:00:00 EST"), "date: not an RFC 1123 date in GMT"),
        (invite(From="Smith, Ann <sip:ann@192.0.2.1>;tag=1"), "from: display name must be quoted"),
        (invite(To="<sip:601@192.0.2.9 >"), "to: malformed <addr-spec>"),
        (invite(To="sip:601@192.0.2.9?Route=x"), "to: addr-spec with spaces, commas or headers must be in <>"),
        (invite(Call_ID=None), "missing call-id"),
        (invite().replace("\r\nVia:", "\r\n continued\r\nVia:", 1), "malformed header line"),
        ("\r\n".join(["INVITE sip:601@192.0.2.9 SIP/2.0", "no colon here"]) + "\r\n\r\n", "malformed header line"),
    ],
    ids=[
        "clerr", "ncl", "lwsstart", "trws", "badvers", "escruri", "ltgtruri", "baddate", "baddn", "badaspec",
        "unbracketed-headers", "no-call-id", "fold-before-any-header", "no-colon",
    ],
)
def test_invalid_invites_are_named(message: str, problem: str | None) -> None:
    assert invite_problem(message) == problem
