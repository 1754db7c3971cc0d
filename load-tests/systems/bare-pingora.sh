# shellcheck shell=bash disable=SC2034
# Pingora's floor: load-tests/bare-pingora, one fixed peer, one injected header, keep-alive pool.
SYSTEM_DESC="bare Pingora 0.9: one fixed peer, one injected header, upstream keep-alive"
SYSTEM_SORT=30
system_start() {
    spawn "$SYS_NAME" on_sut "$BARE_PINGORA" --listen "127.0.0.1:$1" \
        --upstream "127.0.0.1:$UPSTREAM_PORT" --threads 1
    SYS_PID=$SPAWN_PID
}
