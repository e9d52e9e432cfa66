"""The gateway as an operator installs it: a wheel in a fresh virtual environment, started from elsewhere.

The wheel is built from a copy of the checkout with this environment's setuptools
(no build isolation, no index: nothing is fetched) and installed without its
dependencies into a new virtual environment that finds them in this one's
site-packages through a .pth file, so nothing is downloaded either. The installed
console script runs in a temporary directory: neither ``gateway`` nor the page can
come from the checkout.
"""

from __future__ import annotations

import dataclasses
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from .audio import has_tone
from .gatewayprocess import GatewayProcess
from .peers.net import wait_for_async
from .webclient import RATE, WebClient

CHECKOUT = Path(__file__).resolve().parent.parent
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".gateway", "build", "*.egg-info", "__pycache__", ".pytest_cache", "test-artifacts", "*.so"
)
NATIVE = '[engines]\nmedia = "native"\n'
"""The installed relay must load: the gateway refuses to start otherwise."""


@dataclasses.dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "webrtc-sip-gateway"


def run(*args: object, cwd: Path | None = None) -> str:
    done = subprocess.run([str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel built from the checkout, installed into a new virtual environment."""
    base = tmp_path_factory.mktemp("package")
    source = base / "source"
    shutil.copytree(CHECKOUT, source, symlinks=True, ignore=NOT_SOURCE)  # the build writes into its tree
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", base / "dist", source)
    (wheel,) = (base / "dist").glob("*.whl")
    env = base / "venv"
    venv.create(env)
    dependencies = Path(sysconfig.get_path("purelib", vars={"base": str(env)}))
    (dependencies / "dependencies.pth").write_text("".join(f"{path}\n" for path in site.getsitepackages()))
    run(sys.executable, "-m", "pip", "--python", env / "bin" / "python", "install", "--no-deps", "--no-index", "--ignore-installed", wheel)
    return Installed(wheel, env)


def test_the_wheel_holds_the_gateway_alone(installed: Installed, tmp_path: Path) -> None:
    """The page, the dialplan and the native relay, all under gateway/: no generic top-level name."""
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"gateway"}
    for part in ("web", "dialplan"):
        files = {path.relative_to(CHECKOUT).as_posix() for path in (CHECKOUT / part).rglob("*") if path.is_file()}
        assert {f"gateway/{name}" for name in files if "__pycache__" not in name} <= names
    assert any(name.startswith("gateway/_mediarelay.") and name.endswith(".so") for name in names)
    found = run(installed.venv / "bin" / "python", "-c", "import gateway; print(gateway.__file__)", cwd=tmp_path)
    assert Path(found.strip()).is_relative_to(installed.venv)


async def test_the_installed_script_serves_the_page_and_echoes_a_call(
    installed: Installed,
    start_gateway: Callable[..., GatewayProcess],
    connect_client: Callable[..., Awaitable[WebClient]],
    tmp_path: Path,
) -> None:
    gateway = start_gateway(NATIVE, program=[str(installed.script)], cwd=tmp_path)
    async with aiohttp.ClientSession() as http:
        for path, file in [("", "index.html"), ("js/main.js", "js/main.js")]:
            async with http.get(gateway.url + path) as reply:
                assert reply.status == 200
                assert await reply.read() == (CHECKOUT / "web" / file).read_bytes()
    alice = await connect_client(gateway)
    await alice.call("600", tone_hz=880)
    await alice.next("answered")
    for freq in (880, 1200):  # a second tone: the echo follows the voice, it does not replay a recording
        alice.tone.freq = freq
        await wait_for_async(lambda freq=freq: has_tone(alice.last_heard(1.0), RATE, freq), 10)
    assert "media carried natively" in gateway.log()
