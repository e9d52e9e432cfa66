"""What an idle gateway costs with the workers for a capacity: CPU and PSS, summed and by kind of process.

    .venv/bin/python -m bench.idle --capacity 150 --seconds 30

The gateway runs with ``[engines] capacity`` and no call; after its engines
are ready and a settling pause, CPU is read over ``--seconds`` from /proc
for its whole process tree (call control, the engines' workers, their SIP
processes and fork servers, Kamailio), then PSS. The goal for capacity 150
on this 2-core machine is 5% of one core; PSS is what the capacity costs
before any call (the calls themselves add what ``bench.media_calls`` prints).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import tempfile
from pathlib import Path

from tests import proctree
from tests.gatewayprocess import GatewayProcess

SETTLE_S = 5.0


def kind(pid: int) -> str:
    """What a process of the tree is, from its command line."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [word.decode(errors="replace") for word in command]
    if "kamailio" in words[0]:
        return "Kamailio"
    if "gateway.sipprocess" in words:
        return "SIP process (and their fork servers)"
    if "gateway" in words:
        return "call control"
    return "workers (and their fork server)"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=150)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        gateway = GatewayProcess(Path(workdir), f"[engines]\ncapacity = {args.capacity}\n", log_level="warning")
        try:
            while len(gateway.health()["engines"]) < -(-args.capacity // 4):
                await asyncio.sleep(0.2)
            await asyncio.sleep(SETTLE_S)
            pids = proctree.tree(gateway.process.pid)
            before = proctree.cpu(pids)
            await asyncio.sleep(args.seconds)
            after = proctree.cpu(pids)
            cpu = collections.Counter[str]()
            pss = collections.Counter[str]()
            count = collections.Counter[str]()
            for pid in pids:
                name = kind(pid)
                count[name] += 1
                cpu[name] += 100 * (after.get(pid, 0.0) - before.get(pid, 0.0)) / args.seconds
                pss[name] += proctree.pss({pid})
        finally:
            gateway.stop()
    print(f"idle gateway, capacity {args.capacity} ({-(-args.capacity // 4)} engines), {len(pids)} processes, over {args.seconds:.0f} s:")
    for name in sorted(count, key=lambda name: -pss[name]):
        print(f"  {name:40s} {count[name]:3d} processes  CPU {cpu[name]:5.2f}% of a core  PSS {pss[name]:6.1f} MiB")
    total_pss = sum(pss.values())
    print(
        f"  {'all':40s} {len(pids):3d} processes  CPU {sum(cpu.values()):5.2f}% of a core  PSS {total_pss:6.1f} MiB "
        f"({total_pss / args.capacity:.2f} MiB per call of capacity)"
    )


if __name__ == "__main__":
    asyncio.run(main())
