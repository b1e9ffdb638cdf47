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

.PHONY: help deps kernel binaries images run check test vmtest bench clean

help:
	@echo "make run     build everything and boot a keel node in qemu (Ctrl-A X quits)"
	@echo "make test    make check + the VM tests"
	@echo "make check   cargo fmt --check, clippy -D warnings, unit tests"
	@echo "make bench   boot benchmark: table + target/bench/boot.json"
	@echo "make images  kernel + initramfs variants under build/"

deps:
	scripts/deps.sh

kernel: deps
	kernel-config/build.sh $(BUILD)/kernel

binaries:
	$(CARGO) build --release --locked -p keel -p keelctl -p keel-image -p keel-testhelpers

IMAGE := $(REL)/keel-image initramfs --var SRC=$(CURDIR) --var KEEL_BIN=$(REL)/keel \
	--var HELPER_BIN=$(REL)/test-helper --var FLOOR_BIN=$(REL)/floor-init \
	--var WORK_FLOOR_BIN=$(REL)/work-floor

images: kernel binaries
	$(IMAGE) --spec initramfs/keel.list --out $(BUILD)/initramfs.cpio.zst
	$(IMAGE) --spec initramfs/keel.list --spec initramfs/test.list --out $(BUILD)/initramfs-test.cpio.zst
	$(IMAGE) --spec initramfs/floor.list --out $(BUILD)/initramfs-floor.cpio.zst
	$(IMAGE) --spec initramfs/work-floor.list --out $(BUILD)/initramfs-workfloor.cpio.zst

run: images
	@echo "keel: booting; API forwarded to http://127.0.0.1:$${KEEL_API_PORT:-9420}; Ctrl-A X quits"
	KEEL_INTERACTIVE=1 KEEL_API_PORT=$${KEEL_API_PORT:-9420} qemu/launch microvm

check:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) test --workspace --locked --exclude keel-vmtests

vmtest: images
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) test --locked -p keel-vmtests -- --test-threads=2

test: check vmtest

bench: images
	KEEL_BUILD_DIR=$(CURDIR)/$(BUILD) $(CARGO) run --release --locked -p keel-vmtests --bin keel-bench

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
