#!/usr/bin/env bash
# A Podman engine on its own Docker-compatible socket, with the test base image in its store, for envcap's
# Podman end-to-end tests (like ensure-docker.sh for Docker).
#
#   bash scripts/ensure-podman.sh           make it answer (idempotent); prints the socket URL, then the base image
#   bash scripts/ensure-podman.sh --status  exit 0 when the socket answers, else 1
#   bash scripts/ensure-podman.sh --stop    stop the service this script started (by its pid file); images stay
#
# Installs Debian's podman (and catatonit, its --init, which Debian does not pull in) when missing. Its
# containers.conf lives in a folder of its own ($ENVCAP_PODMAN_DIR, default /run/envcap-podman) and reaches
# the service through CONTAINERS_CONF, so the machine's /etc/containers stays untouched. Why a
# containers.conf at all: Podman's default ulimits (nofile 1048576) exceed the hard limits of some VMs, and
# then every container fails to start; default_ulimits below fit any machine the tests run on.
# The base image comes from Docker's store when Docker has it (docker save | podman load), else it is made
# with debootstrap as ensure-docker.sh does. Needs root (a rootful Podman, like the tests' dockerd).
set -euo pipefail

DIR="${ENVCAP_PODMAN_DIR:-/run/envcap-podman}"
SOCKET="$DIR/podman.sock"
URL="unix://$SOCKET"
CONF="$DIR/containers.conf"
PID_FILE="$DIR/service.pid"
LOG="$DIR/service.log"
BASE_IMAGE="${ENVCAP_TEST_BASE_IMAGE:-envcap-test-base:bookworm}"
export CONTAINERS_CONF="$CONF"

say() { echo "ensure-podman: $*" >&2; }
die() { say "$*"; exit 1; }

answers() { [ -S "$SOCKET" ] && timeout 10 podman --remote --url "$URL" version >/dev/null 2>&1; }

pid_alive() { [ -s "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

stop_service() {
  # Only the service this script started: the pid in its pid file.
  if pid_alive; then
    local pid; pid=$(cat "$PID_FILE")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE" "$SOCKET"
}

# One start or stop at a time (two test runs on one machine): the second waits, then finds it up.
lock() { mkdir -p "$DIR"; exec 9>"$DIR/.lock"; flock -w 600 9 || die "another ensure-podman.sh holds $DIR/.lock"; }

case "${1:-}" in
  --status) command -v podman >/dev/null 2>&1 && answers; exit $? ;;
  --stop) lock; stop_service; say "stopped"; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (use --status or --stop)" ;;
esac

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

debian_mirror() {
  local m
  m=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
      | grep -v security | head -n1 | tr -d ' ')
  echo "${m:-http://deb.debian.org/debian}"
}

lock

if ! command -v podman >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "podman is not installed and there is no apt-get to install it"
  say "installing podman"
  apt_install podman || die "apt-get could not install podman"
fi
if [ ! -x /usr/libexec/podman/catatonit ] && command -v apt-get >/dev/null 2>&1 \
    && apt-cache show catatonit >/dev/null 2>&1; then
  say "installing catatonit (Podman's --init)"
  apt_install catatonit || say "could not install catatonit; envcap then runs its own stand-in init"
fi

cat >"$CONF.new" <<'EOF'
# Written by envcap's scripts/ensure-podman.sh for its Podman service (CONTAINERS_CONF).
[containers]
# Podman's defaults (nofile=1048576) exceed the hard limits of some VMs: every container would fail to start.
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
EOF
mv "$CONF.new" "$CONF"

if ! answers; then
  stop_service
  say "starting podman system service on $URL"
  # setsid: the service outlives this script (and the shell that ran it) until --stop; 9>&-: not our lock
  CONTAINERS_CONF="$CONF" setsid nohup podman system service --time=0 "$URL" >"$LOG" 2>&1 </dev/null 9>&- &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 60); do answers && break; sleep 0.5; done
  answers || die "podman system service did not answer on $URL; see $LOG"
fi

if ! podman image exists "$BASE_IMAGE"; then
  if command -v docker >/dev/null 2>&1 && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "copying $BASE_IMAGE from Docker's store"
    docker save "$BASE_IMAGE" | podman load -q >/dev/null || die "podman could not load $BASE_IMAGE from Docker"
  else
    command -v debootstrap >/dev/null 2>&1 || { say "installing debootstrap"; apt_install debootstrap; }
    rootfs=$(mktemp -d "${TMPDIR:-/tmp}/envcap-rootfs.XXXXXX")
    trap 'rm -rf "$rootfs"' EXIT
    say "debootstrap bookworm into $rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$(debian_mirror)" >"$DIR/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $DIR/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import -q --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  fi
  podman image exists "$BASE_IMAGE" || die "$BASE_IMAGE is not in Podman's store after loading it"
  say "$BASE_IMAGE is in Podman's store"
fi

echo "$URL"
echo "$BASE_IMAGE"
