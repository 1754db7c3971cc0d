# shellcheck shell=bash disable=SC2034
# The inject route, metrics and file audit on, 10 routes configured, RUST_LOG=warn.
SYSTEM_DESC="Portcullis inject route, metrics + file audit, 10 routes, RUST_LOG=warn"
SYSTEM_SORT=50
SYSTEM_COMPARE="nginx bare-pingora direct"
system_start() { start_portcullis "$SYS_NAME" "$1" 10 warn no; }
