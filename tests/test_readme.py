"""The configuration examples people copy must load: the README's and docker/'s."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import load, worker_count

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_configuration_loads(tmp_path: Path) -> None:
    block = re.search(r"## Configuration.*?```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README lost its configuration example"
    path = tmp_path / "gateway.toml"
    path.write_text(block.group(1))
    config = load(path)
    assert list(config.plan.trunks) == ["pbx", "carrier"]
    assert set(config.users or {}) == {"alice", "bob"}
    assert [token.name for token in config.api.tokens] == ["crm"]


@pytest.mark.parametrize("name", ["gateway.toml", "gateway-a.toml", "gateway-b.toml"])
def test_docker_configurations_load(name: str) -> None:
    config = load(ROOT / "docker" / name)
    assert list(config.plan.trunks) == ["asterisk"]


def test_the_two_docker_hosts_share_one_front() -> None:
    a, b = load(ROOT / "docker" / "gateway-a.toml"), load(ROOT / "docker" / "gateway-b.toml")
    assert (worker_count(a, 2), worker_count(b, 2)) == (4, 4)
    assert b.front.address == f"{a.sip.public_host}:{a.sip.port}"
    assert b.front.rpc_url == f"http://{a.engines.internal_host}:{a.front.rpc_port}/RPC"
    assert a.front.host_id != b.front.host_id
