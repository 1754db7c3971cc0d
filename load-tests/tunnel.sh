#!/usr/bin/env bash
# What does a broker tunnel cost? One gateway with two routes to the same nginx: `direct` (a SaaS
# route) and `tunnel` (through a real portcullis-agent on a TLS tunnel). Loaded in turn
# (interleaved rounds, same run): req/s and CPU microseconds per request of the gateway, and of
# the agent for the tunnel route. Then 1 GiB up and 1 GiB down through the tunnel, with the peak
# RSS (VmHWM) of the gateway and the agent. Load averages are printed with the numbers: the
# machine is shared.
#
#   load-tests/tunnel.sh [ROUNDS=3] [SECONDS=10]
#
# Pinning: the gateway on SUT_CPU (0); wrk, nginx and the agent on LOAD_CPU (1) — the agent
# stands for the customer's machine, like the upstream (AGENT_CPU overrides).
source "$(dirname "$0")/common.sh"
ROUNDS="${1:-3}"
SECONDS_PER_RUN="${2:-10}"
AGENT_CPU="${AGENT_CPU:-$LOAD_CPU}"
need wrk nginx openssl curl
build_release
(cd "$ROOT" && cargo build --release --locked -q -p portcullis-broker --bin portcullis-agent)
AGENT="$ROOT/target/release/portcullis-agent"

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# nginx: 200 "ok" from memory, and a 1 GiB file to download.
UPSTREAM_PORT="$(free_port)"
mkdir -p "$WORK/nginx" "$WORK/www"
truncate -s 1G "$WORK/www/big.bin"
# nginx's workers run as another user: let them through to www/ (and no further).
chmod 711 "$WORK"; chmod 755 "$WORK/www"; chmod 644 "$WORK/www/big.bin"
cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_max_body_size 0;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location = /big.bin { root $WORK/www; }
        location / { return 200 "ok"; }
    }
}
NGINX
taskset -c "$LOAD_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
wait_port "$UPSTREAM_PORT"

# nginx answers an upload before reading it; this sink reads every byte of the body (length or
# chunked), then answers with the count.
cat > "$WORK/sink.py" <<'PY'
import socket, sys, threading
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(srv.getsockname()[1]))
import os; os.rename(sys.argv[1] + ".tmp", sys.argv[1])
def serve(conn):
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        headers = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip()
                   for l in head.split(b"\r\n")[1:] if b":" in l}
        got = 0
        if b"content-length" in headers:
            want = int(headers[b"content-length"]) - len(data)
            got = len(data); data = b""
            while want > 0:
                n = conn.recv_into(view, min(want, len(buf)))
                if n == 0:
                    return
                want -= n; got += n
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                while b"\r\n" not in data:
                    data += conn.recv(65536)
                line, data = data.split(b"\r\n", 1)
                size = int(line.split(b";")[0], 16)
                while len(data) < size + 2:
                    more = conn.recv(1 << 20)
                    if not more:
                        return
                    data += more
                got += size; data = data[size + 2:]
                if size == 0:
                    break
        body = str(got).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
taskset -c "$LOAD_CPU" python3 "$WORK/sink.py" "$WORK/sink.port" &
PIDS+=($!)
for _ in $(seq 1 200); do [ -s "$WORK/sink.port" ] && break; sleep 0.05; done
SINK_PORT="$(cat "$WORK/sink.port")"

# A test CA and the tunnel listener's certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=portcullis bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$WORK/tunnel.key" -out "$WORK/tunnel.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$WORK/ext.cnf"
openssl x509 -req -in "$WORK/tunnel.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/ext.cnf" -out "$WORK/tunnel.pem" 2>/dev/null

