# Shared helpers of the load tests. Everything listens on 127.0.0.1; every loop is bounded.
# On a 2-core machine the system under test is pinned to core 0 and the load generator and the
# upstream to core 1 (override with SUT_CPU / LOAD_CPU).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUT_CPU="${SUT_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
WORK="$(mktemp -d /tmp/portcullis-load.XXXXXX)"
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    for tool in "$@"; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "installing $tool" >&2
            apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null
        fi
    done
}

build_release() {
    (cd "$ROOT" && ./dev build-release >/dev/null)
    PORTCULLIS="$ROOT/target/release/portcullis"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A trivial upstream: nginx answering 200 "ok" from memory, pinned to the load core.
start_upstream() {
    UPSTREAM_PORT="$(free_port)"
    mkdir -p "$WORK/nginx"
    cat > "$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { return 200 "ok"; }
    }
}
NGINX
    taskset -c "$LOAD_CPU" nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
    PIDS+=($!)
    wait_port "$UPSTREAM_PORT"
}

wait_port() {
    for _ in $(seq 1 200); do
        (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# CPU time (user + system) of a process, in microseconds.
cpu_us() {
    local ticks hz
    ticks=$(awk '{print $14 + $15}' "/proc/$1/stat")
    hz=$(getconf CLK_TCK)
    echo $(( ticks * 1000000 / hz ))
}

# Runs wrk against a URL and prints "requests errors rps".
run_wrk() {
    local url="$1" seconds="$2" conns="${3:-32}"
    local out
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${seconds}s" -H 'x-portcullis-key: bench-key' "$url")
    local requests errors non2xx rps
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    errors=$(echo "$out" | awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "${requests:-0} $(( ${errors:-0} + ${non2xx:-0} )) ${rps:-0}"
}
