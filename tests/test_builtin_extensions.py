"""The built-in extensions, reached over a real SIP INVITE to the gateway itself."""

from __future__ import annotations

import asyncio

from .audio import has_tone
from .webclient import RATE


async def test_tone_extension_plays_440_hz(web_client) -> None:
    client = await web_client()
    call = await client.call("601")
    await client.next("answered")
    await asyncio.sleep(2)
    assert has_tone(client.last_heard(1.0), RATE, 440)
    await client.send({"type": "hangup", "call": call})
    ended = await client.next("ended")
    assert (ended["cause"], ended["code"]) == ("normal", 200)


async def test_echo_extension_returns_your_voice(web_client) -> None:
    client = await web_client()
    await client.call("600", tone_hz=880)
    await client.next("answered")
    await asyncio.sleep(2)
    assert has_tone(client.last_heard(1.0), RATE, 880)
    client.tone.freq = 1200
    await asyncio.sleep(1.5)
    assert has_tone(client.last_heard(0.5), RATE, 1200)
