"""The configuration examples people copy must load: the README's and docker/'s."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config import load

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_configuration_loads(tmp_path: Path) -> None:
    block = re.search(r"## Configuration.*?```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README lost its configuration example"
    path = tmp_path / "gateway.toml"
    path.write_text(block.group(1))
    config = load(path)
    assert list(config.plan.trunks) == ["pbx", "carrier"]
    assert set(config.users or {}) == {"alice", "bob"}


def test_docker_configuration_loads() -> None:
    config = load(ROOT / "docker" / "gateway.toml")
    assert list(config.plan.trunks) == ["asterisk"]
