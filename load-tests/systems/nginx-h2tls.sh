# shellcheck shell=bash disable=SC2034
# nginx with an h2 TLS listener, else as nginx.
SYSTEM_DESC="nginx, h2 over TLS downstream (h2load; oha --http2 for latency)"
SYSTEM_SORT=70
SYSTEM_PROTO=h2tls
system_start() {
    write_nginx_proxy_conf "$WORK/$SYS_NAME-$1" "$1" yes
    spawn "$SYS_NAME" on_sut nginx -c "$WORK/$SYS_NAME-$1/nginx.conf" -p "$WORK/$SYS_NAME-$1"
    SYS_PID=$SPAWN_PID
}
