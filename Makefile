# keel: `make run` boots a node, `make test` runs every test.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TARGET  := x86_64-unknown-linux-gnu
REL     := target/$(TARGET)/release
BUILD   := build
CARGO   ?= cargo
# Reproducible images: every archive entry carries this time.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: help deps doctor kernel kernel-plain binaries keys images bench-images disk netboot run check test vmtest kernel-lz4 kernel-userns bloat bench bench-kv soak fuzz clean

help:
	@echo "make run     build everything and boot a keel node in qemu (Ctrl-A X quits)"
	@echo "make test    make check + the VM tests"
	@echo "make check   the kernel's hardening (kernel-config/hardening.list), cargo fmt --check, clippy -D warnings, unit tests"
	@echo "make doctor  each command the build and tests need, with its version; fails if one is missing"
	@echo "make deps    install the Debian packages keel needs (as root), then check them"
	@echo "make bench   benchmarks: tables + target/bench/{size,boot,image,config,containers,kv}.json"
	@echo "make bench-kv  the KV benchmark alone (keel-etcd against etcd 3.4 under wrk, on the host)"
	@echo "make soak    the KV fault-injection soak, as root (KEEL_SOAK_RUNS=50, KEEL_SOAK_SECS=20, KEEL_SOAK_SEED)"
	@echo "make images  kernel, root images, slots, initramfs variants under build/"
	@echo "make disk    the UEFI disk image build/disk.{img,qcow2}"
	@echo "make keys    a development signing key pair under keys/ (kept if present)"
	@echo "make fuzz    fuzz the cloud-config parser (nightly + cargo-fuzz; FUZZ_SECONDS=60)"

deps:
	scripts/deps.sh

doctor:
	scripts/deps.sh --check

kernel: deps
	kernel-config/build.sh $(BUILD)/kernel

# keel as shipped ($(BUILD)/keel): the release binary without its unwind
# tables. keel is panic=abort and never unwinds; its guard (the panic hook)
# logs, syncs and reboots, and prints no backtrace, so .eh_frame and its
# header were 528 KB that nothing reads (docs/boot.md, size budget).
binaries:
	$(CARGO) build --release --locked -p keel -p keelctl -p keel-image -p keel-testhelpers -p keel-init
	mkdir -p $(BUILD)
	objcopy --remove-section=.eh_frame --remove-section=.eh_frame_hdr $(REL)/keel $(BUILD)/keel.tmp
	mv $(BUILD)/keel.tmp $(BUILD)/keel

# Development signing keys: created once, never overwritten. Slots signed with
# another key are refused by an initramfs that carries this one.
KEYS    := keys
KEY     := $(KEYS)/keel-dev.key
PUBKEY  := $(KEYS)/keel-dev.pub
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
KIMG    := $(REL)/keel-image
CA_BUNDLE ?= /etc/ssl/certs/ca-certificates.crt
BUSYBOX ?= /bin/busybox

keys: binaries
	$(KIMG) keygen --dir $(KEYS)

VARS := --var SRC=$(CURDIR) --var KEEL_BIN=$(BUILD)/keel --var HELPER_BIN=$(REL)/test-helper \
	--var INIT_BIN=$(REL)/keel-init \
	--var FLOOR_BIN=$(REL)/floor-init --var WORK_FLOOR_BIN=$(REL)/work-floor \
	--var PUBKEY=$(PUBKEY) --var BUILD_ID_FILE=$(BUILD)/build-id --var CA_BUNDLE=$(CA_BUNDLE) \
	--var BUSYBOX=$(BUSYBOX) --var BUSYBOX_OCI=$(BUILD)/busybox-oci --var PROBE_OCI=$(BUILD)/probe-oci
IMAGE := $(KIMG) initramfs $(VARS)
SLOT  = $(KIMG) slot --key $(KEY) --version $(VERSION) --build-id $$(cat $(BUILD)/build-id)

# The kernel command line of every boot path: qemu/launch reads the copy in
# $(BUILD)/cmdline, the EFI kernel has it built in, boot.ipxe passes it.
# kexec copies /proc/cmdline, so a parameter missing from one path would stay
# missing after a switch. page_alloc.shuffle=1 turns on the page allocator's
# shuffling (kernel-config/70-hardening.config).
CMDLINE := console=ttyS0 panic=-1 quiet page_alloc.shuffle=1

