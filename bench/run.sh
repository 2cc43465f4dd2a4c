#!/usr/bin/env bash
# Runs the bench/ programs (GUIDE.md §6). `make bench` builds into build/ and
# calls this; BENCH_BIN=/path/to/build/bench overrides where the binaries are.
# Extra arguments go to bench_ledger (e.g. --rounds 5 --seconds 10).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${BENCH_BIN:-$here/../build/bench}"
for b in bench_ledger bench_memory bench_heartbeat bench_recover bench_search bench_voucher bench_pg_settle; do
  if [[ ! -x "$bin/$b" ]]; then
    echo "bench/run.sh: $bin/$b not found; build first (make build, or set BENCH_BIN)" >&2
    exit 1
  fi
done

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo
echo "== bench_ledger: durable settlement transfers/s via Broker::SettleAll (SQLite, synchronous=FULL) vs pgbench TPC-B (fsync on)"
"$bin/bench_ledger" "$@"
echo
echo "== bench_memory: broker RSS, 100,000 machines + 10,000 running leases, SQLite store"
"$bin/bench_memory" --store sqlite
echo
echo "== bench_memory: the same with the in-memory store (RSS = broker + the store's own copy)"
"$bin/bench_memory" --store memory
echo
echo "== bench_heartbeat: the real broker (build/grid) while 10,000 agents heartbeat every 10 s (~80 s)"
"$bin/bench_heartbeat" --grid "${GRID_BIN:-$bin/../grid}"
echo
echo "== bench_recover: signature recoveries/s, crypto::RecoverSigner vs raw libsecp256k1 + Keccak, 7 alternating rounds of 1 s (~16 s)"
"$bin/bench_recover"
echo
echo "== bench_voucher: payment-channel voucher verifications/s vs raw libsecp256k1 recover"
"$bin/bench_voucher"
echo
echo "== bench_search: the offer index vs SQLite with its best indexes, 1,000,000 offers, 28 searches (~3 min)"
"$bin/bench_search" --rounds 3 --reps 10
echo
echo "== deposits_bench: 1,000 ERC-20 deposits mined into 4 blocks on anvil, credited by the real broker; 3 rounds (~40 s)"
node "$here/deposits_bench.mjs" --grid "${GRID_BIN:-$bin/../grid}"
echo
echo "== bench_pg_settle: durable settlement transfers/s via Broker::SettleAll on PostgreSQL vs pgbench TPC-B, same cluster (~2 min)"
"$bin/bench_pg_settle"
echo
echo "== replicas_bench: lease creations/s with 1 and 2 broker replicas on PostgreSQL, offer-index staleness (~3 min)"
node "$here/replicas_bench.mjs" --grid "${GRID_BIN:-$bin/../grid}"
# Not run here: bench/search_http.sh (installs wrk and nginx; wrk vs nginx on
# GET /v1/offers) and (5+ minutes, needs root) build/bench/bench_start_latency
