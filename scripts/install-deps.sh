#!/usr/bin/env bash
# Installs what Gridmarket needs on Debian 12, idempotently: the build
# toolchain and libraries, the test tools, and the pinned npm packages.
# Skips apt entirely when every package is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config ccache git
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libsqlite3-dev sqlite3 libpq-dev libssl-dev libsecp256k1-dev libcrypto++-dev libcli11-dev
  prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libclang-rt-14-dev
  postgresql-15 postgresql-client-15
  # The agent's podman runtime (rootful, runc, netavark networking, catatonit
  # for --init) and its test image (busybox-static, the host's sshd), and the
  # ssh client its SSH test logs in with.
  podman runc catatonit netavark aardvark-dns iptables
  busybox-static openssh-server openssh-client
)
# Node.js and npm: use whatever provides the commands (this image ships
# NodeSource's nodejs, which bundles npm and conflicts with Debian's npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  APT_PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  # No service may start during the install (openssh-server would start an
  # sshd, and fail where there is no init to start it with): a policy-rc.d
  # that says no, unless the machine already has one.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm, pinned by the lockfile: ethers.js (the stock wallet the interop tests
# use), anvil (a local EVM chain; its binary is an optional dependency) and
# solc-js (compiles the test token).
if [ ! -d node_modules/ethers ] || [ ! -d node_modules/solc ] ||
   [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] ||
   [ package-lock.json -nt node_modules/.package-lock.json ]; then
  if command -v npm >/dev/null; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    echo "install-deps: npm not found" >&2
    exit 1
  fi
fi
