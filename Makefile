# twinstream: `make demo` runs the demo, `make test` the whole test suite.
# Every target that builds first installs what it needs and is missing, and
# only that (scripts/install-deps.sh PROFILE, idempotent and silent when
# nothing is missing): the demo needs compilers and libclang; the MQTT demo
# also Mosquitto; the tests also Prometheus, openssl, headless Chromium and the Kafka-compatible
# test broker (built from source once, 12-17 min).
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

deps: ## Install everything any target needs (system packages, rustup components, test broker)
	@bash scripts/install-deps.sh test

# The build, with a word first when it is the long one.
define cargo_build
	@[ -x $(BIN) ] || echo "build: the first build compiles RocksDB from source: about 15 min on 2 cores (later builds take seconds)"
	$(CARGO) build --release
endef

build: ## Build the release binary
	@bash scripts/install-deps.sh build
	$(cargo_build)

# The demo's HTTP API takes writes with this token (never a real secret).
TWINSTREAM_WRITE_TOKEN ?= demo-token
export TWINSTREAM_WRITE_TOKEN

demo: build ## Run the demo topology with the HTTP API on 127.0.0.1:8080 (Ctrl-C stops it cleanly)
	@echo "demo: the operator's view on http://127.0.0.1:8080/ ; the HTTP API beside it (try /twins, /alerts, /metrics); write token: $$TWINSTREAM_WRITE_TOKEN"
	$(BIN) run topologies/demo.yaml

demo-mqtt: ## Run the MQTT demo: local Mosquitto, pumps publishing, commands back
	@bash scripts/install-deps.sh demo-mqtt
	$(cargo_build)
	bash scripts/demo-mqtt.sh

test: deps ## rustfmt check, clippy -D warnings, and all tests (release profile)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	$(CARGO) test --release --no-fail-fast

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
