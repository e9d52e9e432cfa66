#!/usr/bin/env bash
# Installs what only the benchmarks use, from Debian's packages: rtpengine's userspace daemon
# (not the rtpengine metapackage, which builds a kernel module with DKMS). The tests never need it.
set -euo pipefail
exec "$(dirname "$0")/apt-install.sh" rtpengine-daemon
