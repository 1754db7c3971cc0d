# shellcheck shell=bash disable=SC2034
# The inject route with 10,000 routes configured (generated), else as portcullis-warn.
SYSTEM_DESC="Portcullis inject route with 10,000 routes configured, RUST_LOG=warn"
SYSTEM_SORT=52
SYSTEM_COMPARE="portcullis-warn"
SYSTEM_START_SECONDS=180
system_start() { start_portcullis "$SYS_NAME" "$1" 10000 warn no; }