KEY_SHA="$(printf 'bench-key' | sha256sum | cut -d' ' -f1)"
TOKEN="bench-tunnel-token-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$TOKEN" > "$WORK/agent-token"
TOKEN_SHA="$(printf '%s' "$TOKEN" | sha256sum | cut -d' ' -f1)"
printf 'bench-admin-token' > "$WORK/admin-token"
cat > "$WORK/gateway.toml" <<TOML
[server]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
[admin]
token_file = "$WORK/admin-token"
[tunnel]
listen = "127.0.0.1:0"
cert = "$WORK/tunnel.pem"
key = "$WORK/tunnel.key"
[[tenants]]
id = "bench"
key_sha256 = ["$KEY_SHA"]
[[tunnels]]
name = "bench-dc"
tenant = "bench"
token_sha256 = ["$TOKEN_SHA"]
[[routes]]
name = "direct"
tenant = "bench"
path = "/direct"
target = "http://127.0.0.1:$UPSTREAM_PORT"
allow_destinations = ["127.0.0.0/8"]
[[routes]]
name = "tunnel"
tenant = "bench"
path = "/tunnel"
tunnel = "bench-dc"
target = "http://nginx"
[[routes]]
name = "sink"
tenant = "bench"
path = "/sink"
tunnel = "bench-dc"
target = "http://sink"
TOML

RUST_LOG=warn taskset -c "$SUT_CPU" "$PORTCULLIS" run --threads 1 --config "$WORK/gateway.toml" \
    --ready-file "$WORK/ready.json" > "$WORK/gateway.log" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
