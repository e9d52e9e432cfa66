#!/usr/bin/env bash
# Installs podman and makes the local base image localhost/debian:bookworm for tests/test_container.py.
# No registry is needed: the base is debootstrapped from the Debian mirror apt already uses, once.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/apt-install.sh podman buildah debootstrap runc

image=localhost/debian:bookworm
podman image exists "$image" && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
mirror=$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}
root=$(mktemp -d)
trap '$sudo rm -rf "$root"' EXIT
echo "making $image from $mirror"
$sudo debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
$sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*  # the image runs apt-get update itself
$sudo tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