images: kernel binaries keys
	echo "$(CMDLINE)" > $(BUILD)/cmdline
	$(KIMG) build-id --file $(BUILD)/kernel/bzImage --file $(BUILD)/keel --file $(PUBKEY) > $(BUILD)/build-id
	$(KIMG) oci $(VARS) --spec initramfs/busybox-oci.list --name busybox:latest --zstd \
		--entrypoint /bin/sh --env PATH=/bin --workdir / --out $(BUILD)/busybox-oci
	$(KIMG) oci $(VARS) --spec initramfs/probe-oci.list --name probe:latest \
		--entrypoint /probe --env PATH=/bin --workdir / --out $(BUILD)/probe-oci
	$(KIMG) rootfs $(VARS) --spec initramfs/root.list --out $(BUILD)/root.erofs
	$(KIMG) rootfs $(VARS) --spec initramfs/root.list --spec initramfs/root-test.list --out $(BUILD)/root-test.erofs
	$(SLOT) --root $(BUILD)/root.erofs --out $(BUILD)/root.slot
	$(SLOT) --root $(BUILD)/root-test.erofs --out $(BUILD)/root-test.slot
	$(IMAGE) --spec initramfs/keel.list --spec initramfs/diskless.list --var ROOT_SLOT=$(BUILD)/root.slot \
		--out $(BUILD)/initramfs.cpio.zst
	$(IMAGE) --spec initramfs/keel.list --spec initramfs/diskless.list --var ROOT_SLOT=$(BUILD)/root-test.slot \
		--out $(BUILD)/initramfs-test.cpio.zst
	$(IMAGE) --spec initramfs/keel.list --out $(BUILD)/initramfs-disk.cpio.zst
	$(IMAGE) --spec initramfs/floor.list --out $(BUILD)/initramfs-floor.cpio.zst
	$(IMAGE) --spec initramfs/work-floor.list --var ROOT_SLOT=$(BUILD)/root.slot \
		--out $(BUILD)/initramfs-workfloor.cpio.zst

# The container benchmark's variant (never what users boot): the test root
# plus Debian's crun and its libraries, the reference runtime measured in
# the same VM (initramfs/root-bench.list).
CRUN ?= /usr/bin/crun
bench-images: images
	scripts/crun-libs.sh $(CRUN) > $(BUILD)/crun-libs.list
	$(KIMG) rootfs $(VARS) --var CRUN=$(CRUN) --spec initramfs/root.list --spec initramfs/root-test.list \
		--spec initramfs/root-bench.list --spec $(BUILD)/crun-libs.list --out $(BUILD)/root-bench.erofs
	$(SLOT) --root $(BUILD)/root-bench.erofs --out $(BUILD)/root-bench.slot
	$(IMAGE) --spec initramfs/keel.list --spec initramfs/diskless.list --var ROOT_SLOT=$(BUILD)/root-bench.slot \
		--out $(BUILD)/initramfs-bench.cpio.zst
	# The decompression trade-off (docs/boot.md): make run's initramfs with
	# the root slot (EROFS, LZ4HC inside) in an uncompressed segment after the
	# zstd one, and the whole of it in LZ4 (the kernel reads LZ4's legacy
	# format, lz4 -l), for the LZ4 kernel and the zstd one.
	$(IMAGE) --spec initramfs/keel.list --uncompressed-spec initramfs/diskless.list \
		--var ROOT_SLOT=$(BUILD)/root.slot --out $(BUILD)/initramfs-rawslot.cpio
	$(IMAGE) --spec initramfs/keel.list --spec initramfs/diskless.list --var ROOT_SLOT=$(BUILD)/root.slot \
		--raw --out $(BUILD)/initramfs-diskless.cpio
	lz4 -q -l -12 -f $(BUILD)/initramfs-diskless.cpio $(BUILD)/initramfs.cpio.lz4

