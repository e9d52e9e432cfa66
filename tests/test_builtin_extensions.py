"""The built-in extensions, reached over a real SIP INVITE to the gateway itself."""

from __future__ import annotations


async def test_tone_extension_plays_440_hz(web_client) -> None:
    client = await web_client()
    call = await client.call("601")
    await client.next("answered")
    await client.wait_tone(440)
    await client.send({"type": "hangup", "call": call})
    ended = await client.next("ended")
    assert (ended["cause"], ended["code"]) == ("normal", 200)


async def test_echo_extension_returns_your_voice(web_client) -> None:
    client = await web_client()
    await client.call("600", tone_hz=880)
    await client.next("answered")
    await client.wait_tone(880)
    client.tone.freq = 1200
    await client.wait_tone(1200, seconds=0.5)
