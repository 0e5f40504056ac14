#!/usr/bin/env bash
# A small, real Slurm cluster on this machine for envcap's fleet tests (like ensure-docker.sh for the engine).
#
#   bash scripts/ensure-slurm.sh            make it answer (idempotent); prints SLURM_CONF's path last
#   bash scripts/ensure-slurm.sh --status   exit 0 when it answers with every node up, else 1
#   bash scripts/ensure-slurm.sh --stop     stop what this script started (its daemons by pid, its containers)
#
# The cluster: slurmctld, munged and one slurmd ("envcap-host", partition "envcap", the default) on this
# machine; four slurmd nodes in containers on a user-defined network ("node1".."node4", partition "fleet"),
# node3 different on purpose (NumPy from a pip wheel instead of Debian's, OMP_NUM_THREADS=1 from the task
# prolog); and "node9", defined but never started, so a down node is always there to report.
# Everything lives under $ENVCAP_SLURM_ROOT (default /var/lib/envcap-slurm) and its own ports and munge
# socket, so the machine's own /etc/slurm and /etc/munge are left alone. Needs root (slurmd runs tasks).
# Why containers per node: each is its own host (hostname, filesystem, Python) and reaches the controller
# over the network like a compute node, with no second machine.
set -euo pipefail

ROOT="${ENVCAP_SLURM_ROOT:-/var/lib/envcap-slurm}"
ETC="$ROOT/etc"
CONF="$ETC/slurm.conf"
CACHE="${ENVCAP_SLURM_CACHE:-/var/cache/envcap-slurm}"
BASE_IMAGE="${ENVCAP_TEST_BASE_IMAGE:-envcap-test-base:bookworm}"
NETWORK=envcap-slurm
LABEL=io.envcap.test=slurm
NODES=(node1 node2 node3 node4)
ODD_NODE=node3
GHOST_NODE=node9
HOST_NODE=envcap-host
MUNGE_SOCKET=/run/envcap-munge/munge.socket
HERE="$(cd "$(dirname "$0")" && pwd)"
export SLURM_CONF="$CONF"

say() { echo "ensure-slurm: $*" >&2; }
die() { say "$*"; exit 1; }

# ---------------------------------------------------------------------------------------- status
all_up() {
  # Every node but the ghost answers (idle, mixed or allocated, without the not-responding '*').
  local states
  states=$(timeout 10 sinfo --noheader --Node --format='%N %T' 2>/dev/null) || return 1
  local node
  for node in "$HOST_NODE" "${NODES[@]}"; do
    echo "$states" | grep -qE "^$node (idle|mixed|allocated|completing)$" || return 1
  done
}

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pid() {
  # Only a process this script started: the pid file it wrote.
  local file="$1"
  if pid_alive "$file"; then
    local pid; pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop_all() {
  stop_pid "$ROOT/run/slurmd.pid"
  stop_pid "$ROOT/run/slurmctld.pid"
  stop_pid "$ROOT/run/munged.pid"
  local ids
  ids=$(docker ps -aq --filter "label=$LABEL" --filter "label=io.envcap.slurm-node" 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  docker network rm "$NETWORK" >/dev/null 2>&1 || true
}

# One start or stop at a time (two test runs on one machine): the second waits, then finds it up.
lock() { mkdir -p "$ROOT"; exec 9>"$ROOT/.lock"; flock -w 900 9 || die "another ensure-slurm.sh holds $ROOT/.lock"; }

case "${1:-}" in
  --status) all_up; exit $? ;;
  --stop) lock; stop_all; say "stopped"; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (use --status or --stop)" ;;
esac

if all_up; then
  echo "$CONF"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "needs root: slurmd runs the tasks and munged reads the cluster's key"
lock
if all_up; then  # started by whoever held the lock before us
  echo "$CONF"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root: slurmd runs the tasks and munged reads the cluster's key"

# --------------------------------------------------------------------------------------- install
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v srun >/dev/null \
    || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge"
  apt_install slurm-wlm munge
