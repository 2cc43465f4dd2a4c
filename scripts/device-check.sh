#!/usr/bin/env bash
# The provider agent on a real NVIDIA GPU host, end to end (run as root).
#
#   scripts/device-check.sh GRID_BINARY [NVML_DUMP_BINARY] [--simulate SPEC]
#
# 1. What the host says (nvidia-smi, NVML through python's pynvml when there)
#    and, given NVML_DUMP_BINARY (a small program over src/agent/gpu that
#    prints NewNvmlProbe()'s inventory, two health samples and
#    BuildSpecFields), what the agent's own probe reads; the two compared
#    field by field.
# 2. A --dev broker (SQLite in a temp dir, 0.5 s heartbeats, 1 s ticks) and a
#    `grid agent` with the process runtime on this host: the real GPU enrols,
#    its spec and offer say simulated false; a renter leases it with a
#    PyTorch workload that runs bf16 matrix products for WORK_SECONDS (default
#    8) and prints torch.cuda.get_device_name() and CUDA_VISIBLE_DEVICES; the
#    lease logs show it; metering reports gpu_energy_joules > 0 and
#    gpu_utilization_pct > 0 without gpu_simulated; the lease is stopped,
#    billed, and the audit passes (through the broker and offline).
#
# --simulate SPEC (e.g. 1xH200-SXM-141GB) rehearses the flow on a host
# without a GPU: the agent simulates, the workload runs without torch if it
# must, and the GPU checks expect simulated evidence instead.
#
# Environment: OUT (where logs go; default a temp dir), GRID_LIBS (a folder of
# shared libraries put on LD_LIBRARY_PATH for the grid binaries only, so the
# host's python and nvidia-smi keep their own), PYTHON (the script's own
# python, for JSON and pynvml; default the python3 on PATH), WORK_PYTHON (the
# workload's, run as an unprivileged uid; default PYTHON), WORK_SECONDS.
# Prints PASS/FAIL lines and "device-check: N passed, M failed"; exit 1 on any
# failure.
set -uo pipefail

GRID=""; DUMP=""; SIMULATE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --simulate) SIMULATE=$2; shift 2 ;;
    *) if [ -z "$GRID" ]; then GRID=$1; elif [ -z "$DUMP" ]; then DUMP=$1; fi; shift ;;
  esac
done
if [ -z "$GRID" ] || [ ! -x "$GRID" ]; then
  echo "usage: $0 GRID_BINARY [NVML_DUMP_BINARY] [--simulate SPEC]" >&2
  exit 2
fi
GRID=$(readlink -f "$GRID")
[ -n "$DUMP" ] && DUMP=$(readlink -f "$DUMP")
OUT=${OUT:-$(mktemp -d /tmp/device-check-out.XXXXXX)}
mkdir -p "$OUT"
WORK_SECONDS=${WORK_SECONDS:-8}
export PATH="$PATH:/usr/local/nvidia/bin"
PYTHON=${PYTHON:-$(command -v python3)}
WORK_PYTHON=${WORK_PYTHON:-$PYTHON}

