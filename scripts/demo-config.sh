#!/bin/sh
# The demo node's cloud-config, as `make run` boots it: the demo config plus
# the api: section and files of a development PKI (keelctl gen pki, created
# once in PKI_DIR and kept; each run renews the node's certificate). A
# config that has api: already is used as it is. The output holds a private
# key: mode 0600.
#
#   scripts/demo-config.sh KEELCTL PKI_DIR DEMO_CONFIG OUT
set -eu
keelctl=$1 pki=$2 demo=$3 out=$4
"$keelctl" gen pki --out "$pki" --node keel-demo=127.0.0.1,10.0.2.15 --no-kv >/dev/null
umask 077
if grep -q '^api:' "$demo"; then
	cp "$demo" "$out.tmp"
else
	cat "$demo" "$pki/nodes/keel-demo.yaml" >"$out.tmp"
fi
mv "$out.tmp" "$out"
