"""The configuration examples people copy must load: the README's and docker/'s."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load, worker_count
from gateway.passwords import hash_password

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


PLACEHOLDER = "scrypt$16384$8$1$REPLACE$REPLACE"


def load_docker(name: str, tmp_path: Path) -> Config:
    """docker/NAME as an operator starts it: its placeholder password hashes replaced by real ones."""
    path = tmp_path / name
    path.write_text((ROOT / "docker" / name).read_text().replace(PLACEHOLDER, hash_password("change-me")))
    return load(path)


@pytest.mark.parametrize("name", ["gateway.toml", "gateway-a.toml", "gateway-b.toml"])
def test_docker_configurations_load_once_their_placeholder_passwords_are_replaced(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a usable hash .* --hash-password"):
        load(ROOT / "docker" / name)
    config = load_docker(name, tmp_path)
    assert list(config.plan.trunks) == ["asterisk"]
    assert config.users


def test_the_two_docker_hosts_share_one_front(tmp_path: Path) -> None:
    a, b = load_docker("gateway-a.toml", tmp_path), load_docker("gateway-b.toml", tmp_path)
    assert (worker_count(a, 2), worker_count(b, 2)) == (4, 4)
    assert b.front.address == f"{a.sip.public_host}:{a.sip.port}"
    assert b.front.rpc_url == f"http://{a.engines.internal_host}:{a.front.rpc_port}/RPC"
    assert a.front.host_id != b.front.host_id
