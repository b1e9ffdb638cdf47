#!/usr/bin/env bash
# Build keel's kernel from Debian's linux-source-6.1: tinyconfig + the fragments
# in this folder. The result is cached outside the checkout, keyed by a hash of
# the fragments, this script and the source package version, so that repeated
# builds and CI runs on the same machine reuse it (a build takes ~4 min on 2 cores).
#
# usage: [KEEL_KERNEL_WITHOUT="NAME.config ..."] [KEEL_KERNEL_COMPRESSION=lz4] \
#        kernel-config/build.sh OUT_DIR      -> OUT_DIR/bzImage, OUT_DIR/config,
#                                               OUT_DIR/symbols (every Kconfig
#                                               symbol of the source, for the
#                                               hardening check's spelling)
#        kernel-config/build.sh OUT_DIR --efi INITRAMFS.cpio CMDLINE
#                                            -> OUT_DIR/bzImage-efi
# The --efi variant is the same kernel with the (uncompressed) initramfs and
# the command line built in, for the ESP of the UEFI disk image: firmware
# passes neither. It is built in a build tree kept in the cache, so a new
# initramfs only relinks (the first build takes as long as a full one).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR [--efi INITRAMFS.cpio CMDLINE]}
efi_cpio=""
if [ "${2:-}" = --efi ]; then
  efi_cpio=$(realpath "${3:?--efi needs INITRAMFS.cpio}")
  efi_cmdline=${4:?--efi needs CMDLINE}
fi
# Root (CI, make run as root) caches machine-wide; other users in their home.
if [ "$(id -u)" = 0 ]; then default_cache=/var/cache/keel; else default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/keel; fi
cache_root=${KEEL_CACHE_DIR:-$default_cache}
tarball=/usr/src/linux-source-6.1.tar.xz

