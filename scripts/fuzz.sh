#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang-14 and runs
# each briefly from its seed corpus. FUZZ_SECONDS per target (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
SECONDS_PER=${FUZZ_SECONDS:-20}
cmake --preset fuzz >/dev/null
cmake --build build-fuzz -j "$JOBS"
for bin in build-fuzz/fuzz_*; do
  name=${bin#build-fuzz/fuzz_}
  corpus=build-fuzz/corpus/$name
  mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  echo "fuzz $name: ${SECONDS_PER}s"
  "$bin" -max_total_time="$SECONDS_PER" -print_final_stats=0 "$corpus" "${seeds[@]}" 2>&1 | tail -n 3
done
