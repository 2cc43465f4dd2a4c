# Gridmarket: the two commands of the README, and the steps they are made of.
# Every target installs what it needs (scripts/install-deps.sh is idempotent).
JOBS ?= $(shell nproc)
export CCACHE_DIR ?= $(CURDIR)/.ccache

.PHONY: all build deps demo test unit functional fuzz sanitize bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build build -j $(JOBS)

demo: build
	@bash scripts/demo.sh

# The whole suite: unit tests, functional tests of the real binary, short
# fuzzer runs, then the unit and functional tests again under ASan+UBSan.
test: build
	@bash scripts/test.sh

unit: build
	@cd build && ctest --output-on-failure -j $(JOBS)

functional: build
	@GRID_BIN=$(CURDIR)/build/grid node --test --test-concurrency=1 tests/functional/

fuzz: deps
	@bash scripts/fuzz.sh

sanitize: deps
	@cmake --preset sanitize >/dev/null
	@cmake --build build-sanitize -j $(JOBS)
	@cd build-sanitize && ctest --output-on-failure -j $(JOBS)

bench: build
	@bash bench/run.sh

clean:
	rm -rf build build-sanitize build-fuzz
