#!/usr/bin/env bash
# Install the Debian packages keel's build, run and tests need. As root it
# installs what is missing; otherwise it prints the apt-get line and fails.
set -euo pipefail

pkgs=(
  qemu-system-x86   # the VMs
  linux-source-6.1  # the kernel source keel's kernel is built from
  bc bison flex libelf-dev libssl-dev  # kernel build
  cpio zstd         # checking initramfs archives in tests
  erofs-utils       # mkfs.erofs: the root image
  e2fsprogs         # mkfs.ext4 -d: the STATE partition
  dosfstools mtools # the EFI system partition (mkfs.vfat, mcopy)
  qemu-utils        # qemu-img: qcow2 disk images, resize in tests
  ovmf ipxe-qemu    # UEFI firmware and the iPXE ROM for the boot tests
  cryptsetup-bin    # veritysetup: the oracle for keel's hash tree
  gdisk             # sgdisk --verify: the oracle for keel's GPT
  genisoimage       # config-drive ISOs in the cloud-config tests
  ca-certificates   # the CA bundle in the root image
  busybox-static    # /bin/busybox: the busybox container image (busybox-oci.list)
  skopeo            # an independent reader of the OCI layouts keel-image writes
  curl              # what users reach the demo container with, in the VM tests
  docker-registry   # a real registry for the pull tests (images pushed by skopeo)
  crun              # the reference runtime of the container benchmark (make bench-images)
  etcd-server etcd-client  # etcd 3.4: the reference of keel's etcd v2 API (differential tests)
  wrk               # the load generator of the KV benchmark (make bench-kv)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
