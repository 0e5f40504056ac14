#!/bin/sh
# Slurm's TaskProlog: every "export NAME=value" line printed here is set in the task's environment.
# A node that has /etc/envcap-node.env (the odd test node) hands its variables to every task.
[ -r /etc/envcap-node.env ] || exit 0
while IFS= read -r line; do
  case "$line" in *=*) echo "export $line" ;; esac
done < /etc/envcap-node.env
