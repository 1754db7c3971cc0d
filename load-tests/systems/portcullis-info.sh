# shellcheck shell=bash disable=SC2034
# The same at the shipped default log level: one access line per request on stderr.
SYSTEM_DESC="the same at the shipped default RUST_LOG=info (an access line per request)"
SYSTEM_SORT=51
SYSTEM_COMPARE="portcullis-warn nginx bare-pingora direct"
system_start() { start_portcullis "$SYS_NAME" "$1" 10 info no; }
