#!/usr/bin/env bash
# Sets up and runs envcap's whole test suite on a fresh Debian 12 machine (the README's second command).
# Creates .venv with the test extra, makes a Docker engine answer (installing Debian's docker.io and
# building a local base image when needed), then runs pytest. The end-to-end tests skip, loudly,
# only where no engine can be started at all.
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

exec .venv/bin/python -m pytest "$@"