fi
docker version >/dev/null 2>&1 || bash "$HERE/ensure-docker.sh" >/dev/null
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || bash "$HERE/ensure-docker.sh" >/dev/null

stop_all
mkdir -p "$ROOT/run" "$ROOT/log" "$ROOT/ctld" "$ETC" /var/spool/envcap-slurmd "$CACHE/wheels"
chmod 0755 "$ROOT" "$ETC"

# ------------------------------------------------------------------------------ node images (cached)
# The odd node's NumPy: a manylinux wheel fetched once on this machine (containers cannot reach PyPI over
# TLS). Without it the odd node simply has no NumPy, which is still a NumPy difference.
if ! ls "$CACHE"/wheels/numpy-1.26.4-*.whl >/dev/null 2>&1; then
  pip_cmd=$(command -v pip3 || true)
  [ -x "$HERE/../.venv/bin/pip" ] && pip_cmd="$HERE/../.venv/bin/pip"
  if [ -n "$pip_cmd" ]; then
    timeout 300 "$pip_cmd" download -q --disable-pip-version-check --only-binary=:all: --no-deps \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux2014_x86_64 \
      numpy==1.26.4 -d "$CACHE/wheels" >/dev/null 2>&1 || say "could not download numpy 1.26.4; node3 gets no NumPy"
  fi
fi
inputs_digest=$( (cat "$HERE/slurm/Dockerfile" "$HERE/slurm/node-entrypoint.sh"; docker image inspect -f '{{.Id}}' "$BASE_IMAGE";
                  ls "$CACHE/wheels") | sha256sum | cut -c1-12)
build_node_image() {
  local tag="$1" odd="$2"
  docker image inspect "$tag" >/dev/null 2>&1 && return 0
  local context; context=$(mktemp -d "${TMPDIR:-/tmp}/envcap-slurm-image.XXXXXX")
  cp "$HERE/slurm/Dockerfile" "$HERE/slurm/node-entrypoint.sh" "$context/"
  mkdir "$context/wheels"
  [ "$odd" = 0 ] || cp "$CACHE"/wheels/numpy-1.26.4-*.whl "$context/wheels/" 2>/dev/null || true
  say "building $tag (apt-get inside; a few minutes the first time)"
  docker build -q --build-arg "BASE=$BASE_IMAGE" --build-arg "ODD=$odd" --label "$LABEL" -t "$tag" "$context" \
    >"$ROOT/log/image-build.log" 2>&1 || { rm -rf "$context"; die "building $tag failed; see $ROOT/log/image-build.log"; }
  rm -rf "$context"
}
NODE_IMAGE="envcap-slurm-node:$inputs_digest"
ODD_IMAGE="envcap-slurm-node-odd:$inputs_digest"
build_node_image "$NODE_IMAGE" 0
build_node_image "$ODD_IMAGE" 1
# images of earlier inputs (this script's own repositories only)
docker images --format '{{.Repository}}:{{.Tag}}' --filter "label=$LABEL" \
  | grep -E '^envcap-slurm-node(-odd)?:' | grep -v ":$inputs_digest\$" | xargs -r docker rmi >/dev/null 2>&1 || true

# --------------------------------------------------------------------------------------- munge key
if [ ! -s "$ETC/munge.key" ]; then
  dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none
fi
chown munge:munge "$ETC/munge.key"
chmod 0400 "$ETC/munge.key"
cp "$HERE/slurm/task-prolog.sh" "$ETC/task-prolog.sh"
chmod 0755 "$ETC/task-prolog.sh"

# ------------------------------------------------------------------------------ network and nodes
docker network create --label "$LABEL" "$NETWORK" >/dev/null
GATEWAY=$(docker network inspect -f '{{range .IPAM.Config}}{{.Gateway}}{{end}}' "$NETWORK")
[ -n "$GATEWAY" ] || die "the network $NETWORK has no gateway address"
rm -f "$CONF"
declare -A ADDR
for node in "${NODES[@]}"; do
  image="$NODE_IMAGE"; [ "$node" = "$ODD_NODE" ] && image="$ODD_IMAGE"
  docker run -d --name "envcap-slurm-$node" --hostname "$node" --network "$NETWORK" \
    --label "$LABEL" --label "io.envcap.slurm-node=$node" \
    -e "NODE=$node" -e "ETC=$ETC" -v "$ETC:$ETC:ro" "$image" >/dev/null
  ADDR[$node]=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "envcap-slurm-$node")
