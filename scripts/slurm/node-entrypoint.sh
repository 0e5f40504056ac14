#!/bin/sh
# Starts munged with the cluster's key, then slurmd in the foreground once slurm.conf names this node.
# NODE is the Slurm node name (also the container's hostname); ETC is the controller's folder, mounted read-only.
set -eu
: "${NODE:?}" "${ETC:?}"
install -o munge -g munge -m 0400 "$ETC/munge.key" /etc/munge/munge.key
mkdir -p /run/munge /run/envcap-munge && chown munge:munge /run/munge /run/envcap-munge
runuser -u munge -- munged --socket=/run/envcap-munge/munge.socket --force
for _ in $(seq 1 300); do
  grep -q "^NodeName=$NODE " "$ETC/slurm.conf" 2>/dev/null && break
  sleep 0.2
done
mkdir -p /var/spool/envcap-slurmd
exec slurmd -D -N "$NODE" -f "$ETC/slurm.conf"
