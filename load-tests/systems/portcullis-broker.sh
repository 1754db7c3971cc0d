# shellcheck shell=bash disable=SC2034,SC2153
# A broker route: the gateway reaches the upstream through a real portcullis-agent, which dialed
# the gateway's tunnel listener (TLS, loopback; certificate from a CA made here, trusted by the
# agent) and has the upstream nginx as its origin; else as portcullis-warn (metrics, file audit,
# 10 routes besides this one, RUST_LOG=warn). Pinning: the agent runs on the SUT core with the
# gateway (taskset -c $SUT_CPU; in a deployment it is a second machine, but here its work is part
# of what a tunnelled request costs, and putting it on the load core would take CPU from the load
# generator and hide it): CPU µs/req and RSS are gateway + agent (SYS_MEASURE_PIDS), one core for
# both, so throughput is what one core gives the pair.
SYSTEM_DESC="Portcullis broker route through a real portcullis-agent (TLS tunnel; gateway + agent CPU, one core), RUST_LOG=warn"
SYSTEM_SORT=55
SYSTEM_PATH=/broker/x
SYSTEM_COMPARE="portcullis-warn bare-pingora"

system_start() {
    local port="$1" dir="$WORK/broker" tunnel_port gw token
    mkdir -p "$dir"
    # A retry (the gateway lost a port race) must not leave the previous try's agent dialing.
    if [ -n "${BROKER_AGENT_PID:-}" ]; then kill_tree "$BROKER_AGENT_PID"; fi
    if [ ! -s "$dir/tunnel.pem" ]; then
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$dir/ext.cnf"
        if ! { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
                -subj "/CN=portcullis bench CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" \
            && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$dir/tunnel.key" -out "$dir/tunnel.csr" \
            && openssl x509 -req -in "$dir/tunnel.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
                -CAcreateserial -days 2 -extfile "$dir/ext.cnf" -out "$dir/tunnel.pem"; } >/dev/null 2>&1
        then
            die "openssl could not make the tunnel certificate"
        fi
        token="bench-tunnel-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        printf '%s\n' "$token" > "$dir/agent-token"
        chmod 600 "$dir/agent-token"
    fi
    token="$(head -n1 "$dir/agent-token")"
    tunnel_port="$(pick_port)"
    cat > "$dir/route.toml" <<TOML
[tunnel]
listen = "127.0.0.1:$tunnel_port"
cert = "$dir/tunnel.pem"
key = "$dir/tunnel.key"

[[tunnels]]
name = "bench-dc"
tenant = "bench"
token_sha256 = ["$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)"]

[[routes]]
name = "broker"
tenant = "bench"
path = "/broker"
tunnel = "bench-dc"
target = "http://upstream"
TOML
    start_portcullis "$SYS_NAME" "$port" 10 warn no "$dir/route.toml"
    gw=$SYS_PID
    # If the tunnel port was lost to a race the gateway exits: the harness sees it and retries.
    wait_listening "$tunnel_port" "$gw" "$SYSTEM_START_SECONDS" || return 0
    cat > "$dir/agent.toml" <<TOML
gateways = ["127.0.0.1:$tunnel_port"]
token_file = "$dir/agent-token"
ca_file = "$dir/ca.pem"
agent_id = "bench-agent"

[[origins]]
name = "upstream"
url = "http://127.0.0.1:$UPSTREAM_PORT"
TOML
    spawn "$SYS_NAME-agent" on_sut env PORTCULLIS_AGENT_LOG=warn "${SUT_WRAP[@]}" "$AGENT" --config "$dir/agent.toml"
    local agent=$SPAWN_PID
    BROKER_AGENT_PID=$agent
    SYS_MEASURE_PIDS=("$gw" "$agent")
    # Wait (bounded) until the route answers through the tunnel, so the harness's answer check
    # and warm-up see the connected agent.
    local h args=() i got=""
    for h in "${REQ_HEADERS[@]}"; do args+=(-H "$h"); done
    for i in $(seq 1 600); do
        if [ ! -d "/proc/$gw" ] || [ ! -d "/proc/$agent" ]; then break; fi
        got="$(curl -s -m 5 "${args[@]}" -w ' %{http_code}' "http://127.0.0.1:$port/broker/x" 2>/dev/null || true)"
        [ "$got" = "ok 200" ] && return 0
        sleep 0.05
    done
    log "$SYS_NAME: the tunnel route did not answer 200 (last: $(head -c 200 <<<"$got")); agent log:"
    tail -n 5 "$WORK/logs/$SYS_NAME-agent.log" >&2 || true
}
