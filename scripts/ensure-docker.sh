#!/usr/bin/env bash
# Make a Docker engine answer on this machine, and a local Debian base image exist for the tests.
# Why: no registry is reachable here, so tests cannot pull python:*; they build on a base image made
# with debootstrap from the Debian mirror apt already uses. Idempotent: does nothing that is done.
set -euo pipefail

BASE_IMAGE="${ENVCAP_TEST_BASE_IMAGE:-envcap-test-base:bookworm}"
LOG_DIR="${TMPDIR:-/tmp}"

engine_answers() { docker version >/dev/null 2>&1; }

debian_mirror() {
  # The first plain-HTTP debian mirror named in apt's sources (deb822 or one-line style).
  local m
  m=$(grep -hoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
      | grep -v security | head -n1 | tr -d ' ')
  echo "${m:-http://deb.debian.org/debian}"
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! engine_answers; then
  if ! command -v dockerd >/dev/null 2>&1; then
    echo "ensure-docker: installing docker.io" >&2
    apt_install docker.io
  fi
  echo "ensure-docker: starting dockerd" >&2
  nohup dockerd >"$LOG_DIR/envcap-dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do engine_answers && break; sleep 0.5; done
  engine_answers || { echo "ensure-docker: dockerd did not answer; see $LOG_DIR/envcap-dockerd.log" >&2; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null 2>&1 || { echo "ensure-docker: installing debootstrap" >&2; apt_install debootstrap; }
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/envcap-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs"' EXIT
  echo "ensure-docker: debootstrap bookworm into $rootfs" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" "$(debian_mirror)" >"$LOG_DIR/envcap-debootstrap.log" 2>&1 \
    || { echo "ensure-docker: debootstrap failed; see $LOG_DIR/envcap-debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  echo "ensure-docker: imported $BASE_IMAGE" >&2
fi
echo "$BASE_IMAGE"
