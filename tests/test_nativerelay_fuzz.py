"""The native relay under hostile traffic, built with AddressSanitizer and UBSan.

The extension is compiled here with gcc (``-fsanitize=address,undefined``) and
loaded in a subprocess with the compiler's libasan preloaded; that subprocess
(``tests/relayfuzz.py``) throws malformed, truncated, oversized and random
datagrams (RTCP among them) at the four sockets of a live call (the browser
leg has two, and the relay follows it between them), whose tones must still be heard
afterwards. Any sanitizer report, crash or silence fails the test. Without gcc
it fails: the C file must stay buildable and clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / "gateway" / "_mediarelay.c", ROOT / "gateway" / "_rtcp.c", ROOT / "gateway" / "_mixer.c"]
DATAGRAMS = 250_000


def build_sanitized(directory: Path) -> Path:
    """The extension built with ASan and UBSan (every UB report fatal) into `directory`."""
    target = directory / f"_mediarelay{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        ["gcc", "-std=gnu99", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=undefined", "-Wall", "-Werror", "-Wno-cast-function-type",
         "-shared", "-fPIC", f"-I{sysconfig.get_paths()['include']}", *map(str, SOURCES), "-o", str(target), "-ldl"],
        check=True,
    )
    return target


def test_hostile_datagrams_under_sanitizers(tmp_path: Path) -> None:
    extension = build_sanitized(tmp_path)
    libasan = subprocess.run(
        ["gcc", "-print-file-name=libasan.so"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert os.path.isabs(libasan), f"gcc has no libasan: {libasan}"
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0",
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1",
        PYTHONFAULTHANDLER="1",
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.relayfuzz", str(extension), str(DATAGRAMS)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    for report in ("AddressSanitizer", "runtime error", "Fatal Python error"):
        assert report not in done.stderr, done.stderr[-6000:]
    assert done.returncode == 0, done.stderr[-6000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["extension"] == str(extension)
    assert summary["sent"] >= 100_000
    assert summary["before"] == {"browser_hears_phone": True, "phone_hears_browser": True}
    assert summary["after"] == {"browser_hears_phone": True, "phone_hears_browser": True}, summary["stats"]
    stats = summary["stats"]
    assert stats["browser_rx_packets"] + stats["sip_rx_packets"] >= DATAGRAMS
    assert stats["sip_rtcp_rx_packets"] == summary["sent_rtcp"] > DATAGRAMS // 20
    exercised = ("srtp_auth_failures", "malformed", "oversized", "late", "foreign", "telephone_events",
                 "decode_errors", "concealed", "fec_recovered", "rtcp_packets", "sip_rtcp_packets",
                 "browser_rtcp_tx_packets", "sip_rtcp_tx_packets", "browser_moved")
    for survived in exercised:
        assert stats[survived] > 0, (survived, stats)
