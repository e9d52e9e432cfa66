"""The gateway's CPU while the page merges two calls (web/js/merge.js), against one plain call.

One gateway (embedded defaults, or ``--python`` media), headless Chromium showing the page, and two
baresip SIP phones calling its user. The gateway's process tree is measured for ``--seconds`` in
each state: one call; two calls, one on hold; the two merged (the page mixing). Merging is
expected to cost the gateway what two calls cost, since the mixing happens in the page.

    .venv/bin/python -m bench.merge_cpu [--seconds 10] [--python]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from playwright.async_api import expect

from tests import proctree
from tests.audio import tone, write_wav
from tests.browser import MIC_HZ, MIC_RATE, BrowserPhone, open_phone
from tests.gatewayprocess import GatewayProcess
from tests.peers.baresip import Baresip


async def cpu_pct(gateway: GatewayProcess, seconds: float) -> float:
    """The gateway's process tree's CPU over the next `seconds`, in % of one core."""
    pids = proctree.tree(gateway.process.pid)
    before, start = proctree.cpu(pids), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * proctree.cpu_used(before, proctree.cpu(pids)) / (time.monotonic() - start)


async def ring_and_answer(phone: BrowserPhone, caller: Baresip, gateway: GatewayProcess) -> None:
    caller.dial(gateway.uri("alice"))
    await expect(phone.page.locator("#incoming")).to_be_visible()
    await phone.answer()
    await asyncio.to_thread(caller.wait_event, "CALL_ESTABLISHED")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--python", action="store_true", help="the gateway's media in Python, not the native relay")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="merge-cpu-") as tmp:
        workdir = Path(tmp)
        mic, far = workdir / "mic.wav", workdir / "far.wav"
        write_wav(mic, tone(MIC_HZ, 2.0, MIC_RATE, pulsed=True), MIC_RATE)
        write_wav(far, tone(650, 120, 8000, pulsed=True), 8000)
        gateway = GatewayProcess(workdir, '[engines]\nmedia = "python"\n' if args.python else "", log_level="info")
        try:
            with Baresip(workdir, far, user="anna", lifetime_s=300) as anna, Baresip(workdir, far, user="bob", lifetime_s=300) as bob:
                async with open_phone(gateway.url, mic, "merge-cpu") as phone:
                    await phone.sign_in("alice")
                    idle = await cpu_pct(gateway, args.seconds)
                    await ring_and_answer(phone, anna, gateway)
                    await phone.wait_tone(650)
                    one = await cpu_pct(gateway, args.seconds)
                    await ring_and_answer(phone, bob, gateway)
                    await expect(phone.page.locator("#merge")).to_be_enabled(timeout=10_000)
                    held = await cpu_pct(gateway, args.seconds)
                    await phone.page.click("#merge")
                    rows = phone.page.locator("#lines .line-state")
                    await expect(rows).to_have_text(["Merged", "Merged"], timeout=10_000)
                    merged = await cpu_pct(gateway, args.seconds)
        finally:
            gateway.stop()
    media = "Python media" if args.python else "native relay"
    print(f"Gateway CPU ({media}, {args.seconds:.0f} s each), % of one core:")
    for label, value in [("idle, page signed in", idle), ("one call", one), ("two calls, one on hold", held), ("two calls merged", merged)]:
        print(f"  {label:<24} {value:5.1f}")


if __name__ == "__main__":
    asyncio.run(main())
