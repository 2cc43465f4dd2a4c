#!/usr/bin/env bash
# `make demo`: the core loop end to end on the embedded default (SQLite).
# A local chain (anvil, from npm) with a test stablecoin (an ERC-20 with 6
# decimals); a --dev broker watching it, and three providers' `grid agent`s
# with simulated GPUs (8×H100 80GB in AU, 4×A100 40GB in US, 1×RTX 4090 in
# DE). The renter deposits 100 of the stablecoin on chain, searches, rents
# the 8×H100, watches the workload's output (it prints the GPUs it was
# given), stops it; the AU provider withdraws its earnings to its own
# address; then the bill, the earnings, the fee, the on-chain balances before
# and after, and the audit (ledger and chain), checked against each other.
# Last, a lease paid by payment channel (issue 6): the renter rents the
# 8×H100 again with `--pay channel`, locking 10 tUSDC in the PaymentChannels
# contract for the AU host; `grid pay` signs a voucher every 5 s; the renter
# stops; the AU agent closes the channel with the last voucher. The broker
# never holds that money, and the amounts are checked on chain.
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
ANVIL_PID=""
cleanup() {
  for p in $AGENT_PIDS $BROKER_PID $ANVIL_PID; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v[k];console.log(v)})' "$1"; }

# anvil's well-known dev account 2 (local chains only) is the renter: it has
# ether for gas; it gets 110 of the stablecoin (100 to deposit, 10 for a
# payment channel).
RENTER_DEV_ADDR=0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
say "Starting a local chain (anvil), deploying the test stablecoin (6 decimals) and the payment-channel contract"
eval "$(node scripts/chain-demo-env.mjs --dir "$DEMO/chain" --block-time 1 --mint "$RENTER_DEV_ADDR:110000000")"
echo "anvil at $ANVIL_URL (chain $CHAIN_ID, a block a second); token $TOKEN; PaymentChannels $CHANNELS"
printf '%s\n' "$DEV_KEY_1" >"$DEMO/treasury.key"; chmod 600 "$DEMO/treasury.key"
echo "treasury: $DEV_ADDR_1 (its key in $DEMO/treasury.key, mode 0600)"

# The token balances of some addresses, as a stock wallet library reads them.
onchain() {
  node --input-type=module - "$ANVIL_URL" "$TOKEN" "$@" <<'JS'
import { JsonRpcProvider, Contract } from 'ethers';
const [url, token, ...who] = process.argv.slice(2);
const c = new Contract(token, ['function balanceOf(address) view returns (uint256)'], new JsonRpcProvider(url));
for (let i = 0; i < who.length; i += 2) {
  const v = await c.balanceOf(who[i + 1]);
  console.log(`  ${who[i].padEnd(9)} ${who[i + 1]}  ${(Number(v) / 1e6).toFixed(6).padStart(12)} tUSDC`);
}
JS
}

# One address's token balance in base units (micro-tUSDC).
rawbal() {
  node --input-type=module - "$ANVIL_URL" "$TOKEN" "$1" <<'JS'
import { JsonRpcProvider, Contract } from 'ethers';
const [url, token, who] = process.argv.slice(2);
const c = new Contract(token, ['function balanceOf(address) view returns (uint256)'], new JsonRpcProvider(url));
console.log((await c.balanceOf(who)).toString());
JS
}

say "Starting a broker (SQLite at $DEMO/grid.db, 2.5% operator fee, settlement every 2 s, deposits at 2 confirmations)"
"$GRID" broker --db "$DEMO/grid.db" --listen 127.0.0.1:0 --dev --fee-bps 250 --tick 2 --heartbeat 1 \
  --chain-rpc "$ANVIL_URL" --token "$TOKEN" --treasury-key "$DEMO/treasury.key" --confirmations 2 --channels "$CHANNELS" \
  --channel-interval 5 \
  --chain-poll 0.2 --withdraw-min 0.01 >"$DEMO/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$DEMO/broker.log" 2>/dev/null && break; sleep 0.1; done
