# Starting benchmark gateways from gateway.toml.in (sourced after common.sh).

KEY_SHA="$(printf 'bench-key' | sha256sum | cut -d' ' -f1)"
printf 'bench-admin-token' > "$WORK/admin-token"

# write_config FILE PORT ADMIN METRICS(true|false) AUDIT_SINK(off|file) LABEL
write_config() {
    sed -e "s|@PORT@|$2|g" -e "s|@ADMIN@|$3|g" -e "s|@METRICS@|$4|g" -e "s|@AUDIT_SINK@|$5|g" \
        -e "s|@LABEL@|$6|g" -e "s|@WORK@|$WORK|g" -e "s|@UPSTREAM@|$UPSTREAM_PORT|g" \
        -e "s|@KEY_SHA@|$KEY_SHA|g" "$ROOT/load-tests/gateway.toml.in" > "$1.tmp"
    mv "$1.tmp" "$1"
}

# start_gateway CONFIG PORT -> sets GW_PID
start_gateway() {
    RUST_LOG=warn taskset -c "$SUT_CPU" "$PORTCULLIS" run --threads 1 --config "$1" \
        > "$WORK/gateway-$2.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    wait_port "$2"
}
