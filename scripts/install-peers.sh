#!/usr/bin/env bash
# Installs the real programs the integration tests talk to, from Debian's packages.
set -euo pipefail
exec "$(dirname "$0")/apt-install.sh" sip-tester baresip kamailio kamailio-tls-modules coturn chromium chromium-driver iproute2