for _ in $(seq 1 600); do [ -s "$WORK/ready.json" ] && break; sleep 0.05; done
[ -s "$WORK/ready.json" ] || { echo "the gateway did not start:" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
GW="$(jq -r '.http[0]' "$WORK/ready.json")"
ADMIN="$(jq -r '.admin' "$WORK/ready.json")"
TUNNEL="$(jq -r '.tunnel' "$WORK/ready.json")"

cat > "$WORK/agent.toml" <<TOML
gateways = ["$TUNNEL"]
token_file = "$WORK/agent-token"
ca_file = "$WORK/ca.pem"
agent_id = "bench-agent"
[[origins]]
name = "nginx"
url = "http://127.0.0.1:$UPSTREAM_PORT"
[[origins]]
name = "sink"
url = "http://127.0.0.1:$SINK_PORT"
response_timeout_ms = 600000
TOML
PORTCULLIS_AGENT_LOG=warn taskset -c "$AGENT_CPU" "$AGENT" --config "$WORK/agent.toml" \
    > "$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
for _ in $(seq 1 600); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-portcullis-key: bench-key' "http://$GW/tunnel/warmup" || true)
    [ "$code" = 200 ] && break
    sleep 0.05
done
[ "$code" = 200 ] || { echo "the tunnel route never answered 200 (last $code)" >&2; cat "$WORK/agent.log" >&2; exit 1; }

echo "gateway $GW (tunnel $TUNNEL), gateway on cpu $SUT_CPU, wrk+nginx on cpu $LOAD_CPU, agent on cpu $AGENT_CPU"
echo "load average before: $(loadavg)"
for route in direct tunnel; do run_wrk "http://$GW/$route/warmup" 2 >/dev/null; done

# `nginx` is wrk straight at the upstream: the limit of this rig, for scale.
url_of() { if [ "$1" = nginx ]; then echo "http://127.0.0.1:$UPSTREAM_PORT/x"; else echo "http://$GW/$1/x"; fi; }
declare -A CPU REQ ERR RPS
for route in nginx direct tunnel; do CPU[$route]=0; REQ[$route]=0; ERR[$route]=0; RPS[$route]=0; done
AGENT_CPU_US=0
printf '%-6s %-7s %10s %7s %10s %14s %14s %s\n' round route requests errors req/s gw_cpu_us/req agent_cpu_us/req loadavg
for round in $(seq 1 "$ROUNDS"); do
    for route in nginx direct tunnel; do
        gw_before=$(cpu_us "$GW_PID"); ag_before=$(cpu_us "$AGENT_PID")
        read -r requests errors rps < <(run_wrk "$(url_of "$route")" "$SECONDS_PER_RUN")
        gw_used=$(( $(cpu_us "$GW_PID") - gw_before )); ag_used=$(( $(cpu_us "$AGENT_PID") - ag_before ))
        CPU[$route]=$(( CPU[$route] + gw_used )); REQ[$route]=$(( REQ[$route] + requests ))
        ERR[$route]=$(( ERR[$route] + errors ))
        RPS[$route]=$(echo "${RPS[$route]} + $rps" | bc -l)
        agent_col="-"
        if [ "$route" = tunnel ]; then
            AGENT_CPU_US=$(( AGENT_CPU_US + ag_used ))
            agent_col=$(printf '%.2f' "$(echo "$ag_used / $requests" | bc -l)")
        fi
        printf '%-6s %-7s %10s %7s %10s %14.2f %14s %s\n' "$round" "$route" "$requests" "$errors" \
            "$rps" "$(echo "$gw_used / $requests" | bc -l)" "$agent_col" "$(loadavg)"
    done
done
echo
for route in nginx direct tunnel; do
    printf '%-7s %10.0f req/s mean, %6.2f gateway cpu_us/req, %d requests, %d errors\n' "$route" \
        "$(echo "${RPS[$route]} / $ROUNDS" | bc -l)" "$(echo "${CPU[$route]} / ${REQ[$route]}" | bc -l)" \
        "${REQ[$route]}" "${ERR[$route]}"
done
printf 'agent   %6.2f cpu_us/req on the tunnel route\n' "$(echo "$AGENT_CPU_US / ${REQ[tunnel]}" | bc -l)"
printf 'tunnel / direct throughput: %.2f (target >= 0.6)\n' \
    "$(echo "${RPS[tunnel]} / ${RPS[direct]}" | bc -l)"

# 1 GiB down and 1 GiB up through the tunnel, then the peak RSS of both processes.
bytes_to_agent() {
    curl -s "http://$ADMIN/metrics" | awk '/^portcullis_tunnel_bytes_total\{direction="to_agent"/ {print $2}'
}
rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
echo
echo "peak RSS before streaming: gateway $(rss_kib "$GW_PID") KiB, agent $(rss_kib "$AGENT_PID") KiB"
read -r down_bytes down_s < <(curl -s -o /dev/null -w '%{size_download} %{time_total}\n' \
    -H 'x-portcullis-key: bench-key' "http://$GW/tunnel/big.bin")
up_before=$(bytes_to_agent)
read -r up_code up_bytes up_s < <(curl -s -o "$WORK/upload.out" -w '%{http_code} %{size_upload} %{time_total}\n' \
    -T "$WORK/www/big.bin" -H 'Expect:' -H 'x-portcullis-key: bench-key' "http://$GW/sink/upload")
up_after=$(bytes_to_agent)
printf 'download: %s bytes in %.1f s (%.0f MiB/s)\n' "$down_bytes" "$down_s" "$(echo "$down_bytes / $down_s / 1048576" | bc -l)"
printf 'upload:   %s bytes in %.1f s (%.0f MiB/s), status %s, %s bytes into the tunnel, %s received by the origin\n' \
    "$up_bytes" "$up_s" "$(echo "$up_bytes / $up_s / 1048576" | bc -l)" "$up_code" \
    "$(echo "$up_after - $up_before" | bc)" "$(cat "$WORK/upload.out")"
GW_RSS=$(rss_kib "$GW_PID"); AG_RSS=$(rss_kib "$AGENT_PID")
printf 'peak RSS after 1 GiB each way: gateway %d KiB (%.1f MiB), agent %d KiB (%.1f MiB) (target < 64 MiB each)\n' \
    "$GW_RSS" "$(echo "$GW_RSS / 1024" | bc -l)" "$AG_RSS" "$(echo "$AG_RSS / 1024" | bc -l)"
echo "load average after: $(loadavg)"

[ "${ERR[direct]}" -eq 0 ] && [ "${ERR[tunnel]}" -eq 0 ] || { echo "INVALID RUN: errors" >&2; exit 1; }
[ "$down_bytes" = 1073741824 ] && [ "$up_bytes" = 1073741824 ] && [ "$up_code" = 200 ] \
    && [ "$(cat "$WORK/upload.out")" = 1073741824 ] \
    || { echo "INVALID RUN: a 1 GiB transfer did not complete" >&2; exit 1; }
