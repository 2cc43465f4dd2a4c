#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cc) with clang-14 and runs
# each briefly from its seed corpus: FUZZ_SECONDS per target (default 20),
# with a fixed FUZZ_SEED (default 1) so CI explores the same inputs each time
# and a failure there reproduces here. Long random runs belong offline:
#   FUZZ_SEED=0 FUZZ_SECONDS=3600 bash scripts/fuzz.sh   (0: a random seed)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
SECONDS_PER=${FUZZ_SECONDS:-20}
SEED=${FUZZ_SEED:-1}
cmake --preset fuzz >/dev/null
cmake --build build-fuzz -j "$JOBS"
for bin in build-fuzz/fuzz_*; do
  name=${bin#build-fuzz/fuzz_}
  corpus=build-fuzz/corpus/$name
  mkdir -p "$corpus"
  seeds=()
  [ -d "tests/fuzz/corpus/$name" ] && seeds=("tests/fuzz/corpus/$name")
  echo "fuzz $name: ${SECONDS_PER}s"
  # On a crash libFuzzer exits non-zero (set -o pipefail fails the script)
  # and writes the input to build-fuzz/crash-*; show the whole report.
  if ! "$bin" -seed="$SEED" -max_total_time="$SECONDS_PER" -print_final_stats=0 -artifact_prefix=build-fuzz/ \
      "$corpus" "${seeds[@]}" >"build-fuzz/$name.log" 2>&1; then
    grep -v '^INFO\|^#' "build-fuzz/$name.log" | head -n 60
    echo "fuzz $name FAILED; reproduce with: $bin build-fuzz/crash-*"
    exit 1
  fi
  tail -n 2 "build-fuzz/$name.log"
done
