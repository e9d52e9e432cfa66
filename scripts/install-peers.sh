#!/usr/bin/env bash
# Installs the real programs the integration tests talk to, from Debian's packages, and ffmpeg,
# which call recording's MP3 and Opus export needs (WAV needs nothing).
set -euo pipefail
exec "$(dirname "$0")/apt-install.sh" sip-tester baresip kamailio kamailio-tls-modules coturn chromium chromium-driver iproute2 ffmpeg
