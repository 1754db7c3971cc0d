# shellcheck shell=bash disable=SC2034
# What Backstage runs: express 4 + http-proxy-middleware 2 as proxy-backend configures it.
SYSTEM_DESC="express 4 + http-proxy-middleware 2, as Backstage's proxy-backend (load-tests/node-proxy)"
SYSTEM_SORT=40
SYSTEM_COMPARE="portcullis-warn portcullis-info"
system_start() {
    spawn "$SYS_NAME" on_sut node "$LOAD_TESTS/node-proxy/proxy.js" "$1" "$UPSTREAM_PORT"
    SYS_PID=$SPAWN_PID
}
