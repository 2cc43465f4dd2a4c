#!/usr/bin/env bash
# Builds the podman runtime's test image, localhost/grid-test:1, without any
# registry (none is reachable here): a rootfs of busybox-static (the shell and
# the tools) plus the host's sshd with the shared libraries ldd lists, the
# users sshd needs and a host key, loaded with `podman import`.
#
# Idempotent and quick: the image carries a label with the hash of this script
# and of the host's busybox and sshd; when the image exists with the same hash
# nothing is done. Concurrent callers serialise on a lock file.
#
# Usage: scripts/make-test-image.sh [IMAGE]   (as root; needs podman,
# busybox-static and openssh-server, see scripts/install-deps.sh)
set -euo pipefail

IMAGE=${1:-localhost/grid-test:1}
PODMAN=${PODMAN:-podman}
BUSYBOX=/bin/busybox
SSHD=/usr/sbin/sshd

for f in "$BUSYBOX" "$SSHD"; do
  [ -x "$f" ] || { echo "make-test-image: $f missing (apt-get install busybox-static openssh-server)" >&2; exit 1; }
done
command -v "$PODMAN" >/dev/null || { echo "make-test-image: podman missing" >&2; exit 1; }

hash=$(cat "$0" "$BUSYBOX" "$SSHD" | sha256sum | cut -c1-16)
current() {
  "$PODMAN" image inspect --format '{{index .Labels "grid.test-image"}}' "$IMAGE" 2>/dev/null || true
}
[ "$(current)" = "$hash" ] && exit 0

exec 9>/tmp/grid-make-test-image.lock
flock 9
[ "$(current)" = "$hash" ] && exit 0  # another caller built it meanwhile

old_id=$("$PODMAN" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
root=$(mktemp -d /tmp/grid-test-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/ssh,root,tmp,proc,sys,dev,work,var/empty,run/sshd,lib64}
chmod 0700 "$root/root"
chmod 1777 "$root/tmp"
chmod 0755 "$root/var/empty" "$root/run/sshd"

cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# sshd and its libraries, at the paths ldd names (the loader's default
# search path covers them, so no ld.so.cache is needed).
cp "$SSHD" "$root/usr/sbin/sshd"
for lib in $(ldd "$SSHD" | grep -o '/[^ ]*'); do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
sshd:x:74:65534:privilege separation:/run/sshd:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
# Key-only root login; no PAM (the image has none), logs to stderr.
cat >"$root/etc/ssh/sshd_config" <<'EOF'
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
AuthorizedKeysFile .ssh/authorized_keys
PidFile /run/sshd.pid
EOF
# A host key made at build time: this image is for tests only, so every
# container sharing it is acceptable.
ssh-keygen -q -t ed25519 -N '' -C grid-test-image -f "$root/etc/ssh/ssh_host_ed25519_key"

tar -C "$root" -c . | "$PODMAN" import --quiet \
  --change 'CMD ["/bin/sh"]' \
  --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL grid.test-image=$hash" \
  - "$IMAGE" >/dev/null
# The previous build, now untagged, is of no use (fails harmlessly if a
# container still uses it).
[ -n "$old_id" ] && "$PODMAN" rmi "$old_id" >/dev/null 2>&1 || true
echo "make-test-image: built $IMAGE ($hash)"
