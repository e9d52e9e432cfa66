#!/usr/bin/env bash
# Runs the gateway on its embedded defaults (or with the options given).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m gateway "$@"