done

# ------------------------------------------------------------------------------------- slurm.conf
CONTROLLER=$(hostname -s)
{
  cat <<EOF
# Written by envcap's scripts/ensure-slurm.sh for the fleet tests; rewritten on every (re)start.
ClusterName=envcap-test
SlurmctldHost=$CONTROLLER($GATEWAY)
SlurmctldPort=6917
SlurmdPort=6918
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$ROOT/ctld
SlurmctldPidFile=$ROOT/run/slurmctld.pid
SlurmctldLogFile=$ROOT/log/slurmctld.log
SlurmdSpoolDir=/var/spool/envcap-slurmd/%n
SlurmdPidFile=/var/spool/envcap-slurmd/%n.pid
SlurmdLogFile=/var/spool/envcap-slurmd/%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$ETC/task-prolog.sh
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SlurmdParameters=config_overrides
ReturnToService=2
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
MinJobAge=30
KillWait=5
Waittime=0
MessageTimeout=10
NodeName=$HOST_NODE NodeAddr=$GATEWAY CPUs=2 RealMemory=1000 State=UNKNOWN
EOF
  for node in "${NODES[@]}"; do
    echo "NodeName=$node NodeAddr=${ADDR[$node]} CPUs=2 RealMemory=1000 State=UNKNOWN"
  done
  # never started: its address answers nothing (a closed port), so it goes down and stays down
  echo "NodeName=$GHOST_NODE NodeAddr=127.0.0.1 Port=6999 CPUs=2 RealMemory=1000 State=UNKNOWN"
  echo "PartitionName=envcap Nodes=$HOST_NODE Default=YES MaxTime=30 State=UP"
  echo "PartitionName=fleet Nodes=node[1-4],$GHOST_NODE MaxTime=30 State=UP"
} >"$CONF.tmp"
mv "$CONF.tmp" "$CONF"

# ------------------------------------------------------------------------------------- daemons
mkdir -p /run/envcap-munge "$ROOT/munge"
chown munge:munge /run/envcap-munge "$ROOT/munge"
runuser -u munge -- munged 9>&- --socket="$MUNGE_SOCKET" --key-file="$ETC/munge.key" \
  --pid-file=/run/envcap-munge/munged.pid --log-file="$ROOT/munge/munged.log" --seed-file="$ROOT/munge/munged.seed"
for _ in $(seq 1 50); do [ -s /run/envcap-munge/munged.pid ] && break; sleep 0.1; done
cp /run/envcap-munge/munged.pid "$ROOT/run/munged.pid"

slurmctld -c -i -f "$CONF" 9>&-   # -c: a fresh state; the cluster is rebuilt whole, old jobs mean nothing
for _ in $(seq 1 50); do [ -s "$ROOT/run/slurmctld.pid" ] && break; sleep 0.1; done
mkdir -p "/var/spool/envcap-slurmd/$HOST_NODE"
slurmd -N "$HOST_NODE" -f "$CONF" 9>&-
for _ in $(seq 1 50); do [ -s "/var/spool/envcap-slurmd/$HOST_NODE.pid" ] && break; sleep 0.1; done
cp "/var/spool/envcap-slurmd/$HOST_NODE.pid" "$ROOT/run/slurmd.pid"

for _ in $(seq 1 120); do all_up && break; sleep 0.5; done
if ! all_up; then
  sinfo --Node 2>&1 | sed 's/^/ensure-slurm: /' >&2 || true
  die "the nodes did not come up within 60 s; see $ROOT/log/slurmctld.log and /var/spool/envcap-slurmd/*.log"
fi
say "cluster up: $HOST_NODE (partition envcap), ${NODES[*]} and $GHOST_NODE (partition fleet, $GHOST_NODE down)"
echo "$CONF"
