# Flint: `make run` builds and runs the example, `make test` is what CI runs (.ci/run).
# Everything uses the dev profile, so melior/MLIR is compiled once and shared by all targets.
# Set CARGO_TARGET_DIR to share one build directory between checkouts.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: deps build run test check-snapshots conformance bench embed

deps:
	./scripts/install-deps.sh

build:
	$(CARGO) build --workspace

# Compiles the MLP into an artifact, runs it through the runtime and times it.
FLINT = $(CARGO) run -q -p flint-compiler --bin flint --
run: deps build
	$(FLINT) compile examples/mlp.tg -o target/mlp.tgx
	$(FLINT) run target/mlp.tgx --out target/mlp-out
	$(FLINT) bench target/mlp.tgx

# INSTA_UPDATE=no: a snapshot mismatch or a missing snapshot fails and writes no .snap.new.
# CI=true: tests that would skip a check for a missing tool (e.g. ptxas) fail instead.
test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	# The runtime-only flint a GPU check carries (scripts/gpu-prepare.sh) builds without MLIR.
	$(CARGO) check --locked -p flint-compiler --no-default-features --bin flint
	INSTA_UPDATE=no CI=true $(CARGO) test --workspace --locked
	$(MAKE) --no-print-directory check-snapshots
	$(MAKE) --no-print-directory embed
	./scripts/python-test.sh

# The embedding examples against one artifact (the ONNX MLP with its weights inside): the Rust
# app (flint-runtime alone) and the C app (flint.h, linked through pkg-config).
EMBED = target/embed
embed:
	mkdir -p $(EMBED)
	$(FLINT) --dim-bound batch=64 compile examples/onnx/mlp.onnx --embed-weights -o $(EMBED)/mlp.tgx
	$(CARGO) run -q -p embed-rust -- $(EMBED)/mlp.tgx
	$(CARGO) build -q -p flint-runtime
	$(MAKE) --no-print-directory -C examples/embed-c run ARTIFACT=$(abspath $(EMBED)/mlp.tgx)

# Pending insta snapshots mean someone ran the tests without reviewing the result.
check-snapshots:
	@pending="$$(find . -path ./target -prune -o -path ./.git -prune -o \
	    \( -name '*.snap.new' -o -name '*.pending-snap' \) -print)"; \
	if [ -n "$$pending" ]; then \
	    echo "pending insta snapshots (review with cargo insta review, or delete):"; \
	    echo "$$pending"; exit 1; \
	fi

# The ONNX backend node tests (onnx==1.22.0) through import and the reference interpreter;
# writes conformance/RESULTS.md. Slow and needs the Python registry; not part of `make test`.
conformance: deps
	./scripts/conformance.sh

# The memory planner against greedy best-fit on the MiniMalloc benchmarks and the examples, and
# the compile time per stage on a GPT-2-small-shaped stack;
# writes bench/RESULTS.md.
bench: deps
	./scripts/bench.sh
