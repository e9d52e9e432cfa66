"""Shared fixtures: a real gateway process and browser stand-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .audio import tone, write_wav
from .browser import MIC_HZ, MIC_RATE, OpenPhone, open_phone
from .gatewayprocess import GatewayProcess
from .peers.baresip import Baresip
from .webclient import WebClient

PHONE_HZ = 1000
"""What the ``phone`` fixture plays into its calls."""


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways with a given configuration (``options``: GatewayProcess's); each must stop cleanly
    (exit 0, no abort)."""
    started: list[GatewayProcess] = []

    def start(config: str = "", tls: bool = False, **options: Any) -> GatewayProcess:
        workdir = tmp_path / f"gateway{len(started)}"
        workdir.mkdir()
        started.append(GatewayProcess(workdir, config, tls, **options))
        return started[-1]

    yield start
    for gateway in started:
        code = gateway.stop()
        assert code == 0, f"gateway exited with {code}:\n{gateway.log()[-3000:]}"
        assert "Assertion" not in gateway.log()


@pytest.fixture
def phone(tmp_path: Path) -> Iterator[Baresip]:
    """A baresip phone that auto-answers, plays 1000 Hz and records what it hears."""
    wav = tmp_path / "phone-tone.wav"
    write_wav(wav, tone(PHONE_HZ, 60, 8000), 8000)
    with Baresip(tmp_path, wav) as running:
        yield running


@pytest.fixture
def mic_wav(tmp_path: Path) -> Path:
    """The page's fake microphone: 2 s of pulsed MIC_HZ (whole pulses, so the loop is seamless)."""
    path = tmp_path / "mic.wav"
    write_wav(path, tone(MIC_HZ, 2.0, MIC_RATE, amplitude=0.5, pulsed=True), MIC_RATE)
    return path


@pytest.fixture
def browser(mic_wav: Path, request: pytest.FixtureRequest) -> OpenPhone:
    """Open the page of a given gateway in Chromium, named after the test for failure artefacts."""
    return lambda gateway: open_phone(gateway.url, mic_wav, request.node.name)


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway()


_SHAPES = {
    "embedded": "",
    "workers": "[engines]\nworkers = 2\n",
    "python": '[engines]\nmedia = "python"\n',
    "python-workers": '[engines]\nworkers = 2\nmedia = "python"\n',
}


@pytest.fixture(params=list(_SHAPES))
def either_gateway(request: pytest.FixtureRequest, start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """The default gateway (native media where it can) and one with two worker processes behind its Kamailio
    front; each again with its media in Python."""
    return start_gateway(_SHAPES[request.param])


@pytest.fixture
async def connect_client() -> AsyncIterator[Callable[..., Awaitable[WebClient]]]:
    """Browser stand-ins on a given gateway, signed in unless ``user`` is None; closed at the end of the test."""
    clients: list[WebClient] = []

    async def connect(gateway: GatewayProcess, user: str | None = "alice", password: str | None = None) -> WebClient:
        client = WebClient(gateway.url)
        clients.append(client)
        await client.connect()
        if user is not None:
            await client.sign_in(user, password)
        return client

    yield connect
    for client in clients:
        await client.close()


@pytest.fixture
def web_client(gateway: GatewayProcess, connect_client: Callable[..., Awaitable[WebClient]]) -> Callable[..., Awaitable[WebClient]]:
    """Browser stand-ins on the default gateway."""
    return lambda user="alice", password=None: connect_client(gateway, user, password)
