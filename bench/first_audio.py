"""Time from pressing Call (or Answer) in the real page to the first audio it plays.

One gateway on embedded defaults and one headless Chromium showing the page.
Outbound: the page calls the built-in ``601`` tone.  Inbound: an aiortc web
client calls the page's user with a tone and the page presses Answer.  The
page times each step on its own clock: the press, the ``answered`` state,
and the first 5 ms window of what ``#remote-audio`` plays that is clearly
not silence.

    .venv/bin/python -m bench.first_audio --calls 20 [--busy]

``--busy`` keeps one core fully busy with another process, as the goals ask.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.bursts import percentile
from tests.audio import tone, write_wav
from tests.browser import BrowserPhone, open_phone
from tests.gatewayprocess import GatewayProcess
from tests.webclient import WebClient

# Presses a button and waits for the first audible window of #remote-audio.
_TIME_JS = """
async (button) => {
  const audio = document.getElementById("remote-audio");
  const status = document.getElementById("status");
  const t0 = performance.now();
  document.getElementById(button).click();
  let ctx = null, analyser = null, answered = null;
  const buf = new Float32Array(256);
  return await new Promise((resolve, reject) => {
    const tick = () => {
      const now = performance.now();
      if (answered === null && status.dataset.state === "answered") answered = now - t0;
      if (!analyser && audio.srcObject) {
        ctx = new AudioContext();
        analyser = ctx.createAnalyser();
        analyser.fftSize = buf.length;
        ctx.createMediaStreamSource(audio.srcObject).connect(analyser);
      }
      if (analyser) {
        analyser.getFloatTimeDomainData(buf);
        if (buf.some((x) => Math.abs(x) > 0.05)) {
          ctx.close();
          resolve({ answered, audio: now - t0 });
          return;
        }
      }
      if (now - t0 > 10000) {
        ctx?.close();
        reject(new Error("no audio within 10 s"));
        return;
      }
      setTimeout(tick, 2);
    };
    tick();
  });
}
"""


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """Another process keeping one core fully busy, when asked."""
    if not busy:
        yield
        return
    spinner = multiprocessing.Process(target=_spin, daemon=True)
    spinner.start()
    try:
        yield
    finally:
        spinner.kill()


async def outbound(phone: BrowserPhone) -> dict[str, float]:
    await phone.page.fill("#number", "601")
    timing = await phone.page.evaluate(_TIME_JS, "call")
    await phone.hang_up()
    await phone.wait_state("ended")
    return timing


async def inbound(phone: BrowserPhone, caller: WebClient, user: str) -> dict[str, float]:
    await caller.send({"type": "call", "to": user, "sdp": await caller.offer(660), "id": "c1"})

    async def connect_caller() -> None:
        await caller.apply_answer((await caller.next("sdp"))["sdp"])

    connecting = asyncio.ensure_future(connect_caller())
    await phone.wait_state("incoming")
    timing = await phone.page.evaluate(_TIME_JS, "answer")
    await connecting
    await phone.hang_up()
    await phone.wait_state("ended")
    await caller.hang_up_media()
    return timing


def summary(label: str, rows: list[dict[str, Any]]) -> None:
    audio = [row["audio"] for row in rows]
    answered = [row["answered"] for row in rows if row["answered"] is not None]
    print(
        f"{label:<28} n={len(audio):>3}  first audio median {statistics.median(audio):6.0f} ms"
        f"  p95 {percentile(audio, 95):6.0f} ms  (answered median {statistics.median(answered):5.0f} ms)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--busy", action="store_true", help="keep one core busy with another process")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="first-audio-") as tmp:
        workdir = Path(tmp)
        mic = workdir / "mic.wav"
        write_wav(mic, tone(520, 5.0, 48000), 48000)
        gateway = GatewayProcess(workdir, log_level="info")
        caller = WebClient(gateway.url)
        try:
            await caller.connect()
            await caller.sign_in("caller")
            async with open_phone(gateway.url, mic, "first-audio") as phone:
                await phone.sign_in("alice")
                await outbound(phone)  # warm-up: the first call loads codecs and modules
                with busy_core(args.busy):
                    calls = [await outbound(phone) for _ in range(args.calls)]
                    answers = [await inbound(phone, caller, "alice") for _ in range(args.calls)]
        finally:
            await caller.close()
            gateway.stop()
    load = "one core busy" if args.busy else "quiet machine"
    print(f"Time to first audio in Chromium, {load}:")
    summary("Call -> first audio (601)", calls)
    summary("Answer -> first audio", answers)


if __name__ == "__main__":
    asyncio.run(main())
