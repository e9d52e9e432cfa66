"""What N calls' bare codec work costs, for the side-by-side in bench.media_calls.

Per call and 20 ms frame: Opus decode to 8 kHz, G.711 encode and decode,
Opus encode from 8 kHz with the relay's settings (bench/codec_work.c, built
here with gcc against the libopus the relay loads). The figure is CPU time
over the audio time carried, as a share of one core per call: the floor any
transcoding media plane pays.

    .venv/bin/python -m bench.codecwork --calls 150 --seconds 30
"""

from __future__ import annotations

import argparse
import functools
import struct
import subprocess
import tempfile
from pathlib import Path

from gateway.nativerelay import library_paths
from tests.audio import tone
from tests.srtpcall import RATE, encode_opus

SOURCE = Path(__file__).with_name("codec_work.c")
CLIENT_BIT_RATE = 32000


@functools.cache
def _program(workdir: Path) -> tuple[Path, Path]:
    """The built program and a file of a second of a browser's Opus packets."""
    program = workdir / "codec_work"
    subprocess.run(["gcc", "-O2", "-o", str(program), str(SOURCE), "-ldl"], check=True)
    packets = workdir / "packets.bin"
    with packets.open("wb") as out:
        for packet in encode_opus(tone(440, 1.0, RATE), CLIENT_BIT_RATE):
            out.write(struct.pack("<H", len(packet)) + packet)
    return program, packets


def cpu_per_call_pct(calls: int, seconds: float, workdir: Path) -> float:
    """Percent of one core that one call's codec work takes (the run is unpaced: CPU time / audio time)."""
    program, packets = _program(workdir)
    result = subprocess.run(
        [str(program), library_paths()[0], str(packets), str(calls), str(seconds)],
        check=True, capture_output=True, text=True,
    )
    cpu_seconds = float(result.stdout.split()[0])
    return 100 * cpu_seconds / (calls * seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[10, 150])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for calls in args.calls:
            print(f"{calls:>4} calls: bare codec work {cpu_per_call_pct(calls, args.seconds, Path(tmp)):.2f}% of a core per call")


if __name__ == "__main__":
    main()
