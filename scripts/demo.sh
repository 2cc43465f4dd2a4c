#!/usr/bin/env bash
# `make demo`: the core loop end to end on the embedded default (SQLite).
# A --dev broker, three providers' machines, a renter funded from the faucet
# who searches, rents 8×H100, runs ~10 s (the host side is driven through the
# host API until the agent exists), stops; then the bill, the provider's
# earnings, the operator's fee and the audit, checked against each other.
#
# No GPU is involved: the demo machines are hand-written specs marked
# "simulated": true, and every listing below says so.
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=$PWD/build/grid
DEMO=$(mktemp -d /tmp/grid-demo.XXXXXX)
export GRID_HOME=$DEMO/home GRID_KEY_PASSWORD=demo-password GRID_SCRYPT_N=4096
RUN_SECONDS=${DEMO_RUN_SECONDS:-10}
BROKER_PID=""
cleanup() { [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }

say "Starting a broker (SQLite at $DEMO/grid.db, 2.5% operator fee, settlement every 2 s)"
"$GRID" broker --db "$DEMO/grid.db" --listen 127.0.0.1:0 --dev --fee-bps 250 --tick 2 >"$DEMO/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$DEMO/broker.log" 2>/dev/null && break; sleep 0.1; done
export GRID_BROKER=$(grep -o 'http://[0-9.:]*' "$DEMO/broker.log")
echo "broker at $GRID_BROKER (pid $BROKER_PID)"

say "Three providers and a renter create their keys"
for who in au us de renter; do
  addr=$("$GRID" keys new --out "$DEMO/$who.key")
  printf '%-7s %s\n' "$who" "$addr"
done
AU="$GRID --key $DEMO/au.key"; US="$GRID --key $DEMO/us.key"; DE="$GRID --key $DEMO/de.key"
RENTER="$GRID --key $DEMO/renter.key"

say "Providers register their machines and list them"
M_AU=$($AU machines register --spec examples/h100-au.json -q)
M_US=$($US machines register --spec examples/a100-us.json -q)
M_DE=$($DE machines register --spec examples/rtx4090-de.json -q)
$AU machines list-offer "$M_AU" --price-gpu 2.10 --min-chunk 1 --end-date 2027-06-30 >/dev/null
$US machines list-offer "$M_US" --price-gpu 1.40 --min-chunk 2 >/dev/null
$DE machines list-offer "$M_DE" --price-gpu 0.35 >/dev/null
$AU machines list

say "The renter gets 100 USD from the dev faucet"
$RENTER wallet faucet 100

say "The renter searches: every chunk size of every listed machine, cheapest first"
"$GRID" offers search --num-gpus 1 --limit 20
OFFER=$("$GRID" offers search --gpu-name H100_SXM_80GB --num-gpus 8 --json | field offers.0.id)

say "The renter rents 8×H100 (offer $OFFER), signing the order (EIP-712)"
LEASE=$($RENTER leases create "$OFFER" --image host -q -- python3 train.py)
$RENTER leases show "$LEASE"
"$GRID" offers search --gpu-name H100_SXM_80GB --limit 3 | sed 's/^/  /'
echo "(the H100 offers are gone while the lease holds all 8 GPUs)"

say "The host reports the workload running; billing starts (${RUN_SECONDS} s)"
$AU leases report "$LEASE" --state running --message "simulated host: started" >/dev/null
for i in $(seq 1 "$RUN_SECONDS"); do
  sleep 1
  printf '\r  %2ss  settled so far: %s USD' "$i" "$($RENTER leases show "$LEASE" --json | field charged)"
done
echo

say "The renter stops the lease"
$RENTER leases stop "$LEASE"

say "The bill"
L=$($RENTER leases show "$LEASE" --json)
PRICE=$(echo "$L" | field price_per_hour); CHARGED=$(echo "$L" | field charged)
FEE=$(echo "$L" | field fee); EARNED=$(echo "$L" | field provider_earned); SECS=$(echo "$L" | field billed_seconds)
printf '  price        %s USD/h for 8 GPUs\n  billed       %s s of running\n  charged      %s USD\n  provider     %s USD\n  operator fee %s USD (2.5%%)\n' \
  "$PRICE" "$SECS" "$CHARGED" "$EARNED" "$FEE"

say "Balances"
echo "renter:";   $RENTER wallet balance | sed 's/^/  /'
echo "provider (AU):"; $AU wallet balance | sed 's/^/  /'

say "Renter's ledger entries"
$RENTER wallet history --limit 8

say "Do they agree? (exact micro-USD arithmetic)"
node - "$L" "$($RENTER wallet balance --json)" "$($AU wallet balance --json)" <<'JS'
const [lease, renter, prov] = process.argv.slice(2).map(JSON.parse);
const micros = s => { const [w, f = ""] = s.split("."); return BigInt(w) * 1000000n + BigInt((f + "000000").slice(0, 6)); };
const price = micros(lease.price_per_hour), charged = micros(lease.charged), fee = micros(lease.fee);
const billedMs = BigInt(Math.round(lease.billed_seconds * 1000));
const checks = [
  ["charged == floor(price × billed_ms / 3,600,000)", charged === price * billedMs / 3600000n],
  ["provider earned + fee == charged", micros(prov.earned) + fee === charged],
  ["renter available == 100 − charged", micros(renter.available) === 100000000n - charged],
  ["nothing left on hold", micros(renter.held) === 0n],
];
let ok = true;
for (const [what, good] of checks) { console.log(`  ${good ? "ok  " : "FAIL"} ${what}`); ok &&= good; }
process.exit(ok ? 0 : 1);
JS

say "Operator audit (grid admin audit, read-only on the database)"
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
"$GRID" admin audit --db "$DEMO/grid.db"
echo
echo "Demo files are in $DEMO"
