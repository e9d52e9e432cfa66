"""A page that may only use TURN relays still connects and carries audio."""

from __future__ import annotations

from pathlib import Path

from .peers.coturn import Coturn
from .webclient import WebClient


async def test_relay_only_page_connects_through_coturn(start_gateway, tmp_path: Path) -> None:
    with Coturn(tmp_path, "turn-secret") as turn:
        gateway = start_gateway(f'[webrtc]\nturn_urls = ["{turn.url}"]\nturn_secret = "turn-secret"\n')
        page = WebClient(gateway.url, relay_only=True)
        try:
            await page.connect()
            signed_in = await page.sign_in("alice")
            assert signed_in["ice_servers"][0]["username"].endswith(":alice")
            await page.call("600", tone_hz=880)
            await page.next("answered")
            await page.wait_tone(880)
            assert "relay" in page.pc.localDescription.sdp
            assert "typ host" not in page.pc.localDescription.sdp
        finally:
            await page.close()