# The UEFI cloud disk: the kernel with the disk initramfs and command line
# built in on the ESP, the same OS in slots A and B, and STATE. The network
# comes from DHCP (keel's default), as in any cloud.
disk: images
	$(IMAGE) --spec initramfs/keel.list --raw --out $(BUILD)/initramfs-disk.cpio
	kernel-config/build.sh $(BUILD)/kernel --efi $(BUILD)/initramfs-disk.cpio "$(CMDLINE)"
	$(SLOT) --root $(BUILD)/root.erofs --kernel $(BUILD)/kernel/bzImage \
		--initramfs $(BUILD)/initramfs-disk.cpio.zst --size-mib 20 --out $(BUILD)/slot.img
	mkdir -p $(BUILD)/state
	$(KIMG) disk --efi-kernel $(BUILD)/kernel/bzImage-efi --slot-a $(BUILD)/slot.img --slot-b $(BUILD)/slot.img \
		--state-dir $(BUILD)/state --build-id $$(cat $(BUILD)/build-id) \
		--out $(BUILD)/disk.img --qcow2 $(BUILD)/disk.qcow2

# iPXE: a script next to the kernel and the diskless initramfs. The network
# comes from DHCP (keel's default).
netboot: images
	mkdir -p $(BUILD)/netboot
	cp $(BUILD)/kernel/bzImage $(BUILD)/initramfs.cpio.zst $(BUILD)/netboot/
	$(KIMG) ipxe --cmdline "$(CMDLINE)" --build-id $$(cat $(BUILD)/build-id) --out $(BUILD)/netboot/boot.ipxe

# The demo node: initramfs/demo-config.yaml through fw_cfg runs a web
# container; its port 8080 and the API are forwarded to the host. The API
# serves only mutual TLS: a development PKI under keys/pki (created once,
# kept, like the signing keys; each run renews the node's certificate) gives
# the node its api: section, and keelctl its client config, installed at
# keelctl's default path when nothing is there yet.
DEMO_CONFIG ?= initramfs/demo-config.yaml
PKI := $(KEYS)/pki
KEELCONFIG_HOME := $${XDG_CONFIG_HOME:-$$HOME/.config}/keel/config
run: images
	scripts/demo-config.sh $(REL)/keelctl $(PKI) $(DEMO_CONFIG) $(BUILD)/demo-config.yaml
	@if [ ! -e "$(KEELCONFIG_HOME)" ]; then install -D -m 600 $(PKI)/keelconfig "$(KEELCONFIG_HOME)"; \
		echo "keel: keelctl's client config: $(KEELCONFIG_HOME) (admin certificate of $(PKI))"; \
	elif ! cmp -s $(PKI)/keelconfig "$(KEELCONFIG_HOME)"; then \
		echo "keel: $(KEELCONFIG_HOME) is another client config: use keelctl --config $(PKI)/keelconfig"; fi
	@echo "keel: booting; API https://127.0.0.1:$${KEEL_API_PORT:-9420} (client certificates under $(PKI)), web container http://127.0.0.1:$${KEEL_WEB_PORT:-8080}, KV (etcd v2) http://127.0.0.1:$${KEEL_KV_PORT:-2379}; Ctrl-A X quits"
	KEEL_INTERACTIVE=1 KEEL_API_PORT=$${KEEL_API_PORT:-9420} \
		KEEL_HOSTFWD=tcp:127.0.0.1:$${KEEL_WEB_PORT:-8080}-:8080,tcp:127.0.0.1:$${KEEL_KV_PORT:-2379}-:2379 \
		qemu/launch microvm -fw_cfg name=opt/keel/config,file=$(BUILD)/demo-config.yaml

# Each test that skips (keel-testkit: only where the environment lacks root or
# a command) appends a line to a log; check and test end with the list, since
# libtest hides the output of passing tests. In CI (CI=true) a skip fails.
SKIPS_CHECK  := $(CURDIR)/target/skips-check.log
SKIPS_VMTEST := $(CURDIR)/target/skips-vmtest.log
skip_summary = scripts/skips.sh

check: kernel
	@mkdir -p target && : > $(SKIPS_CHECK)
	kernel-config/check-hardening.sh $(BUILD)/kernel/config $(BUILD)/kernel/symbols
	kernel-config/check-hardening.sh --self-test $(BUILD)/kernel/config $(BUILD)/kernel/symbols
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	KEEL_SKIP_LOG=$(SKIPS_CHECK) $(CARGO) test --workspace --locked --exclude keel-vmtests
	# keel-init ships as its release build, the no_std one (panic = "abort"):
	# lint it and run its tests against that binary too.
	$(CARGO) clippy --release --locked -p keel-init -p keel-sysraw --all-targets -- -D warnings
	KEEL_SKIP_LOG=$(SKIPS_CHECK) $(CARGO) test --release --locked -p keel-init -p keel-sysraw
	@$(skip_summary) $(SKIPS_CHECK)

