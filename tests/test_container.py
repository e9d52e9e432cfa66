"""The container image as an operator runs it: docker/Dockerfile built with podman, started with host
networking on free ports, healthy by its own HEALTHCHECK, carrying a call to the echo on the native
relay, and keeping its certificate on its state volume from one container to the next.

No registry is reached: the base is localhost/debian:bookworm, which scripts/install-container.sh
debootstraps from the Debian mirror (scripts/test.sh runs it). pip fetches the dependencies from
PyPI through the host's network, with the host's CA bundle (a proxy that inspects TLS signs with it).
"""

from __future__ import annotations

import dataclasses
import resource
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from gateway import healthcheck
from gateway.config import Config, load
from gateway.passwords import hash_password

from .audio import has_tone
from .peers.net import LOOPBACK, free_port, free_tcp_port, wait_for, wait_for_async
from .webclient import RATE, WebClient

pytestmark = pytest.mark.timeout(900)  # a first build fetches the dependencies: minutes, not seconds

CHECKOUT = Path(__file__).resolve().parent.parent
BASE = "localhost/debian:bookworm"
IMAGE = "localhost/webrtc-sip-gateway:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
PASSWORD = "container-secret"
_HARD_FILES = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
LIMITS = ["--ulimit", f"nofile={_HARD_FILES}:{_HARD_FILES}", "--ulimit", "nproc=4096:4096"]
"""crun cannot raise the limits past the host's here, nor run in hybrid cgroups: runc with these can."""
READY_SECONDS = 60


def podman(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"podman {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def image() -> str:
    """The image built from the checkout (dependencies come from a cached layer unless pyproject.toml changed)."""
    assert shutil.which("podman"), "podman is not installed: run scripts/install-container.sh"
    assert subprocess.run(["podman", "image", "exists", BASE]).returncode == 0, f"no {BASE}: run scripts/install-container.sh"
    certificates = ["--build-arg", "PIP_CERT=/run/host-ca.crt", "-v", f"{HOST_CA}:/run/host-ca.crt:ro"] if HOST_CA.is_file() else []
    podman(
        "build", "--isolation", "chroot", "--format", "docker", "--file", str(CHECKOUT / "docker" / "Dockerfile"),
        "--tag", IMAGE, "--build-arg", f"BASE={BASE}", *certificates, str(CHECKOUT), timeout=850,
    )
    return IMAGE


@dataclasses.dataclass
class Container:
    """One running container of the image: its name and the page's address."""

    name: str
    url: str

    def logs(self) -> str:
        done = subprocess.run(["podman", "logs", self.name], capture_output=True, text=True, timeout=30)
        return done.stdout + done.stderr

    def certificate(self) -> str:
        host, port = self.url.removeprefix("https://").rstrip("/").rsplit(":", 1)
        return ssl.get_server_certificate((host, int(port)))


@pytest.fixture
def run_container(image: str, tmp_path: Path) -> Iterator[Callable[..., Container]]:
    """Start containers of the image, one after another, on the same state volume (``engines``: more of
    the [engines] table); each must stop cleanly on SIGTERM (exit 0) and is removed with its volume at the end."""
    http_port, sip_port = free_tcp_port(), free_port(udp=True, tcp=True)
    volume = f"wsg-test-{secrets.token_hex(4)}"
    started: list[str] = []

    def start(engines: str = "") -> Container:
        name = f"{volume}-{len(started)}"
        started.append(name)
        config = tmp_path / f"{name}.toml"
        config.write_text(
            f'[http]\nlisten = "{LOOPBACK}"\nport = {http_port}\n'
            f'[sip]\nlisten = "{LOOPBACK}"\nport = {sip_port}\nrtp_port = 0\n'
            f'[engines]\nmedia = "native"\n{engines}'  # the relay must load: the gateway refuses to start otherwise
            f'[users.alice]\npassword = "{hash_password(PASSWORD)}"\n'
        )
        config.chmod(0o644)
        settings = load(config)
        podman(
            "run", "--detach", "--name", name, "--runtime", "runc", *LIMITS, "--network", "host",
            "--health-interval", "disable",  # no systemd timers here: the test runs the check itself
            "-v", f"{config}:/etc/gateway/gateway.toml:ro", "-v", f"{volume}:/var/lib/gateway", image,
        )
        container = Container(name, f"https://{LOOPBACK}:{http_port}/")
        try:
            wait_for(lambda: _serves(container, settings), READY_SECONDS, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"the container did not serve /health:\n{container.logs()[-3000:]}") from None
        return container

    yield start
    for name in started:
        subprocess.run(["podman", "stop", "--time", "20", name], capture_output=True, timeout=60)
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).strip()
        logs = Container(name, "").logs()
        podman("rm", "--force", "--volumes", name)
        assert code == "0", f"the gateway in {name} exited with {code}:\n{logs[-3000:]}"
    subprocess.run(["podman", "volume", "rm", "--force", volume], capture_output=True, timeout=60)


def _serves(container: Container, settings: Config) -> bool:
    """Whether /health answers yet, as the image's HEALTHCHECK asks it; a stopped container fails the test."""
    state = podman("inspect", "--format", "{{.State.Running}}", container.name).strip()
    if state != "true":
        raise AssertionError(f"the container stopped:\n{container.logs()[-3000:]}")
    return healthcheck.check(settings)[0]


@pytest.mark.parametrize("engines", ["", "workers = 1\n"], ids=["embedded", "kamailio-front-and-a-worker"])
async def test_the_image_runs_healthy_and_echoes_a_call_on_the_native_relay(
    run_container: Callable[..., Container], connect_client: Callable[..., Awaitable[WebClient]], engines: str
) -> None:
    container = run_container(engines)
    podman("healthcheck", "run", container.name)  # the image's HEALTHCHECK: exit 0 only when /health answers
    assert podman("inspect", "--format", "{{.State.Health.Status}}", container.name).strip() == "healthy"
    alice = await connect_client(container, "alice", PASSWORD)
    await alice.call("600", tone_hz=880)
    await alice.next("answered")
    for freq in (880, 1200):  # a second tone: the echo follows the voice, it does not replay a recording
        alice.tone.freq = freq
        try:
            await wait_for_async(lambda freq=freq: has_tone(alice.last_heard(1.0), RATE, freq), 10)
        except TimeoutError:
            raise AssertionError(f"no echo of {freq} Hz:\n{container.logs()[-5000:]}") from None
    assert "media carried natively" in container.logs()


def test_a_new_container_keeps_the_certificate_on_the_state_volume(run_container: Callable[..., Container]) -> None:
    first = run_container()
    certificate = first.certificate()
    podman("stop", "--time", "20", first.name)
    assert run_container().certificate() == certificate, "a browser would have to accept a new certificate"
