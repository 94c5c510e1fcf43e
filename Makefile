# twinstream: `make demo` runs the demo, `make test` the whole test suite.
# Every target that builds installs missing system packages first
# (scripts/install-deps.sh, idempotent and silent when nothing is missing).
#
# Everything is built with ONE cargo profile, release: binary, tests, clippy and
# benches share the RocksDB C++ build (~10 of the ~12.5 min of a clean build).
# The target dir lives outside the repo so fresh clones reuse it.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ifeq ($(strip $(CARGO_TARGET_DIR)),)
CARGO_TARGET_DIR := $(HOME)/.cache/twinstream/target
endif
export CARGO_TARGET_DIR

# cargo from PATH, else rustup's default location (then also put it on PATH so
# cargo-fmt, cargo-clippy and rustup are found).
ifeq ($(shell command -v cargo 2>/dev/null),)
ifneq ($(wildcard $(HOME)/.cargo/bin/cargo),)
export PATH := $(HOME)/.cargo/bin:$(PATH)
endif
endif
CARGO := cargo

# Tools that scripts/install-deps.sh installs with `cargo install`.
CARGO_TOOLS_DIR ?= $(HOME)/.cache/twinstream/tools
export CARGO_TOOLS_DIR
export PATH := $(CARGO_TOOLS_DIR)/bin:$(PATH)

BIN := $(CARGO_TARGET_DIR)/release/twinstream
export TWINSTREAM_BIN := $(BIN)

.PHONY: help deps build demo demo-mqtt test bench check-topologies

help: ## List the targets
	@echo "usage: make TARGET    (CARGO_TARGET_DIR=$(CARGO_TARGET_DIR))"
	@grep -E '^[a-z-]+:.*## ' $(firstword $(MAKEFILE_LIST)) | \
		awk -F':.*## ' '{ printf "  %-18s %s\n", $$1, $$2 }'

deps: ## Install missing system packages and rustup components
	@bash scripts/install-deps.sh

build: deps ## Build the release binary
	$(CARGO) build --release

# The demo's HTTP API takes writes with this token (never a real secret).
TWINSTREAM_WRITE_TOKEN ?= demo-token
export TWINSTREAM_WRITE_TOKEN

demo: build ## Run the demo topology with the HTTP API on 127.0.0.1:8080 (Ctrl-C stops it cleanly)
	@echo "demo: HTTP API on http://127.0.0.1:8080 (try /twins, /alerts, /metrics); write token: $$TWINSTREAM_WRITE_TOKEN"
	$(BIN) run topologies/demo.yaml

demo-mqtt: build ## Run the MQTT demo: local Mosquitto, pumps publishing, commands back
	bash scripts/demo-mqtt.sh

test: deps ## rustfmt check, clippy -D warnings, and all tests (release profile)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) test --release

bench: deps build ## cargo bench, then scripts/bench-replay.sh if present
	$(CARGO) bench
	@if [ -f scripts/bench-replay.sh ]; then \
		echo "bash scripts/bench-replay.sh"; bash scripts/bench-replay.sh; \
	fi

check-topologies: build ## Run `twinstream check` on every topologies/*.yaml
	@failed=0; \
	for t in topologies/*.yaml; do \
		echo "== $$t"; \
		$(BIN) check "$$t" || failed=1; \
	done; \
	exit $$failed
