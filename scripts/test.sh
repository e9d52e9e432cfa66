#!/usr/bin/env bash
# Installs everything the tests need, then runs them all. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-peers.sh
scripts/install-container.sh
scripts/setup.sh --test
exec .venv/bin/python -m pytest "$@"
