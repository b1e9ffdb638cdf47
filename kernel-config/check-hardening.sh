#!/usr/bin/env bash
# Check a built kernel's .config against kernel-config/hardening.list: every
# `want` line holds, no `except` line's value crept in, and every option the
# list names is a symbol of the kernel source (a misspelt `=n` would pass
# silently otherwise). Prints one line per option with its reason.
#
# usage: kernel-config/check-hardening.sh CONFIG SYMBOLS [LIST]
#        kernel-config/check-hardening.sh --self-test CONFIG SYMBOLS [LIST]
#   --self-test: the check must fail, naming the option, for a copy of
#   CONFIG with each listed option flipped in turn (the check can fail).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
self_test=0
if [ "${1:-}" = --self-test ]; then self_test=1; shift; fi
config=${1:?usage: check-hardening.sh [--self-test] CONFIG SYMBOLS [LIST]}
symbols=${2:?usage: check-hardening.sh [--self-test] CONFIG SYMBOLS [LIST]}
list=${3:-$here/hardening.list}

# check CONFIG QUIET: 0 when the config passes, 1 (with the failures on
# stderr) when it does not.
check() {
  awk -v quiet="$2" '
    FILENAME == ARGV[1] { known[$0] = 1; next }
    FILENAME == ARGV[2] {
      if ($0 ~ /^CONFIG_[A-Za-z0-9_]+=/) { i = index($0, "="); have[substr($0, 1, i - 1)] = substr($0, i + 1) }
      next
    }
    /^(want|except)[ \t]/ {
      kind = $1; setting = $2
      i = index(setting, "="); opt = substr(setting, 1, i - 1); val = substr(setting, i + 1)
      why = $0; sub(/^[a-z]+[ \t]+[^ \t]+[ \t]+/, "", why)
      if (!(opt in known)) { printf "kernel hardening: %s is not an option of this kernel (misspelt?)\n", opt > "/dev/stderr"; bad++; next }
      got = (opt in have) ? have[opt] : "n"
      if (val == "n") match_ = (got == "n"); else match_ = (got == val)
      if (kind == "want" && !match_) {
        printf "kernel hardening: %s is %s, wants %s: %s\n", opt, got, val, why > "/dev/stderr"; bad++
      } else if (kind == "except" && match_) {
        printf "kernel hardening: %s=%s is listed as an exception but is on: drop the except line\n", opt, val > "/dev/stderr"; bad++
      } else if (quiet == 0) {
        printf "  %-6s %-45s %s\n", (kind == "want" ? "ok" : "off"), setting, why
      }
      n++
      next
    }
    /^[ \t]*(#|$)/ { next }
    { printf "kernel hardening: %s: cannot read line: %s\n", FILENAME, $0 > "/dev/stderr"; bad++ }
    END {
      if (n == 0) { print "kernel hardening: the list is empty" > "/dev/stderr"; bad++ }
      if (bad) exit 1
      if (quiet == 0) printf "kernel hardening: %d options as listed\n", n
    }
  ' "$symbols" "$1" "$list"
}

if [ "$self_test" = 0 ]; then
  check "$config" 0
  exit
fi

# Each listed option flipped in a copy of the config: the check must fail
# and name it.
check "$config" 1 || { echo "kernel hardening self-test: the config itself fails" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tried=0
while read -r kind setting _; do
  case "$kind" in want|except) ;; *) continue ;; esac
  opt=${setting%%=*}; val=${setting#*=}
  grep -v "^$opt=\|^# $opt is not set" "$config" > "$tmp/config"
  if [ "$kind" = want ] && [ "$val" != n ]; then
    # Wanted on (or a value): flip to off, or to another value.
    case "$val" in y) ;; *) echo "$opt=${val}1" >> "$tmp/config" ;; esac
  else
    # Wanted off, or an exception: turn it on (to the excepted value).
    if [ "$val" = n ]; then echo "$opt=y" >> "$tmp/config"; else echo "$opt=$val" >> "$tmp/config"; fi
  fi
  if check "$tmp/config" 1 2> "$tmp/err"; then
    echo "kernel hardening self-test: flipping $opt went unnoticed" >&2; exit 1
  fi
  grep -q "$opt" "$tmp/err" || { echo "kernel hardening self-test: flipping $opt failed without naming it:" >&2; cat "$tmp/err" >&2; exit 1; }
  tried=$((tried + 1))
done < "$list"
echo "kernel hardening self-test: each of $tried options flipped, each caught"
