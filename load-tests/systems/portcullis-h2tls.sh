# shellcheck shell=bash disable=SC2034
# Portcullis with a TLS listener (h2 by ALPN), else as portcullis-warn.
SYSTEM_DESC="Portcullis inject route, h2 over TLS downstream, RUST_LOG=warn"
SYSTEM_SORT=71
SYSTEM_PROTO=h2tls
SYSTEM_COMPARE="nginx-h2tls portcullis-warn"
system_start() { start_portcullis "$SYS_NAME" "$1" 10 warn yes; }
