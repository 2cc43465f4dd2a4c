#!/usr/bin/env bash
# The whole test suite (`make test`): unit tests, functional tests of the real
# binary, short fuzzer runs, then unit and functional tests under ASan+UBSan.
# Assumes `make build` ran (the Makefile does that first).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
export GRID_SOURCE_DIR=$PWD

step() { printf '\n=== %s ===\n' "$*"; }

# PostgreSQL: store_test runs its shared body against a throwaway cluster
# too (scripts/pg-test-cluster.sh), kept for both ctest runs below and
# stopped on any exit, failures and Ctrl-C included. A GRID_TEST_PG_URL
# already set is used as it is.
if [ -z "${GRID_TEST_PG_URL:-}" ]; then
  step "PostgreSQL test cluster"
  PG_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/grid-pg-XXXXXX")
  stop_pg() { bash scripts/pg-test-cluster.sh stop "$PG_TEST_DIR" || true; rm -rf "$PG_TEST_DIR"; }
  trap stop_pg EXIT
  trap 'exit 130' INT TERM
  pg_line=$(bash scripts/pg-test-cluster.sh start "$PG_TEST_DIR")
  export GRID_TEST_PG_URL=${pg_line#GRID_TEST_PG_URL=}
  echo "GRID_TEST_PG_URL=$GRID_TEST_PG_URL"
fi

step "unit tests (build/)"
(cd build && ctest --output-on-failure -j "$JOBS")

step "functional tests of build/grid"
GRID_BIN=$PWD/build/grid node --test --test-concurrency=1 tests/functional/

step "fuzzers, short runs"
bash scripts/fuzz.sh

step "ASan+UBSan build"
cmake --preset sanitize >/dev/null
cmake --build build-sanitize -j "$JOBS"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

step "unit tests under ASan+UBSan"
(cd build-sanitize && ctest --output-on-failure -j "$JOBS")

step "functional tests of build-sanitize/grid"
GRID_BIN=$PWD/build-sanitize/grid GRID_SANITIZED=1 node --test --test-concurrency=1 tests/functional/

step "all tests passed"
