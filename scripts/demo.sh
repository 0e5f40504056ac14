#!/usr/bin/env bash
# The whole loop on the bundled example (the README's first command): snapshot with its outputs,
# build, replay, outputs compared, the report printed.
#
# Why a script: on a fresh machine there is no engine and no registry, so it first makes a Docker
# engine answer and a local base image exist (scripts/ensure-docker.sh: Debian's docker.io, a
# debootstrap'd bookworm with python3), then records that image as the lock's base. envcap lives in
# its own venv (.venv at the top, as pipx would); the example gets a project venv of its own
# (examples/train/.venv), which `envcap snapshot -- CMD` describes because CMD runs in it.
#
#   bash scripts/demo.sh                 # everything, from nothing
#   ENVCAP_DEMO_EPOCHS=50 bash scripts/demo.sh
#   ENVCAP_DEMO_DIR=/tmp/try bash scripts/demo.sh   # work on a copy of the example there
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
EXAMPLE="$REPO/examples/train"
if [ -n "${ENVCAP_DEMO_DIR:-}" ]; then
  mkdir -p "$ENVCAP_DEMO_DIR"
  cp "$EXAMPLE"/train.py "$EXAMPLE"/requirements.txt "$EXAMPLE"/README.md "$ENVCAP_DEMO_DIR"/
  EXAMPLE="$(cd "$ENVCAP_DEMO_DIR" && pwd)"
fi
EPOCHS="${ENVCAP_DEMO_EPOCHS:-200}"
PYTHON="${PYTHON:-python3}"

say() { printf '\n== %s\n' "$*" >&2; }

say "envcap in its own venv (.venv)"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
ENVCAP="$REPO/.venv/bin/envcap"

say "a container engine and a base image (scripts/ensure-docker.sh)"
BASE_IMAGE="$(bash scripts/ensure-docker.sh | tail -n1)"
echo "base image: $BASE_IMAGE" >&2

say "the example's own venv (examples/train/.venv: $(tr -d '\r' <"$EXAMPLE/requirements.txt" | grep -v '^#' | xargs))"
cd "$EXAMPLE"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt

say "envcap snapshot: run the training here, record the environment and its outputs"
rm -rf out
"$ENVCAP" snapshot --base-image "$BASE_IMAGE" --outputs 'out/*.json' -- .venv/bin/python train.py --epochs "$EPOCHS"

say "envcap build: the lock's image, hermetic (wheels fetched and hash-checked here, installed offline)"
"$ENVCAP" build

say "envcap replay: the same training inside the image, outputs compared, differences explained"
status=0
"$ENVCAP" replay --outputs 'out/*.json' --report .envcap-demo-report.json -- python train.py --epochs "$EPOCHS" || status=$?
echo >&2
echo "the report as JSON: $EXAMPLE/.envcap-demo-report.json; show it again: envcap show <the replay folder above>" >&2
exit "$status"
