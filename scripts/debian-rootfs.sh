#!/usr/bin/env bash
# A Debian root file system as a tar, made with mmdebstrap the way a user
# would make an image of real programs, for the VM tests that run such
# images under keel (tests/vm/debian.rs). Cached outside the checkout, like
# the kernel, keyed by the suite, the packages and mmdebstrap's version:
# about 15-20 s and ~190 MB the first time, nothing after.
#
# usage: scripts/debian-rootfs.sh SUITE PACKAGES   (PACKAGES: comma-separated)
# prints the cached tar's path
set -euo pipefail
suite=${1:?suite}
packages=${2:?packages}
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/keel; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/keel; fi
cache=${KEEL_CACHE_DIR:-$default_cache}/debian
command -v mmdebstrap >/dev/null || { echo "debian-rootfs: mmdebstrap is missing (scripts/deps.sh installs it)" >&2; exit 1; }
key=$(printf '%s\n%s\n%s\n' "$suite" "$packages" "$(mmdebstrap --version)" | sha256sum | cut -c1-16)
tar="$cache/$suite-$key.tar"
if [ ! -s "$tar" ]; then
  mkdir -p "$cache"
  tmp=$(mktemp "$cache/.tmp-XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  echo "debian-rootfs: mmdebstrap --variant=minbase --include=$packages $suite (cache key $key)" >&2
  # minbase with the packages; the tar is what `docker import` would take.
  mmdebstrap --quiet --variant=minbase --include="$packages" --format=tar "$suite" "$tmp" >&2
  mv "$tmp" "$tar"
  trap - EXIT
fi
echo "$tar"
