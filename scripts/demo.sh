#!/usr/bin/env bash
# `make demo`: the core loop end to end on the embedded default (SQLite).
# A --dev broker and three providers' `grid agent`s with simulated GPUs
# (8×H100 80GB in AU, 4×A100 40GB in US, 1×RTX 4090 in DE); a renter funded
# from the faucet searches, rents the 8×H100, watches the workload's output
# (it prints the GPUs it was given), stops it; then the bill, the provider's
# earnings, the operator's fee and the audit, checked against each other.
#
# No GPU is involved: the agents' GPUs are simulated (a test fixture), and
# every listing below says so. The agents need root for namespaces/cgroups.
set -euo pipefail
cd "$(dirname "$0")/.."
GRID=$PWD/build/grid
DEMO=$(mktemp -d /tmp/grid-demo.XXXXXX)
export GRID_HOME=$DEMO/home GRID_KEY_PASSWORD=demo-password GRID_SCRYPT_N=4096
RUN_SECONDS=${DEMO_RUN_SECONDS:-10}
BROKER_PID=""
AGENT_PIDS=""
cleanup() {
  for p in $AGENT_PIDS $BROKER_PID; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }

say "Starting a broker (SQLite at $DEMO/grid.db, 2.5% operator fee, settlement every 2 s)"
"$GRID" broker --db "$DEMO/grid.db" --listen 127.0.0.1:0 --dev --fee-bps 250 --tick 2 --heartbeat 1 >"$DEMO/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$DEMO/broker.log" 2>/dev/null && break; sleep 0.1; done
export GRID_BROKER=$(grep -o 'http://[0-9.:]*' "$DEMO/broker.log")
echo "broker at $GRID_BROKER (pid $BROKER_PID)"

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: the agents run workloads in their own namespaces and cgroups; run as root" >&2
  exit 1
fi

say "Three providers and a renter create their keys"
for who in au us de renter; do
  addr=$("$GRID" keys new --out "$DEMO/$who.key")
  printf '%-7s %s\n' "$who" "$addr"
done
AU="$GRID --key $DEMO/au.key"; US="$GRID --key $DEMO/us.key"; DE="$GRID --key $DEMO/de.key"
RENTER="$GRID --key $DEMO/renter.key"
chmod 0711 "$DEMO"   # workloads run as unprivileged uids below the agents' state dirs

say "Each provider starts a grid agent on its host (simulated GPUs: no GPU on this machine)"
start_agent() {  # who gpus geo [flags]
  local who=$1 gpus=$2 geo=$3; shift 3
  local token
  token=$($GRID --key "$DEMO/$who.key" provider join-token create --ttl 1h --json | field token)
  "$GRID" agent --join-token "$token" --state-dir "$DEMO/agent-$who" --simulate-gpus "$gpus" \
    --geolocation "$geo" "$@" >"$DEMO/agent-$who.log" 2>&1 &
  AGENT_PIDS="$AGENT_PIDS $!"
  for _ in $(seq 1 100); do grep -q enrolled "$DEMO/agent-$who.log" 2>/dev/null && break; sleep 0.1; done
  sed -n 1p "$DEMO/agent-$who.log"
}
start_agent au 8xH100-SXM-80GB AU --datacenter --inet-up 10000 --inet-down 10000
start_agent us 4xA100-SXM4-40GB US --datacenter --inet-up 5000 --inet-down 5000
start_agent de 1xRTX-4090 DE --inet-up 500 --inet-down 1000

say "Providers set their prices"
M_AU=$($AU machines list --json | field machines.0.id)
M_US=$($US machines list --json | field machines.0.id)
M_DE=$($DE machines list --json | field machines.0.id)
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
LEASE=$($RENTER leases create "$OFFER" --image host -q -- sh -c \
  'echo "lease on $(hostname): CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES (simulated GPUs: ${GRID_SIMULATED_GPUS:-0})"; i=0; while :; do i=$((i+1)); echo "training step $i"; sleep 1; done')
"$GRID" offers search --gpu-name H100_SXM_80GB --limit 3 | sed 's/^/  /'
echo "(the H100 offers are gone while the lease holds all 8 GPUs)"

say "The AU agent starts the workload in its own namespaces; billing starts when it runs"
for _ in $(seq 1 100); do [ "$($RENTER leases show "$LEASE" --json | field state)" = running ] && break; sleep 0.2; done
$RENTER leases show "$LEASE"
for i in $(seq 1 "$RUN_SECONDS"); do
  sleep 1
  printf '\r  %2ss  settled so far: %s USD' "$i" "$($RENTER leases show "$LEASE" --json | field charged)"
done
echo

say "The workload's output, relayed through the broker (grid leases logs)"
$RENTER leases logs "$LEASE" | head -n 6
echo "  …"

say "The renter stops the lease; the agent stops the workload (SIGTERM, grace, SIGKILL)"
$RENTER leases stop "$LEASE"
for _ in $(seq 1 50); do grep -q "stopping lease-$LEASE" "$DEMO/agent-au.log" && break; sleep 0.2; done
grep "lease-$LEASE\|lease $LEASE" "$DEMO/agent-au.log" | sed 's/^/  /' 

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