export GRID_BROKER=$(grep -o 'http://[0-9.:]*' "$DEMO/broker.log")
echo "broker at $GRID_BROKER (pid $BROKER_PID)"

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: the agents run workloads in their own namespaces and cgroups; run as root" >&2
  exit 1
fi

say "Three providers create their keys; the renter imports its wallet's key"
for who in au us de; do
  addr=$("$GRID" keys new --out "$DEMO/$who.key")
  printf '%-7s %s\n' "$who" "$addr"
done
printf '%s' "$DEV_KEY_2" | "$GRID" keys import --out "$DEMO/renter.key" >/dev/null
printf '%-7s %s\n' renter "$("$GRID" --key "$DEMO/renter.key" keys address 2>/dev/null || echo "$RENTER_DEV_ADDR")"
AU_ADDR=$("$GRID" --key "$DEMO/au.key" keys address)
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
# The AU agent also takes leases paid by payment channel (it redeems and
# closes them on chain, so its host address gets a little ether for gas).
start_agent au 8xH100-SXM-80GB AU --datacenter --inet-up 10000 --inet-down 10000 --chain-rpc "$ANVIL_URL"
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

say "On-chain balances before"
onchain renter "$RENTER_DEV_ADDR" provider "$AU_ADDR" treasury "$DEV_ADDR_1"

say "The renter deposits 100 tUSDC: an ERC-20 transfer to the treasury, credited after 2 confirmations"
$RENTER wallet deposit-address
$RENTER wallet deposit 100

say "The renter searches with Vast's query language: every rentable chunk size, cheapest first"
"$GRID" offers search 'num_gpus>=1' --limit 20
say "Why nothing matches: --explain names the clause and the nearest offer"
"$GRID" offers search 'gpu_name=H100_SXM_80GB num_gpus=8 dph<1' --explain | sed 's/^/  /'
OFFER=$("$GRID" offers search 'gpu_name=H100_SXM_80GB num_gpus=8' --json | field offers.0.id)

say "The renter rents 8×H100 (offer $OFFER), signing the order (EIP-712)"
LEASE=$($RENTER leases create "$OFFER" --image host -q -- sh -c \
  'echo "lease on $(hostname): CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES (simulated GPUs: ${GRID_SIMULATED_GPUS:-0})"; i=0; while :; do i=$((i+1)); echo "training step $i"; sleep 1; done')
"$GRID" offers search 'gpu_name=H100_SXM_80GB' --limit 3 | sed 's/^/  /'
echo "(the H100 offers are gone while the lease holds all 8 GPUs; they are rented, as -n shows:)"
"$GRID" offers search 'gpu_name=H100_SXM_80GB rented=true' -n --limit 3 | sed 's/^/  /'


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
AU_BEFORE=$($AU wallet balance --json)

say "The AU provider withdraws its earnings to its own address (the treasury pays, after 2 confirmations)"
$AU wallet withdraw "$EARNED" --wait
AU_AFTER=$($AU wallet balance --json)

say "On-chain balances after"
onchain renter "$RENTER_DEV_ADDR" provider "$AU_ADDR" treasury "$DEV_ADDR_1"

say "Renter's ledger entries"
$RENTER wallet history --limit 8

say "Do they agree? (exact micro-USD arithmetic)"
node - "$L" "$($RENTER wallet balance --json)" "$AU_BEFORE" <<'JS'
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

