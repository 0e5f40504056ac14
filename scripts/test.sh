#!/usr/bin/env bash
# Sets up and runs envcap's whole test suite on a fresh Debian 12 machine (the README's second command).
# Creates .venv with the test extra, makes a Docker engine answer (installing Debian's docker.io and
# building a local base image when needed), a small Slurm cluster run (scripts/ensure-slurm.sh: the
# fleet tests) and a Podman service answer (scripts/ensure-podman.sh: the Podman tests), then runs pytest.
# The end-to-end, fleet and Podman tests skip, loudly, only where no engine, no cluster or no Podman can
# be started at all. A cluster or Podman service this script started is stopped again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

if bash scripts/ensure-docker.sh >/tmp/envcap-ensure-docker.out 2>/tmp/envcap-ensure-docker.err; then
  export ENVCAP_TEST_BASE_IMAGE="$(tail -n1 /tmp/envcap-ensure-docker.out)"
  export ENVCAP_DOCKER_STATUS="ready"
else
  echo "!!! no Docker engine could be started; end-to-end tests will be SKIPPED:" >&2
  cat /tmp/envcap-ensure-docker.err >&2 || true
  export ENVCAP_DOCKER_STATUS="unavailable: $(tail -n1 /tmp/envcap-ensure-docker.err 2>/dev/null)"
fi

slurm_was_up=0
bash scripts/ensure-slurm.sh --status >/dev/null 2>&1 && slurm_was_up=1
if [ "$ENVCAP_DOCKER_STATUS" = ready ] \
    && bash scripts/ensure-slurm.sh >/tmp/envcap-ensure-slurm.out 2>/tmp/envcap-ensure-slurm.err; then
  export ENVCAP_SLURM_CONF="$(tail -n1 /tmp/envcap-ensure-slurm.out)"
  export ENVCAP_SLURM_STATUS="ready"
else
  echo "!!! no Slurm cluster could be started; fleet tests will be SKIPPED:" >&2
  cat /tmp/envcap-ensure-slurm.err >&2 || true
  export ENVCAP_SLURM_STATUS="unavailable: $(tail -n1 /tmp/envcap-ensure-slurm.err 2>/dev/null || echo 'no Docker engine')"
fi
stop_slurm() { [ "$slurm_was_up" = 1 ] || bash scripts/ensure-slurm.sh --stop >/dev/null 2>&1 || true; }

podman_was_up=0
bash scripts/ensure-podman.sh --status >/dev/null 2>&1 && podman_was_up=1
if bash scripts/ensure-podman.sh >/tmp/envcap-ensure-podman.out 2>/tmp/envcap-ensure-podman.err; then
  export ENVCAP_PODMAN_HOST="$(tail -n2 /tmp/envcap-ensure-podman.out | head -n1)"
  export ENVCAP_PODMAN_BASE_IMAGE="$(tail -n1 /tmp/envcap-ensure-podman.out)"
  export ENVCAP_PODMAN_STATUS="ready"
else
  echo "!!! no Podman service could be started; Podman end-to-end tests will be SKIPPED:" >&2
  cat /tmp/envcap-ensure-podman.err >&2 || true
  export ENVCAP_PODMAN_STATUS="unavailable: $(tail -n1 /tmp/envcap-ensure-podman.err 2>/dev/null)"
fi
stop_podman() { [ "$podman_was_up" = 1 ] || bash scripts/ensure-podman.sh --stop >/dev/null 2>&1 || true; }
trap 'stop_slurm; stop_podman' EXIT

status=0
.venv/bin/python -m pytest "$@" || status=$?
exit "$status"