PASS=0; FAIL=0
pass() { echo "PASS $*"; PASS=$((PASS + 1)); }
fail() { echo "FAIL $*"; FAIL=$((FAIL + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
section() { printf '\n== %s\n' "$*"; }
g() { LD_LIBRARY_PATH="${GRID_LIBS:+$GRID_LIBS:}${LD_LIBRARY_PATH:-}" "$GRID" "$@"; }
# For `gx … &`: the background job's pid is grid's own (exec), so kill reaches it.
gx() { LD_LIBRARY_PATH="${GRID_LIBS:+$GRID_LIBS:}${LD_LIBRARY_PATH:-}" exec "$GRID" "$@"; }
# jq-less JSON: jget 'expression over j' < json
# One line of JSON, less the lease's command and signed order.
show() { "$PYTHON" -c 'import json,sys; j=json.load(open(sys.argv[1])); [j.pop(k, None) for k in ("command", "order")]; print(json.dumps(j))' "$1"; }
jget() { "$PYTHON" -c 'import json,sys; j=json.load(sys.stdin); v=eval(sys.argv[1]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1"; }

D=$(mktemp -d /tmp/device-check.XXXXXX)
chmod 0711 "$D"
export GRID_HOME=$D/home GRID_KEY_PASSWORD=device-check GRID_SCRYPT_N=4096
BROKER_PID=""; AGENT_PID=""
cleanup() {
  for p in $AGENT_PID $BROKER_PID; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  cp "$D"/*.log "$OUT"/ 2>/dev/null
}
trap cleanup EXIT

section "Host"
{
  uname -a; id; echo "python: $PYTHON"; echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  grep -E 'MemTotal|MemAvailable' /proc/meminfo; nproc
  echo "-- cgroups"; grep cgroup /proc/mounts; cat /proc/self/cgroup
  [ -f /sys/fs/cgroup/cgroup.controllers ] && echo "v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
  echo "-- libnvidia-ml"; ldconfig -p 2>/dev/null | grep -i nvidia-ml; ls -l /dev/nvidia* 2>&1
} 2>&1 | tee "$OUT/host.txt"
SMI=""
if [ -z "$SIMULATE" ]; then
  nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
  SMI=$(nvidia-smi --query-gpu=name,uuid,memory.total,driver_version,compute_cap,pcie.link.gen.max,pcie.link.width.max,power.limit,pci.bus_id,pci.device_id \
    --format=csv,noheader,nounits 2>/dev/null | head -n 1)
  echo "nvidia-smi query: $SMI" | tee -a "$OUT/host.txt"
  nvidia-smi -q 2>/dev/null >"$OUT/nvidia-smi-q.txt"
  nvidia-smi nvlink -s 2>&1 | head -n 20 | tee -a "$OUT/host.txt"
fi
smi() { echo "$SMI" | awk -F', ' -v i="$1" '{print $i}'; }

# NVML's raw answers, independently of the agent (python's nvidia-ml-py).
if [ -z "$SIMULATE" ]; then
  "$PYTHON" - >"$OUT/pynvml.txt" 2>&1 <<'PY'
import pynvml as n
n.nvmlInit()
def s(x): return x.decode() if isinstance(x, bytes) else x
h = n.nvmlDeviceGetHandleByIndex(0)
def t(name, f):
    try: print(f"{name}={f()}")
    except Exception as e: print(f"{name}=ERR {e}")
t("driver_version", lambda: s(n.nvmlSystemGetDriverVersion()))
t("cuda_driver_version", lambda: n.nvmlSystemGetCudaDriverVersion_v2())
t("count", lambda: n.nvmlDeviceGetCount())
t("name", lambda: s(n.nvmlDeviceGetName(h)))
t("uuid", lambda: s(n.nvmlDeviceGetUUID(h)))
t("serial", lambda: s(n.nvmlDeviceGetSerial(h)))
t("memory_total", lambda: n.nvmlDeviceGetMemoryInfo(h).total)
t("cc", lambda: "%d.%d" % n.nvmlDeviceGetCudaComputeCapability(h))
t("pci_bus_id", lambda: s(n.nvmlDeviceGetPciInfo(h).busId))
t("pci_device_id", lambda: "0x%08X" % n.nvmlDeviceGetPciInfo(h).pciDeviceId)
t("pcie_max_gen", lambda: n.nvmlDeviceGetMaxPcieLinkGeneration(h))
t("pcie_gpu_max_gen", lambda: n.nvmlDeviceGetGpuMaxPcieLinkGeneration(h))
t("pcie_curr_gen", lambda: n.nvmlDeviceGetCurrPcieLinkGeneration(h))
t("pcie_max_width", lambda: n.nvmlDeviceGetMaxPcieLinkWidth(h))
t("pcie_curr_width", lambda: n.nvmlDeviceGetCurrPcieLinkWidth(h))
t("power_limit_mw", lambda: n.nvmlDeviceGetPowerManagementLimit(h))
t("enforced_power_limit_mw", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h))
states = []
for link in range(18):
    try: states.append(str(n.nvmlDeviceGetNvLinkState(h, link)))
    except Exception as e: states.append("E")
print("nvlink_states=" + ",".join(states))
print("nvlink_active_links=%d" % states.count("1"))
t("energy_mj", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h))
t("power_mw", lambda: n.nvmlDeviceGetPowerUsage(h))
t("utilization", lambda: n.nvmlDeviceGetUtilizationRates(h).gpu)
t("temperature", lambda: n.nvmlDeviceGetTemperature(h, 0))
PY
  cat "$OUT/pynvml.txt"
fi
nv() { grep "^$1=" "$OUT/pynvml.txt" 2>/dev/null | head -n 1 | cut -d= -f2-; }

section "(a) The agent's NVML probe"
if [ -n "$DUMP" ]; then
  LD_LIBRARY_PATH="${GRID_LIBS:+$GRID_LIBS:}${LD_LIBRARY_PATH:-}" "$DUMP" >"$OUT/probe.txt" 2>&1
  echo "exit $?" >>"$OUT/probe.txt"
  cat "$OUT/probe.txt"
  pr() { grep "^$1=" "$OUT/probe.txt" | head -n 1 | cut -d= -f2-; }
  if [ -z "$SIMULATE" ]; then
    check "probe source is nvml, not simulated ($(pr source), simulated=$(pr simulated))" \
      test "$(pr source)" = nvml -a "$(pr simulated)" = 0
    check "probe sees 1+ GPU ($(pr num_gpus))" test "$(pr num_gpus)" -ge 1
    check "name '$(pr gpu0.name)' = nvidia-smi '$(smi 1)'" test "$(pr gpu0.name)" = "$(smi 1)"
    check "uuid $(pr gpu0.uuid) = nvidia-smi" test "$(pr gpu0.uuid)" = "$(smi 2)"
    check "uuid = pynvml" test "$(pr gpu0.uuid)" = "$(nv uuid)"
    check "memory $(pr gpu0.memory_bytes) B = pynvml $(nv memory_total) B" test "$(pr gpu0.memory_bytes)" = "$(nv memory_total)"
    check "memory in MiB = nvidia-smi $(smi 3) MiB" test $(( $(pr gpu0.memory_bytes) / 1048576 )) = "$(smi 3)"
    check "compute capability $(pr gpu0.cc) = nvidia-smi $(smi 5) and is 9.0" \
      test "$(pr gpu0.cc)" = "$(smi 5)" -a "$(pr gpu0.cc)" = 9.0
    check "driver $(pr driver_version) = nvidia-smi $(smi 4)" test "$(pr driver_version)" = "$(smi 4)"
    cv=$(nv cuda_driver_version)
    check "CUDA $(pr cuda_version) = NVML $cv" test "$(pr cuda_version)" = "$((cv / 1000)).$(((cv % 1000) / 10))"
    check "PCIe gen $(pr gpu0.pcie_gen) = NVML max $(nv pcie_max_gen) (nvidia-smi max $(smi 6))" \
      test "$(pr gpu0.pcie_gen)" = "$(nv pcie_max_gen)"
    check "PCIe width x$(pr gpu0.pcie_width) = NVML max $(nv pcie_max_width) (nvidia-smi $(smi 7))" \
      test "$(pr gpu0.pcie_width)" = "$(nv pcie_max_width)"
    check "power limit $(pr gpu0.power_limit_mw) mW = NVML $(nv power_limit_mw) mW (nvidia-smi $(smi 8) W)" \
      test "$(pr gpu0.power_limit_mw)" = "$(nv power_limit_mw)"
    check "NVLink active links $(pr gpu0.nvlink_active_links) = NVML $(nv nvlink_active_links)" \
      test "$(pr gpu0.nvlink_active_links)" = "$(nv nvlink_active_links)"
    check "PCI device id $(pr gpu0.pci_device_id) = pynvml $(nv pci_device_id)" \
      test "$(pr gpu0.pci_device_id)" = "$(nv pci_device_id)"
    check "health sample has energy and power ($(grep '^health1' "$OUT/probe.txt"))" \
      grep -q '^health1.gpu0 ok=1 .*power_mw=[0-9].*energy_mj=[0-9]' "$OUT/probe.txt"
    check "spec.simulated=false" test "$(pr spec.simulated)" = false
  else
    check "probe without a driver: source none, note says so ($(pr note))" \
      test "$(pr source)" = none -a "$(pr num_gpus)" = 0
  fi
else
  echo "(no NVML dump program given: the probe is checked through the registered spec only)"
fi

section "(b) Broker"
gx broker --db "$D/grid.db" --listen 127.0.0.1:0 --dev --fee-bps 250 --tick 1 --heartbeat 0.5 --host-grace 60 \
  >"$D/broker.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 1 100); do grep -q 'listening on' "$D/broker.log" 2>/dev/null && break; sleep 0.1; done
export GRID_BROKER=$(grep -o 'http://[0-9.:]*' "$D/broker.log" | head -n 1)
check "broker listening at $GRID_BROKER" test -n "$GRID_BROKER"
api() { "$PYTHON" -c 'import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "$GRID_BROKER$1"; }

g keys new --out "$D/provider.key" >/dev/null
g keys new --out "$D/renter.key" >/dev/null
P="g --key $D/provider.key"; R="g --key $D/renter.key"
TOKEN=$($P provider join-token create --ttl 1h --json | jget 'j["token"]')
AGENT_ARGS=(--join-token "$TOKEN" --state-dir "$D/agent" --runtime process --geolocation US --datacenter
            --price-gpu 2.50 --min-chunk 1)
[ -n "$SIMULATE" ] && AGENT_ARGS+=(--simulate-gpus "$SIMULATE")
gx agent "${AGENT_ARGS[@]}" >"$D/agent.log" 2>&1 &
AGENT_PID=$!
for _ in $(seq 1 150); do grep -q enrolled "$D/agent.log" 2>/dev/null && break; sleep 0.1; done
cat "$D/agent.log"
check "agent enrolled" grep -q enrolled "$D/agent.log"
if [ -z "$SIMULATE" ]; then
  check "agent says real GPUs (no SIMULATED)" sh -c "grep enrolled '$D/agent.log' | grep -qv SIMULATED"
fi

section "(b) The registered machine and its offer"
$P machines list --json >"$OUT/machines.json"
show "$OUT/machines.json"
M=$(jget 'j["machines"][0]["id"]' <"$OUT/machines.json")
spec() { jget "j['machines'][0]['spec'].get('$1', j['machines'][0].get('$1'))" <"$OUT/machines.json"; }
for _ in $(seq 1 50); do
  api "/v1/offers?q=machine_id%3D$M" >"$OUT/offers.json" 2>/dev/null
  [ "$(jget 'len(j["offers"])' <"$OUT/offers.json")" -ge 1 ] 2>/dev/null && break; sleep 0.2
done
show "$OUT/offers.json"
OFFER=$(jget 'j["offers"][0]["id"]' <"$OUT/offers.json")
check "an offer for machine $M: $OFFER" test -n "$OFFER"
if [ -z "$SIMULATE" ]; then
  check "spec simulated=false ($(spec simulated))" test "$(spec simulated)" = false
  check "offer simulated=false ($(jget 'j["offers"][0]["simulated"]' <"$OUT/offers.json"))" \
    test "$(jget 'j["offers"][0]["simulated"]' <"$OUT/offers.json")" = false
  check "spec compute_cap=900 ($(spec compute_cap))" test "$(spec compute_cap)" = 900
  check "spec driver_version=$(spec driver_version) = nvidia-smi" test "$(spec driver_version)" = "$(smi 4)"
  echo "spec: gpu_name=$(spec gpu_name) num_gpus=$(spec num_gpus) gpu_ram=$(spec gpu_ram) cuda_vers=$(spec cuda_vers)" \
       "pci_gen=$(spec pci_gen) pcie_bw=$(spec pcie_bw) bw_nvlink=$(spec bw_nvlink) power_limit=$(spec power_limit)" \
       "gpu_family=$(spec gpu_family) gpu_mem_bw=$(spec gpu_mem_bw)"
else
  check "spec simulated=true in a rehearsal" test "$(spec simulated)" = true
fi

section "(b) A renter leases it with a PyTorch workload"
$R wallet faucet 100 >/dev/null
# The workload as `python -c`: the lease has a /tmp of its own.
WORK_PY=$(cat <<PY
import os, sys, time
print("CUDA_VISIBLE_DEVICES=" + os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), flush=True)
try:
    import torch
    ok = torch.cuda.is_available()
except Exception as e:
    print("no torch:", e, flush=True); ok = False
if ok:
    print("torch", torch.__version__, "device_count", torch.cuda.device_count(), flush=True)
    print("DEVICE_NAME=" + torch.cuda.get_device_name(0), "cc", torch.cuda.get_device_capability(0), flush=True)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
    for _ in range(3): c = a @ b
    torch.cuda.synchronize(); t0 = time.time(); n = 0
    while time.time() - t0 < $WORK_SECONDS:
        for _ in range(50): c = a @ b
        torch.cuda.synchronize(); n += 50
    dt = time.time() - t0
    print(f"MATMUL_DONE n={n} seconds={dt:.2f} tflops={2 * 8192**3 * n / dt / 1e12:.0f}", flush=True)
else:
    try:
        import torch; torch.cuda.init()
    except Exception as e:
        print("CUDA unavailable:", e, flush=True)
    print("device nodes:", sorted(x for x in os.listdir("/dev") if x.startswith("nvidia")), flush=True)
    t0 = time.time()
    while time.time() - t0 < $WORK_SECONDS: pass
    print("MATMUL_DONE n=0 (no CUDA)", flush=True)
time.sleep(3600)
PY
)
# The workload runs as an unprivileged host uid: can such a uid use the GPU at all?
if [ -z "$SIMULATE" ] && command -v setpriv >/dev/null; then
  echo "as uid 100999 outside the agent: $(setpriv --reuid=100999 --regid=100999 --clear-groups env HOME=/tmp \
    "$WORK_PYTHON" -c 'import torch; print("torch.cuda.is_available()", torch.cuda.is_available())' 2>&1 | tail -n 2)"
fi
LEASE_ENV=()
[ -n "${LD_LIBRARY_PATH:-}" ] && LEASE_ENV+=(--env "LD_LIBRARY_PATH=$LD_LIBRARY_PATH")
LEASE=$($R leases create "$OFFER" --image host -q "${LEASE_ENV[@]}" -- "$WORK_PYTHON" -c "$WORK_PY")
check "lease created: $LEASE" test -n "$LEASE"
STATE=""
for _ in $(seq 1 100); do
  STATE=$($R leases show "$LEASE" --json | jget 'j["state"]')
  [ "$STATE" = running ] || [ "$STATE" = ended ] && break; sleep 0.2
done
check "lease running ($STATE)" test "$STATE" = running
T0=$(date +%s)
while [ $(( $(date +%s) - T0 )) -lt $((WORK_SECONDS + 90)) ]; do
  $R leases logs "$LEASE" >"$OUT/lease-logs.txt" 2>&1
  grep -q MATMUL_DONE "$OUT/lease-logs.txt" && break
  STATE=$($R leases show "$LEASE" --json | jget 'j["state"]')
  [ "$STATE" != running ] && break
  sleep 1
done
sleep 1.5   # two more heartbeats: metering after the work
$R leases logs "$LEASE" >"$OUT/lease-logs.txt" 2>&1
cat "$OUT/lease-logs.txt"
check "lease logs show the workload finished its matrix products" grep -q MATMUL_DONE "$OUT/lease-logs.txt"
if [ -z "$SIMULATE" ]; then
  check "lease logs: torch.cuda.get_device_name() is an H200 ($(grep -o 'DEVICE_NAME=.*' "$OUT/lease-logs.txt"))" \
    grep -q 'DEVICE_NAME=NVIDIA H200' "$OUT/lease-logs.txt"
  check "lease logs: CUDA_VISIBLE_DEVICES is the GPU's UUID" grep -q "CUDA_VISIBLE_DEVICES=$(smi 2)" "$OUT/lease-logs.txt"
fi
$R leases show "$LEASE" --json >"$OUT/lease-running.json"
show "$OUT/lease-running.json"
met() { jget "(j.get('metering') or {}).get('$1')" <"$OUT/lease-running.json"; }
echo "metering: gpu_energy_joules=$(met gpu_energy_joules) gpu_utilization_pct=$(met gpu_utilization_pct) gpu_simulated=$(met gpu_simulated) wall_seconds=$(met wall_seconds) cpu_seconds=$(met cpu_seconds)"
if [ -z "$SIMULATE" ]; then
  check "metering gpu_energy_joules > 0 ($(met gpu_energy_joules))" \
    "$PYTHON" -c "import sys; sys.exit(0 if float('$(met gpu_energy_joules)' or 0) > 0 else 1)"
  check "metering gpu_utilization_pct > 0 ($(met gpu_utilization_pct))" \
    "$PYTHON" -c "import sys; sys.exit(0 if float('$(met gpu_utilization_pct)' or 0) > 0 else 1)"
  check "metering gpu_simulated absent or false ($(met gpu_simulated))" test "$(met gpu_simulated)" != True -a "$(met gpu_simulated)" != true
else
  check "metering gpu_simulated true in a rehearsal" test "$(met gpu_simulated)" = true
fi

section "(b) Stop, bill, audit"
$R leases stop "$LEASE" >/dev/null
for _ in $(seq 1 100); do STATE=$($R leases show "$LEASE" --json | jget 'j["state"]'); [ "$STATE" = ended ] && break; sleep 0.2; done
sleep 1.5   # a settlement tick after the end
$R leases show "$LEASE" --json >"$OUT/lease-ended.json"
show "$OUT/lease-ended.json"
lf() { jget "j.get('$1')" <"$OUT/lease-ended.json"; }
check "lease ended ($STATE, $(lf end_reason))" test "$STATE" = ended
echo "bill: price_per_hour=$(lf price_per_hour) billed_seconds=$(lf billed_seconds) charged=$(lf charged) fee=$(lf fee) provider_earned=$(lf provider_earned)"
check "charged > 0 ($(lf charged) USD)" "$PYTHON" -c "import sys; sys.exit(0 if float('$(lf charged)') > 0 else 1)"
$R wallet balance | tee "$OUT/renter-balance.txt"
HELD=$($R wallet balance --json | jget 'j["held"]')
check "renter holds nothing after the end (held $HELD)" "$PYTHON" -c "import sys; sys.exit(0 if float('$HELD') == 0 else 1)"
grep "lease" "$D/agent.log"
check "agent stopped the workload" grep -q "stopping lease-$LEASE\|stopping .*$LEASE" "$D/agent.log"
audit_broker() { $R admin audit >"$OUT/audit.txt" 2>&1; }
check "audit through the broker passes" audit_broker
cat "$OUT/audit.txt"
kill "$AGENT_PID" 2>/dev/null; wait "$AGENT_PID" 2>/dev/null; AGENT_PID=""
kill "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null; BROKER_PID=""
check "offline audit passes" sh -c "LD_LIBRARY_PATH='${GRID_LIBS:-}:${LD_LIBRARY_PATH:-}' '$GRID' admin audit --db '$D/grid.db' >>'$OUT/audit.txt' 2>&1"
tail -n 3 "$OUT/audit.txt"

echo
echo "device-check: $PASS passed, $FAIL failed (logs in $OUT)"
[ "$FAIL" -eq 0 ]
