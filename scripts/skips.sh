#!/usr/bin/env bash
# The one-line summary of skipped tests at the end of make check / make test,
# then the skips themselves (keel-skip writes one line per skip to the logs).
#
# usage: scripts/skips.sh LOG...
set -euo pipefail
lines=$(cat "$@" 2>/dev/null || true)
if [ -z "$lines" ]; then
  echo "tests skipped: 0"
  exit 0
fi
n=$(printf '%s\n' "$lines" | grep -c .)
echo "tests skipped: $n (a skip means the environment lacked something; in CI it fails)"
printf '%s\n' "$lines" | sed 's/^/  /'