if [ ! -f "$tarball" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-source-6.1
  else
    echo "kernel: $tarball missing; run: sudo apt-get install linux-source-6.1" >&2
    exit 1
  fi
fi

src_version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
# KEEL_KERNEL_WITHOUT: fragment file names to leave out (the boot
# benchmark's reference kernel is built without 70-hardening.config).
fragments=()
for f in "$here"/*.config; do
  case " ${KEEL_KERNEL_WITHOUT:-} " in *" $(basename "$f") "*) continue ;; esac
  fragments+=("$f")
done
# KEEL_KERNEL_COMPRESSION: how the bzImage is compressed: zstd (keel's kernel)
# or lz4 (the boot benchmark's comparison: larger, faster to unpack).
compression=${KEEL_KERNEL_COMPRESSION:-zstd}
case "$compression" in
  zstd|lz4) ;;
  *) echo "kernel: KEEL_KERNEL_COMPRESSION=$compression: zstd or lz4" >&2; exit 1 ;;
esac
key=$( { echo "$src_version"; echo "compression $compression"; gcc --version | head -1; cat "$here/build.sh"; for f in "${fragments[@]}"; do echo "== $(basename "$f")"; cat "$f"; done; } | sha256sum | cut -c1-16)
dir="$cache_root/kernel/$key"
mkdir -p "$dir" "$out"

# One build at a time per key (make run and make test may race on a fresh machine).
exec 9>"$dir/.lock"
flock 9

# Extract the source into $1 and configure it: tinyconfig + the fragments.
# Every option a fragment asks for must survive olddefconfig: a silently
# dropped option (unmet dependency) is a build error, not a surprise at runtime.
configure() {
  local work=$1
  rm -rf "$work"
  mkdir -p "$work"
  tar -xf "$tarball" -C "$work" --strip-components=1
  make -C "$work" -s tinyconfig
  "$work/scripts/kconfig/merge_config.sh" -m -O "$work" "$work/.config" "${fragments[@]}" >/dev/null
  make -C "$work" -s olddefconfig
  local missing=0 line opt
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*=n) opt=${line%%=*}; if grep -q "^$opt=" "$work/.config"; then echo "kernel: $opt should be off" >&2; missing=1; fi ;;
      CONFIG_*=*) if ! grep -qx "$line" "$work/.config"; then echo "kernel: $line did not survive olddefconfig" >&2; missing=1; fi ;;
    esac
  done < <(cat "${fragments[@]}")
  [ "$missing" = 0 ] || exit 1
}

# Reproducible build identity.
export KBUILD_BUILD_TIMESTAMP="1970-01-01" KBUILD_BUILD_USER=keel KBUILD_BUILD_HOST=keel

if [ -n "$efi_cpio" ]; then
  efi_key=$( { sha256sum < "$efi_cpio"; echo "$efi_cmdline"; } | sha256sum | cut -c1-16)
  if [ ! -f "$dir/efi-$efi_key.bzImage" ]; then
    work="$dir/efi-src"
    if [ ! -f "$work/.keel-configured" ]; then
      echo "kernel: preparing the EFI build tree (cache key $key): a full build the first time" >&2
      configure "$work"
      touch "$work/.keel-configured"
    fi
    cp "$efi_cpio" "$work/keel-initramfs.cpio"
    "$work/scripts/config" --file "$work/.config" \
      --set-str INITRAMFS_SOURCE "$work/keel-initramfs.cpio" \
      --enable INITRAMFS_COMPRESSION_ZSTD \
      --enable CMDLINE_BOOL --set-str CMDLINE "$efi_cmdline" --disable CMDLINE_OVERRIDE
    make -C "$work" -s olddefconfig
    grep -q '^CONFIG_INITRAMFS_COMPRESSION_ZSTD=y' "$work/.config" || { echo "kernel: built-in initramfs is not zstd-compressed" >&2; exit 1; }
    echo "kernel: building the EFI kernel with initramfs $(basename "$efi_cpio") built in" >&2
    make -C "$work" -s -j"$(nproc)" bzImage
    rm -f "$dir"/efi-*.bzImage
    cp "$work/arch/x86/boot/bzImage" "$dir/efi-$efi_key.bzImage.tmp"
    mv "$dir/efi-$efi_key.bzImage.tmp" "$dir/efi-$efi_key.bzImage"
  fi
  cp "$dir/efi-$efi_key.bzImage" "$out/bzImage-efi"
  echo "kernel: $out/bzImage-efi ($(stat -c %s "$out/bzImage-efi") bytes)" >&2
  exit 0
fi

if [ ! -f "$dir/bzImage" ]; then
  echo "kernel: building linux $src_version with keel's config (cache key $key)" >&2
  work="$dir/src"
  configure "$work"
  if [ "$compression" != zstd ]; then
    up=$(echo "$compression" | tr a-z A-Z)
    "$work/scripts/config" --file "$work/.config" --disable KERNEL_ZSTD --enable "KERNEL_$up"
    make -C "$work" -s olddefconfig
    grep -q "^CONFIG_KERNEL_$up=y" "$work/.config" || { echo "kernel: KERNEL_$up did not survive olddefconfig" >&2; exit 1; }
  fi
  make -C "$work" -s -j"$(nproc)" bzImage
  cp "$work/arch/x86/boot/bzImage" "$dir/bzImage.tmp"
  cp "$work/.config" "$dir/config"
  find "$work" -name 'Kconfig*' -not -path "$work/Documentation/*" -print0 \
    | xargs -0 sed -n 's/^[[:space:]]*\(menu\)\{0,1\}config[[:space:]]\{1,\}\([A-Za-z0-9_]*\).*/CONFIG_\2/p' \
    | sort -u > "$dir/symbols"
  mv "$dir/bzImage.tmp" "$dir/bzImage"
  rm -rf "$work"
fi

cp "$dir/bzImage" "$out/bzImage"
cp "$dir/config" "$out/config"
cp "$dir/symbols" "$out/symbols"
echo "kernel: $out/bzImage ($(stat -c %s "$out/bzImage") bytes, cache $dir)" >&2
