#!/usr/bin/env bash
# Creates .venv with the gateway installed (and its test tools with --test).
# pjsua2-python has wheels for CPython 3.10-3.12 on x86-64 Linux only: say so
# before pip gets lost in a source build that cannot work.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -s)" != Linux ] || [ "$(uname -m)" != x86_64 ]; then
  echo "error: this gateway needs x86-64 Linux (pjsua2-python has no wheel for $(uname -s) $(uname -m))." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  python=""
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "error: Python 3.10, 3.11 or 3.12 is needed (pjsua2-python has wheels for those only)." >&2
    exit 1
  fi
  "$python" -m venv .venv
fi
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
# The install is editable: Python, page and dialplan changes need none. Install again only when
# what it builds from changed (dependencies, the native relay, the interpreter); a test install
# also serves a plain one.
stamp=.venv/installed
digest=$( { .venv/bin/python -VV; cat pyproject.toml setup.py gateway/_*.c gateway/_*.h; } | sha256sum | cut -d" " -f1)
installed=$(cat "$stamp" 2>/dev/null || true)
if [ "$installed" != "$digest$extra" ] && [ "$installed" != "$digest[test]" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extra}"
  echo "$digest$extra" > "$stamp"
fi