vmtest: images disk netboot
	@mkdir -p target && : > $(SKIPS_VMTEST)
	KEEL_SKIP_LOG=$(SKIPS_VMTEST) KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) test --locked -p keel-vmtests -- --test-threads=2
	@$(skip_summary) $(SKIPS_VMTEST)

test: deps check vmtest
	@$(skip_summary) $(SKIPS_CHECK) $(SKIPS_VMTEST)

# The boot benchmark's reference kernel: the same fragments without
# 70-hardening.config, so the hardening's cost is measured in the same run.
kernel-plain: deps
	KEEL_KERNEL_WITHOUT=70-hardening.config kernel-config/build.sh $(BUILD)/kernel-plain

# The containers benchmark's kernel: crun, its reference, needs user
# namespaces, which keel's kernel leaves out. The fragments without
# 70-hardening.config plus tests/kernel/userns.config, built by a copy of
# build.sh next to copies of the fragments, so that the other kernels keep
# their cache keys.
kernel-userns: deps
	rm -rf $(BUILD)/kernel-userns.config && mkdir -p $(BUILD)/kernel-userns.config
	cp kernel-config/build.sh kernel-config/*.config $(BUILD)/kernel-userns.config/
	cp tests/kernel/userns.config $(BUILD)/kernel-userns.config/80-bench-userns.config
	KEEL_KERNEL_WITHOUT=70-hardening.config $(BUILD)/kernel-userns.config/build.sh $(BUILD)/kernel-userns

# The boot benchmark's LZ4 kernel: keel's config with an LZ4-compressed
# bzImage instead of zstd (docs/boot.md, the decompression trade-off).
kernel-lz4: deps
	KEEL_KERNEL_COMPRESSION=lz4 kernel-config/build.sh $(BUILD)/kernel-lz4

# cargo bloat reads the keel binary's crates for the size table.
BLOAT_VERSION := 0.12.1
bloat:
	@if [ "$$(cargo bloat --version 2>/dev/null)" != "$(BLOAT_VERSION)" ]; then \
		$(CARGO) install --locked cargo-bloat --version $(BLOAT_VERSION); fi

bench: images bench-images disk netboot kernel-plain kernel-lz4 kernel-userns bloat
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-size-bench
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-bench
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-image-bench
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-config-bench
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-containers-bench
	$(MAKE) --no-print-directory bench-kv

# The KV benchmark needs no image: keel-etcd and Debian's etcd run on the
# host, each under wrk (KEEL_KV_BENCH_SECS, KEEL_KV_BENCH_RUNS).
bench-kv:
	$(CARGO) build --release --locked -p keel-etcd
	KEEL_ETCD_BIN=$(CURDIR)/$(REL)/keel-etcd $(CARGO) run --release --locked -p keel-vmtests --bin keel-kv-bench

# The KV fault-injection soak: three keel-etcd members in network namespaces
# (so it needs root), faults injected at random, every client history checked
# for linearizability and every watch stream for gaps. Not part of make test
# (about 30 s a run). KEEL_SOAK_RUNS (50), KEEL_SOAK_SECS (20), KEEL_SOAK_SEED
# (replays a run's faults); KEEL_SOAK_RUNS=1 KEEL_SOAK_SECS=8 is a quick smoke.
# A failed run keeps its member logs in target/soak/SEED/ and its history in
# target/soak/SEED.json.
soak:
	$(CARGO) build --release --locked -p keel-etcd --features fault-injection
	KEEL_ETCD_BIN=$(CURDIR)/$(REL)/keel-etcd $(CARGO) run --release --locked -p keel-vmtests --bin keel-kv-soak

# The cloud-config parser under libFuzzer. Needs the nightly toolchain and
# cargo-fuzz (cargo install cargo-fuzz); not part of make test. New inputs go
# to fuzz/work/ (not in git); fuzz/corpus/ holds the seeds.
FUZZ_SECONDS ?= 60
fuzz:
	mkdir -p fuzz/work/cloud_config
	cd fuzz && $(CARGO) +nightly fuzz run cloud_config work/cloud_config corpus/cloud_config -- \
		-max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 -max_len=65536

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
