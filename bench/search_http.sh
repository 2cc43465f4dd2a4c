#!/usr/bin/env bash
# End-to-end offer search (issue 5, "Performance"): `wrk` against the real
# broker's GET /v1/offers for one typical query, side by side with nginx
# serving the very same response bytes as a static file, same machine, same
# run, alternating (GUIDE.md §6). Prints req/s, latency p50/p99 and the ratio
# broker/nginx per round and its median (goal >= 0.5), once against nginx with
# `worker_processes 1` and once with `worker_processes auto`.
#
#   bench/search_http.sh            (GRID_BIN: the grid binary; default build/grid)
#
# Knobs (environment): MACHINES (4500), PROVIDERS (60), ROUNDS (3),
# DURATION (10s), CONNS (64), WRK_THREADS (2), BROKER_THREADS (the broker's
# default when unset), QUERY / ORDER / LIMIT (the search), PERF=1 (also
# `perf record -g` the broker for 5 s during an extra wrk run; report in the
# temp dir, kept with KEEP=1).
# Installs wrk and nginx from Debian with apt if missing. Not part of `make test`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
GRID_BIN="${GRID_BIN:-$root/build/grid}"
MACHINES="${MACHINES:-4500}"
PROVIDERS="${PROVIDERS:-60}"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-64}"
WRK_THREADS="${WRK_THREADS:-2}"
QUERY="${QUERY:-gpu_name=RTX_4090 num_gpus>=2 datacenter=false inet_down>=1000}"
ORDER="${ORDER:-dph}"
LIMIT="${LIMIT:-64}"

# ------------------------------------------------------------------ tools
APT_PACKAGES=(wrk nginx curl)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "search_http: apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  # No service may start during the install (nginx's postinst would start
  # the system nginx on port 80): a policy-rc.d that says no, unless the
  # machine already has one.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    removepolicy=1
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [ -n "${removepolicy:-}" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[ -x "$GRID_BIN" ] || { echo "search_http: $GRID_BIN not found (set GRID_BIN)" >&2; exit 1; }

# ------------------------------------------------------------------ cleanup
tmp="$(mktemp -d /tmp/search-http.XXXXXX)"
chmod 755 "$tmp"  # nginx's workers (user nobody) read the file
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then echo "search_http: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# ------------------------------------------------------------------ broker
broker_args=(broker --db "$tmp/broker.db" --listen 127.0.0.1:0 --dev --tick 60 --fee-bps 0)
[ -n "${BROKER_THREADS:-}" ] && broker_args+=(--threads "$BROKER_THREADS")
mkdir -p "$tmp/home"
GRID_HOME="$tmp/home" "$GRID_BIN" "${broker_args[@]}" >"$tmp/broker.out" 2>"$tmp/broker.err" &
broker_pid=$!
pids+=("$broker_pid")
for _ in $(seq 200); do
  grep -q 'grid broker listening on' "$tmp/broker.out" 2>/dev/null && break
  kill -0 "$broker_pid" 2>/dev/null || { echo "search_http: broker exited:" >&2; cat "$tmp/broker.err" >&2; exit 1; }
  sleep 0.1
done
burl="$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$tmp/broker.out" | head -1)"
[ -n "$burl" ] || { echo "search_http: broker did not start" >&2; exit 1; }

echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ)  nproc=$(nproc)  CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== grid: $GRID_BIN (broker threads: ${BROKER_THREADS:-default}); $("$NGINX" -v 2>&1); $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"

# Refuse an old broker (before the query language) with a clear message.
probe="$(curl -s -o /dev/null -w '%{http_code}' "$burl/v1/offers?q=num_gpus%3E%3D1&limit=0")"
if [ "$probe" != 200 ]; then
  echo "search_http: $GRID_BIN does not answer GET /v1/offers?q= (HTTP $probe): build a broker with the query language" >&2
  exit 1
fi

echo "== loading $MACHINES machines from $PROVIDERS providers through the API"
node "$here/search_http_load.mjs" "$burl" "$MACHINES" "$PROVIDERS"
total_all="$(curl -s "$burl/v1/offers?limit=0&no_default=1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).total))')"
total_live="$(curl -s "$burl/v1/offers?limit=0" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).total))')"
echo "   offers in the market: $total_all ($total_live rentable by the default query)"

# ------------------------------------------------------------------ the query
path="$(node -e 'const [q,o,l]=process.argv.slice(1);console.log("/v1/offers?"+new URLSearchParams({q,order:o,limit:l}).toString().replace(/\+/g,"%20"))' "$QUERY" "$ORDER" "$LIMIT")"
mkdir -p "$tmp/www"
curl -s -f -o "$tmp/www/offers.json" "$burl$path"
node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1]));console.log(`   query: ${r.query}  order: ${r.order}  -> ${r.offers.length} offers of ${r.total} matching`)' "$tmp/www/offers.json"
echo "   GET $path"
echo "   response body: $(stat -c %s "$tmp/www/offers.json") bytes"
chmod 644 "$tmp/www/offers.json"

