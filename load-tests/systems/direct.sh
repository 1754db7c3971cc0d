# shellcheck shell=bash disable=SC2034
# The physical limit: the load generator talks to the trivial upstream itself, no proxy.
SYSTEM_DESC="direct to the upstream (no proxy: the limit)"
SYSTEM_SORT=10
SYSTEM_ROLE=limit
system_start() { SYS_PORT="$UPSTREAM_PORT"; SYS_PID=""; }
