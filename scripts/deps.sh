#!/usr/bin/env bash
# The Debian packages keel's build, run and tests need, and the commands and
# files they must provide.
#
# usage: scripts/deps.sh           install what is missing (as root), then check
#        scripts/deps.sh --check   only check: print each command with its
#                                  version, name what is missing, exit 1 if so
#
# Why it checks after installing, and not only before: apt may remove a
# package to satisfy another one on the same line (a backported qemu-utils is
# removed when qemu-system-x86 7.2 comes in). So the state is checked again
# after the install, what apt removed is installed again, and whatever is still
# missing fails the run at once, naming the package and the command, with
# apt's output kept in a log.
set -euo pipefail

# package | what it must provide (commands on PATH, or absolute paths of files)
# | why keel needs it
table=(
  "qemu-system-x86|qemu-system-x86_64|the VMs"
  "qemu-utils|qemu-img|qcow2 disk images, resizes in the tests"
  "linux-source-6.1|/usr/src/linux-source-6.1.tar.xz|the kernel source keel's kernel is built from"
  "make|make|the build"
  "gcc|gcc|the kernel build"
  "binutils|objcopy|keel as shipped: the release binary without its unwind tables"
  "bc|bc|the kernel build"
  "bison|bison|the kernel build"
  "flex|flex|the kernel build"
  "libelf-dev|/usr/include/gelf.h|the kernel build"
  "libssl-dev|/usr/include/openssl/ssl.h|the kernel build"
  "xz-utils|xz|unpacking the kernel source"
  "cpio|cpio|checking initramfs archives in tests"
  "zstd|zstd|checking initramfs archives in tests"
  "lz4|lz4|the boot benchmark's LZ4 initramfs (the decompression trade-off)"
  "erofs-utils|mkfs.erofs|the root image"
  "e2fsprogs|mkfs.ext4 e2fsck debugfs|the STATE partition and its checks"
  "dosfstools|mkfs.vfat|the EFI system partition"
  "mtools|mcopy mformat mmd|the EFI system partition"
  "ovmf|/usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd|UEFI firmware for the disk boots"
  "ipxe-qemu|/usr/lib/ipxe/qemu/efi-e1000.rom|the iPXE ROM of the netboot test"
  "cryptsetup-bin|veritysetup|the oracle for keel's hash tree"
  "gdisk|sgdisk|the oracle for keel's GPT"
  "genisoimage|genisoimage|config-drive ISOs in the cloud-config tests"
  "ca-certificates|/etc/ssl/certs/ca-certificates.crt|the CA bundle in the root image"
  "busybox-static|/bin/busybox|the busybox container image; its udhcpd is the DHCP server of the DHCP VM test (short leases)"
  "skopeo|skopeo|an independent reader of keel-image's OCI layouts"
  "curl|curl|what users reach the node with, in the VM tests"
  "docker-registry|docker-registry|a real registry for the pull tests"
  "mmdebstrap|mmdebstrap|a Debian image of real programs (nginx, redis) for the VM test of real images"
  "redis-tools|redis-cli|talking to the redis of that image"
  "crun|crun|the reference runtime of the container benchmark"
  "etcd-server|etcd|etcd 3.4: the reference of keel's etcd v2 API"
  "etcd-client|etcdctl|etcdctl against keel's KV"
  "wrk|wrk|the load generator of the KV benchmark"
  "iproute2|ip|network namespaces and veth in the root-only tests"
  "socat|socat|the DHCP VM test: relays the VM's second NIC (a unix datagram socket) to a tap in the test's namespace, where udhcpd serves"
  "nftables|nft|reading back the rules keel writes, in the root-only tests"
  "util-linux|unshare nsenter|namespaces in the root-only tests"
  "mount|mount umount|loop mounts in the root-only tests"
)

# The qemu packages come from one release: a backported qemu-utils beside
# Debian's qemu-system-x86 makes apt remove one of them. Whenever either is
# installed, both go on the same line, pinned to qemu-system-x86's version.
qemu_pair=(qemu-system-x86 qemu-utils)

check_only=0
[ "${1:-}" = --check ] && check_only=1

log=${KEEL_DEPS_LOG:-${TMPDIR:-/tmp}/keel-deps.log}

pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
have() { # a command on PATH (sbin included: a non-root PATH may lack it), or a file
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# Packages whose state is wrong: not installed, or something they provide is
# missing. A qemu package whose version differs from the other's counts too.
wrong_packages() {
  local row pkg provides item
  for row in "${table[@]}"; do
    IFS='|' read -r pkg provides _ <<<"$row"
    if ! pkg_installed "$pkg"; then echo "$pkg"; continue; fi
    for item in $provides; do
      have "$item" || { echo "$pkg"; break; }
    done
  done
  if pkg_installed qemu-system-x86 && pkg_installed qemu-utils &&
    [ "$(pkg_version qemu-system-x86)" != "$(pkg_version qemu-utils)" ]; then
    echo qemu-utils
  fi
}

# One line per need: OK/MISSING, the command or file, its package, its version.
report() {
  local row pkg provides why item status version bad=0
  for row in "${table[@]}"; do
    IFS='|' read -r pkg provides why <<<"$row"
    version=$(pkg_version "$pkg")
    for item in $provides; do
      if have "$item"; then status=ok; else status=MISSING; bad=1; fi
      printf '%-8s %-42s %-18s %s\n' "$status" "$item" "$pkg" "${version:-not installed}"
    done
  done
  if pkg_installed qemu-system-x86 && pkg_installed qemu-utils &&
    [ "$(pkg_version qemu-system-x86)" != "$(pkg_version qemu-utils)" ]; then
    echo "MISMATCH qemu-utils $(pkg_version qemu-utils) is not qemu-system-x86's $(pkg_version qemu-system-x86): apt removes one for the other"
    bad=1
  fi
  return $bad
}

# The missing things, as "command (package)", one per line.
missing_items() {
  local row pkg provides item
  for row in "${table[@]}"; do
    IFS='|' read -r pkg provides _ <<<"$row"
    for item in $provides; do
      have "$item" || echo "  $item (package $pkg)"
    done
  done
}

if [ $check_only = 1 ]; then
  if report; then
    echo "deps: everything keel needs is here"
    exit 0
  fi
  echo "deps: something is missing; as root, scripts/deps.sh (make deps) installs it" >&2
  exit 1
fi

mapfile -t wrong < <(wrong_packages | sort -u)
[ ${#wrong[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "deps: missing or broken: ${wrong[*]}; run: sudo scripts/deps.sh" >&2
  exit 1
fi

# The install line: the wrong packages, with the qemu pair completed and
# pinned to one version.
install_line() {
  local p want_qemu=0 line=() qver
  for p in "$@"; do
    case " ${qemu_pair[*]} " in *" $p "*) want_qemu=1 ;; *) line+=("$p") ;; esac
  done
  if [ $want_qemu = 1 ]; then
    qver=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ { print $2 }')
    if [ -n "$qver" ] && [ "$qver" != "(none)" ]; then
      line+=("qemu-system-x86=$qver" "qemu-utils=$qver")
    else
      line+=("${qemu_pair[@]}")
    fi
  fi
  printf '%s\n' "${line[@]}"
}

: >"$log"
apt_install() {
  echo "deps: installing $*" >&2
  {
    echo "== $(date -u +%FT%TZ) apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --allow-downgrades "$@"
  } >>"$log" 2>&1
}

{ echo "== $(date -u +%FT%TZ) apt-get update"; apt-get update; } >>"$log" 2>&1 ||
  { echo "deps: apt-get update failed; its output is in $log" >&2; exit 1; }
mapfile -t line < <(install_line "${wrong[@]}")
apt_install "${line[@]}" || true

# Check again: what apt removed to satisfy the line is installed again, once.
mapfile -t wrong < <(wrong_packages | sort -u)
if [ ${#wrong[@]} -ne 0 ]; then
  echo "deps: after the install, still missing or removed by apt: ${wrong[*]}; installing again" >&2
  mapfile -t line < <(install_line "${wrong[@]}")
  apt_install "${line[@]}" || true
  mapfile -t wrong < <(wrong_packages | sort -u)
fi
if [ ${#wrong[@]} -ne 0 ]; then
  echo "deps: the install failed; missing:" >&2
  missing_items >&2
  echo "deps: apt's output is in $log" >&2
  exit 1
fi
echo "deps: installed; apt's output is in $log" >&2