# ------------------------------------------------------------------ nginx
nport="$(free_port)"
start_nginx() {  # $1: worker_processes
  mkdir -p "$tmp/nginx"
  cat >"$tmp/nginx/nginx.conf" <<EOF
worker_processes $1;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  open_file_cache max=16 inactive=60s;
  open_file_cache_valid 60s;
  types { }
  default_type application/json;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  server {
    listen 127.0.0.1:$nport;
    root $tmp/www;
    location = /v1/offers { try_files /offers.json =404; }
  }
}
EOF
  "$NGINX" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -g 'daemon off;' 2>>"$tmp/nginx/error.log" &
  nginx_pid=$!
  pids+=("$nginx_pid")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$nport/v1/offers" && return 0
    sleep 0.1
  done
  echo "search_http: nginx did not start:" >&2
  cat "$tmp/nginx/error.log" >&2
  exit 1
}
stop_nginx() {
  kill "$nginx_pid" 2>/dev/null || true
  wait "$nginx_pid" 2>/dev/null || true
}
nurl="http://127.0.0.1:$nport$path"

# ------------------------------------------------------------------ wrk
# Runs wrk; prints "req/s p50_ms p99_ms".
bench() {
  wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "$1" >"$tmp/wrk.out" 2>&1 || { cat "$tmp/wrk.out" >&2; exit 1; }
  if grep -q 'Non-2xx\|Socket errors' "$tmp/wrk.out"; then
    echo "   (wrk against ${1%%\?*}: $(grep -h 'Non-2xx\|Socket errors' "$tmp/wrk.out" | tr -s ' ' | tr '\n' ' '))" >&2
  fi
  node -e '
    const t = require("fs").readFileSync(process.argv[1], "utf8");
    const ms = (s) => { const m = /^([\d.]+)(us|ms|s)$/.exec(s); return +m[1] * ({ us: 0.001, ms: 1, s: 1000 })[m[2]]; };
    const rps = +/Requests\/sec:\s+([\d.]+)/.exec(t)[1];
    const p50 = ms(/^\s+50%\s+(\S+)/m.exec(t)[1]);
    const p99 = ms(/^\s+99%\s+(\S+)/m.exec(t)[1]);
    console.log(rps.toFixed(0), p50.toFixed(3), p99.toFixed(3));
  ' "$tmp/wrk.out"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

run_pair() {  # $1: worker_processes
  start_nginx "$1"
  if ! cmp -s <(curl -s "$nurl") <(curl -s "$burl$path"); then
    echo "search_http: nginx's body and the broker's differ" >&2
    exit 1
  fi
  echo
  echo "== nginx worker_processes $1 vs broker: wrk -t$WRK_THREADS -c$CONNS -d$DURATION --latency, $ROUNDS rounds alternating (bodies identical: checked)"
  printf '%-6s %-6s %10s %9s %9s   %-6s %10s %9s %9s   %7s\n' round first "broker r/s" "p50 ms" "p99 ms" "" "nginx r/s" "p50 ms" "p99 ms" ratio
  local ratios=() br=() nr=()
  for r in $(seq "$ROUNDS"); do
    local b n
    if (( r % 2 )); then b="$(bench "$burl$path")"; n="$(bench "$nurl")"; first=broker
    else n="$(bench "$nurl")"; b="$(bench "$burl$path")"; first=nginx; fi
    read -r brps bp50 bp99 <<<"$b"
    read -r nrps np50 np99 <<<"$n"
    ratio="$(awk -v a="$brps" -v b="$nrps" 'BEGIN{printf "%.3f", a/b}')"
    ratios+=("$ratio"); br+=("$brps"); nr+=("$nrps")
    printf '%-6s %-6s %10s %9s %9s   %-6s %10s %9s %9s   %7s\n' "$r" "$first" "$brps" "$bp50" "$bp99" "" "$nrps" "$np50" "$np99" "$ratio"
  done
  # The body must still be the same after the runs (nothing changed the market).
  cmp -s "$tmp/www/offers.json" <(curl -s "$burl$path") || echo "search_http: WARNING: the broker's body changed during the run" >&2
  echo "median: broker $(median "${br[@]}") req/s, nginx $(median "${nr[@]}") req/s, ratio broker/nginx (median of rounds) $(median "${ratios[@]}")  (goal >= 0.5)"
  stop_nginx
}

run_pair 1
run_pair auto

if [ -n "${PERF:-}" ]; then
  echo
  echo "== perf record -F 499 --call-graph dwarf -p $broker_pid -- sleep 4, during wrk -t$WRK_THREADS -c$CONNS against the broker"
  wrk -t"$WRK_THREADS" -c"$CONNS" -d7s "$burl$path" >"$tmp/wrk-perf.out" 2>&1 &
  wrk_pid=$!
  pids+=("$wrk_pid")
  sleep 1
  perf record -F 499 --call-graph dwarf,16384 -o "$tmp/perf.data" -p "$broker_pid" -- sleep 4 >/dev/null 2>"$tmp/perf-record.err" ||
    cat "$tmp/perf-record.err" >&2
  wait "$wrk_pid" || true
  echo "   wrk meanwhile: $(grep 'Requests/sec' "$tmp/wrk-perf.out" | tr -s ' ')"
  echo "   self time (perf report --no-children --sort symbol -g none):"
  perf report -i "$tmp/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 1.5 2>/dev/null |
    grep '%' | sed 's/ *$//' | cut -c1-150 || true
  echo "   with callees (--children), the broker's own frames and boost::json only:"
  perf report -i "$tmp/perf.data" --children --sort symbol --stdio -g none --percent-limit 3 2>/dev/null |
    grep '%' | grep -v 'asio\|beast::\|(inlined)\|0x0000\|clone3\|start_thread\|_Function_handler' | sed 's/ *$//' | cut -c1-150 || true
  echo "   (perf data: $tmp/perf.data; KEEP=1 keeps it)"
fi
