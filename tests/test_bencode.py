"""bench.bencode, the ng protocol's encoding, against hand-written bencode (no rtpengine needed)."""

from __future__ import annotations

import pytest

from bench import bencode


def test_ng_offer_encodes_with_sorted_keys_and_decodes_back() -> None:
    message = {"command": "offer", "rtcp-mux": ["demux"], "codec": {"transcode": ["PCMU"], "mask": ["opus"]}, "n": -3}
    wire = b"d5:codecd4:maskl4:opuse9:transcodel4:PCMUee7:command5:offer1:ni-3e8:rtcp-muxl5:demuxee"
    assert bencode.encode(message) == wire
    assert bencode.decode(wire) == message


@pytest.mark.parametrize("wire", [b"d6:result2:ok", b"5:abc", b"i1ee", b"x"])
def test_broken_bencode_is_refused(wire: bytes) -> None:
    with pytest.raises(ValueError):
        bencode.decode(wire)