say "A lease paid by payment channel: the renter locks 10 tUSDC for the AU host; the broker holds none of it"
AU_HOST=$(sed -n 's/.*payee \(0x[0-9a-fA-F]*\).*/\1/p' "$DEMO/agent-au.log" | head -n 1)
node --input-type=module - "$ANVIL_URL" "$AU_HOST" <<'JS'
import { JsonRpcProvider } from 'ethers';
const [url, who] = process.argv.slice(2);
await new JsonRpcProvider(url).send('anvil_setBalance', [who, '0xde0b6b3a7640000']);  // 1 ether for gas
JS
R0=$(rawbal "$RENTER_DEV_ADDR"); P0=$(rawbal "$AU_HOST"); T0=$(rawbal "$DEV_ADDR_1")
CL=$($RENTER leases create "$OFFER" --image host --pay channel --deposit 10 --json -- sh -c 'while :; do sleep 1; done')
CLEASE=$(echo "$CL" | field id); CH=$(echo "$CL" | field channel.id)
echo "  lease $CLEASE, channel $CH (payee: the AU agent's address $AU_HOST)"
for _ in $(seq 1 100); do [ "$($RENTER leases show "$CLEASE" --json | field state)" = running ] && break; sleep 0.2; done
echo "grid pay signs the voucher due each 5-second interval (one interval ahead) and posts it to the broker:"
$RENTER pay --interval-check 1 >"$DEMO/pay.log" 2>&1 &
PAY_PID=$!
sleep 16
kill "$PAY_PID"; wait "$PAY_PID" 2>/dev/null || true
sed 's/^/  /' "$DEMO/pay.log"
echo "The renter stops the lease; the AU agent closes the channel with the last voucher:"
$RENTER leases stop "$CLEASE" >/dev/null
for _ in $(seq 1 150); do [ "$($RENTER leases show "$CLEASE" --json | field channel.closed)" = true ] && break; sleep 0.2; done
grep "channel lease $CLEASE\|lease $CLEASE:" "$DEMO/agent-au.log" | sed 's/^/  /'
CL=$($RENTER leases show "$CLEASE" --json)
printf '  charged %s USD for %s s; best voucher %s; redeemed on chain %s; channel closed: %s\n' \
  "$(echo "$CL" | field charged)" "$(echo "$CL" | field billed_seconds)" "$(echo "$CL" | field channel.voucher.amount)" \
  "$(echo "$CL" | field channel.redeemed)" "$(echo "$CL" | field channel.closed)"
onchain renter "$RENTER_DEV_ADDR" "AU host" "$AU_HOST" contract "$CHANNELS" treasury "$DEV_ADDR_1"
node - "$CL" "$R0" "$(rawbal "$RENTER_DEV_ADDR")" "$P0" "$(rawbal "$AU_HOST")" "$(rawbal "$CHANNELS")" "$T0" "$(rawbal "$DEV_ADDR_1")" <<'JS'
const [l, ...raw] = process.argv.slice(2);
const lease = JSON.parse(l);
const [r0, r1, p0, p1, held, t0, t1] = raw.map(BigInt);
const micros = s => { const [w, f = ""] = s.split("."); return BigInt(w) * 1000000n + BigInt((f + "000000").slice(0, 6)); };
const voucher = micros(lease.channel.voucher.amount);
const checks = [
  ["the AU host was paid exactly the last voucher", p1 - p0 === voucher],
  ["the renter paid exactly that (10 locked, the rest back)", r0 - r1 === voucher],
  ["the broker recorded it as redeemed", micros(lease.channel.redeemed) === voucher],
  ["the charge is within what the vouchers paid", micros(lease.charged) <= voucher],
  ["the contract holds nothing for the closed channel", held === 0n],
  ["the broker's treasury did not move", t1 === t0],
];
let ok = true;
for (const [what, good] of checks) { console.log(`  ${good ? "ok  " : "FAIL"} ${what}`); ok &&= good; }
process.exit(ok ? 0 : 1);
JS

say "Operator audit through the broker: the ledger, every bill, and the treasury's on-chain balance"
$RENTER admin audit | grep -i 'chain\|passed\|FAIL'

say "Operator audit (grid admin audit, read-only on the database)"
kill "$BROKER_PID"; wait "$BROKER_PID" 2>/dev/null || true; BROKER_PID=""
"$GRID" admin audit --db "$DEMO/grid.db"
echo
echo "Demo files are in $DEMO"
