# shellcheck shell=bash disable=SC2034
# nginx proxy_pass configured like the inject route (see write_nginx_proxy_conf in lib).
SYSTEM_DESC="nginx proxy_pass: keep-alive upstream pool, header forward list, one injected header"
SYSTEM_SORT=20
system_start() {
    write_nginx_proxy_conf "$WORK/$SYS_NAME-$1" "$1" no
    spawn "$SYS_NAME" on_sut nginx -c "$WORK/$SYS_NAME-$1/nginx.conf" -p "$WORK/$SYS_NAME-$1"
    SYS_PID=$SPAWN_PID
}
