# shellcheck shell=bash disable=SC2034
# Helpers of load-tests/bench.sh and load-tests/callgrind.sh (sourced, never run).
#
# Everything listens on 127.0.0.1 and every loop is bounded in count and time. Processes started
# through `spawn` are recorded and killed by the EXIT trap, with the temporary directory.
#
# Ports: a server we start is given a random port in 20000-31999 (below the kernel's ephemeral
# range, so the load generators' own client ports never take it) that nothing listens on; we then
# wait until *that process* listens on it (ss shows its pid). If it lost a race for the port it
# exits, and the caller starts it again on another port. No bind-then-release.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOAD_TESTS="$ROOT/load-tests"
SUT_CPU="${SUT_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"
WORK="$(mktemp -d /tmp/portcullis-bench.XXXXXX)"
mkdir -p "$WORK/logs"
SPAWNED=()
declare -A USED_PORTS=()

# The request every system gets: a gateway key (Portcullis checks it, the others ignore it),
# two headers on every proxy's forward list, and a cookie that Portcullis, nginx and the Node
# proxy must strip.
REQ_HEADERS=(
    "x-portcullis-key: bench-key"
    "accept: application/json"
    "user-agent: portcullis-bench"
    "cookie: portal-session=bench"
)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

# === process lifecycle ===

# All descendants of a pid, the pid first.
tree_pids() {
    local pid="$1" child
    [ -d "/proc/$pid" ] || return 0
    echo "$pid"
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do tree_pids "$child"; done
}

# kill_tree PID...: stops each process and its descendants, all at once: SIGINT (Pingora and
# nginx shut down fast on it, without a grace period), then SIGKILL after 5 s.
kill_tree() {
    local pids="" root
    for root in "$@"; do pids+=" $(tree_pids "$root" | tac | tr '\n' ' ')"; done
    [ -n "${pids// /}" ] || return 0
    # shellcheck disable=SC2086
    kill -INT $pids 2>/dev/null || true
    local _ p alive
    for _ in $(seq 1 50); do
        alive=0
        for p in $pids; do if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then alive=1; fi; done
        [ "$alive" = 0 ] && return 0
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -9 $pids 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    [ ${#SPAWNED[@]} -eq 0 ] || kill_tree "${SPAWNED[@]}"
    wait 2>/dev/null || true
    if [ -n "${KEEP_WORK:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# spawn NAME CMD... : starts CMD in the background, output in $WORK/logs/NAME.log; sets SPAWN_PID.
# (on_sut / on_load as the command become taskset itself, so SPAWN_PID is the program's own pid:
# taskset execs it.)
spawn() {
    local name="$1"; shift
    case "$1" in
        on_sut) shift; set -- taskset -c "$SUT_CPU" "$@" ;;
        on_load) shift; set -- taskset -c "$LOAD_CPU" "$@" ;;
    esac
    printf '%s\t%s\n' "$name" "$*" >> "$WORK/commands.tsv"
    "$@" > "$WORK/logs/$name.log" 2>&1 &
    SPAWN_PID=$!
    SPAWNED+=("$SPAWN_PID")
}

on_sut() { taskset -c "$SUT_CPU" "$@"; }
on_load() { taskset -c "$LOAD_CPU" "$@"; }

# === ports ===

pick_port() {
    local _ p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 12000 ))
        [ -n "${USED_PORTS[$p]:-}" ] && continue
        if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then
            USED_PORTS[$p]=1
            echo "$p"
            return 0
        fi
    done
    die "no free port found in 200 tries"
}

# wait_listening PORT PID [SECONDS=60]: waits until PID (or one of its descendants) listens on
# 127.0.0.1:PORT. Returns 1 if the process exited first or the deadline passed.
wait_listening() {
    local port="$1" pid="$2" deadline=$(( $(date +%s) + ${3:-60} ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        [ -d "/proc/$pid" ] || return 1
        local owners p
        owners="$(ss -Hltnp "sport = :$port" 2>/dev/null || true)"
        for p in $(tree_pids "$pid"); do
            case "$owners" in *"pid=$p,"*) return 0 ;; esac
        done
        sleep 0.05
    done
    return 1
}

# start_on_free_port NAME START_FN [SECONDS]: calls `START_FN PORT` (which must set SYS_PID) on a
# fresh port until the process it started listens there (at most 5 tries). Sets SYS_PORT.
start_on_free_port() {
    local name="$1" fn="$2" secs="${3:-60}" attempt
    for attempt in 1 2 3 4 5; do
        SYS_PORT="$(pick_port)"
        SYS_PID=""
        "$fn" "$SYS_PORT"
        [ -n "$SYS_PID" ] || die "$name: its start function set no SYS_PID"
        if wait_listening "$SYS_PORT" "$SYS_PID" "$secs"; then return 0; fi
        log "$name did not come up on port $SYS_PORT (try $attempt); its log ends with:"
        tail -n 5 "$WORK/logs/$name.log" >&2 || true
        kill_tree "$SYS_PID"
    done
    die "$name did not start in 5 tries (log: $WORK/logs/$name.log)"
}

# === measurements of a set of processes (each with its descendants, all threads) ===

# CPU time (user + system) in microseconds.
cpu_us() {
    local hz total=0 root p t
    hz=$(getconf CLK_TCK)
    for root in "$@"; do
        for p in $(tree_pids "$root"); do
            t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
            total=$(( total + t ))
        done
    done
    echo $(( total * 1000000 / hz ))
}

# status_kb FIELD PID...: sum of a /proc/PID/status field (VmRSS, VmHWM) in kB.
status_kb() {
    local field="$1" total=0 root p v; shift
    for root in "$@"; do
        for p in $(tree_pids "$root"); do
            v=$(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || true)
            total=$(( total + ${v:-0} ))
        done
    done
    echo "$total"
}

# === load generators; each prints one line "requests errors req_per_s" ===

header_args() {
    local flag="$1" h; shift
    for h in "${REQ_HEADERS[@]}" "$@"; do printf '%s\0%s\0' "$flag" "$h"; done
}

# wrk_run URL SECONDS [CONNS=32] [EXTRA HEADER...]: closed loop, keep-alive, one thread.
wrk_run() {
    local url="$1" secs="$2" conns="${3:-32}"; shift 3 || shift $#
    local args=() out a
    while IFS= read -r -d '' a; do args+=("$a"); done < <(header_args -H "$@")
    out=$(on_load wrk -t1 -c"$conns" -d"${secs}s" --timeout 5s "${args[@]}" "$url" 2>&1) || true
    echo "$out" > "$WORK/last-wrk.txt"
    local requests errors non2xx rps
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    errors=$(awk -F'[ ,]+' '/Socket errors/ {print $4+$6+$8+$10}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    [ -n "$requests" ] || { requests=0; errors=1; }
    echo "${requests:-0} $(( ${errors:-0} + ${non2xx:-0} )) ${rps:-0}"
}

# h2load_run URL SECONDS [EXTRA HEADER...]: closed loop over h2 (TLS, ALPN h2), 4 connections
# x 8 streams (32 requests in flight, as wrk -c32).
h2load_run() {
    local url="$1" secs="$2"; shift 2
    local args=() out a
    while IFS= read -r -d '' a; do args+=("$a"); done < <(header_args -H "$@")
    out=$(on_load h2load -t1 -c4 -m8 -D "$secs" "${args[@]}" "$url" 2>&1) || true
    echo "$out" > "$WORK/last-h2load.txt"
    awk '
        /^finished in/ { gsub(",", ""); rps = $4 }
        /^requests:/ { gsub(",", ""); succeeded = $8; failed = $10; errored = $12; timeout = $14 }
        /^status codes:/ { gsub(",", ""); non2xx = $5 + $7 + $9 }
        END {
            if (succeeded == "") { print "0 1 0"; exit }
            print succeeded, failed + errored + timeout + non2xx, rps
        }' <<<"$out"
}

# oha_run URL SECONDS RATE PROTO [EXTRA HEADER...]: open loop at a fixed rate, latency measured
# from each request's scheduled start (coordinated omission corrected).
# Prints "requests errors req_per_s p50_ms p99_ms p999_ms".
oha_run() {
    local url="$1" secs="$2" rate="$3" proto="$4"; shift 4
    local args=() out a
    while IFS= read -r -d '' a; do args+=("$a"); done < <(header_args -H "$@")
    [ "$proto" = h2tls ] && args+=(--http2 --insecure)
    out=$(on_load oha --no-tui --output-format json -z "${secs}s" -w -c 32 -q "$rate" \
        --latency-correction "${args[@]}" "$url" 2>"$WORK/last-oha.err") || true
    echo "$out" > "$WORK/last-oha.json"
    python3 "$LOAD_TESTS/lib/oha_summary.py" <<<"$out"
}

# answer_check URL PROTO: one request with the benchmark headers; prints the status and body.
answer_check() {
    local url="$1" args=() h
    for h in "${REQ_HEADERS[@]}" "${SYS_EXTRA_HEADERS[@]}"; do args+=(-H "$h"); done
    [ "$2" = h2tls ] && args+=(-k --http2)
    curl -sS -m 10 "${args[@]}" -w ' %{http_code}' "$url" 2>&1 || true
}

# === tools and builds ===

apt_install() {
    log "installing with apt-get: $*"
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: apt-get install $*"
        sudo apt-get update -qq >/dev/null
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    fi
}

# need_tools CMD:PACKAGE...: installs the Debian package of every missing command.
need_tools() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# The open-loop generator is not packaged by Debian: cargo installs it (once per machine).
OHA_VERSION="1.16.0"
need_oha() {
    if command -v oha >/dev/null 2>&1; then return 0; fi
    log "installing oha $OHA_VERSION with cargo (a one-time build of a few minutes)"
    cargo install oha --version "$OHA_VERSION" --locked >"$WORK/logs/oha-install.log" 2>&1 \
        || { tail -n 20 "$WORK/logs/oha-install.log" >&2; die "cargo install oha failed"; }
    export PATH="$HOME/.cargo/bin:$PATH"
}

build_release() {
    log "building release binaries (portcullis, portcullis-agent, bare-pingora)"
    (cd "$ROOT" && ./dev build-release >"$WORK/logs/build.log" 2>&1 \
        && cargo build --release --locked -p portcullis-broker --bin portcullis-agent >>"$WORK/logs/build.log" 2>&1 \
        && cargo build --release --locked -p bare-pingora >>"$WORK/logs/build.log" 2>&1) \
        || { tail -n 30 "$WORK/logs/build.log" >&2; die "release build failed"; }
    PORTCULLIS="$ROOT/target/release/portcullis"
    AGENT="$ROOT/target/release/portcullis-agent"
    BARE_PINGORA="$ROOT/target/release/bare-pingora"
}

# Started as root, nginx's workers would run as nobody and could not read our 0700 work dir.
nginx_user() { if [ "$(id -u)" -eq 0 ]; then echo "user root;"; fi; }

# === the trivial upstream: nginx answering 200 "ok" from memory, pinned to the load core ===

# The token modes' fixed strings. The upstream plays the identity provider too: it serves the
# JWKS (a file the portcullis-jwt system writes into $WORK/upstream/files/) and the OAuth token
# endpoint of portcullis-exchange, which answers only the client's own Basic credentials.
EXCHANGE_CLIENT_ID="bench-client"
EXCHANGE_CLIENT_SECRET="bench-client-secret-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
EXCHANGE_TOKEN="bench-exchanged-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"

start_upstream() {
    local basic
    basic="$(printf '%s:%s' "$EXCHANGE_CLIENT_ID" "$EXCHANGE_CLIENT_SECRET" | base64 -w0)"
    mkdir -p "$WORK/upstream/files" "$WORK/upstream/tmp"
    _upstream_start() {
        cat > "$WORK/upstream/nginx.conf" <<NGINX
$(nginx_user)worker_processes 1;
daemon off;
pid $WORK/upstream/nginx.pid;
error_log $WORK/upstream/error.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $WORK/upstream/tmp;
    server {
        listen 127.0.0.1:$1 backlog=4096;
        location / { return 200 "ok"; }
        # The token modes: their routes point here, so every benchmark request is checked (a
        # wrong or missing token is a 401, which the load generators count as an error).
        location /passthrough/ {
            if (\$http_authorization !~ "^Bearer eyJ") { return 401 "caller's bearer token not forwarded"; }
            return 200 "ok";
        }
        location /exchanged/ {
            if (\$http_authorization != "Bearer $EXCHANGE_TOKEN") { return 401 "exchanged token missing"; }
            return 200 "ok";
        }
        location = /oauth/token {
            default_type application/json;
            if (\$http_authorization != "Basic $basic") { return 401 '{"error":"invalid_client"}'; }
            return 200 '{"access_token":"$EXCHANGE_TOKEN","token_type":"Bearer","expires_in":86400}';
        }
        # Large-body checks: a sparse file to download, and PUT writes the body to disk.
        location /files/ {
            alias $WORK/upstream/files/;
            client_max_body_size 0;
            dav_methods PUT;
            sendfile on;
        }
    }
}
NGINX
        spawn upstream on_load nginx -c "$WORK/upstream/nginx.conf" -p "$WORK/upstream"
        SYS_PID=$SPAWN_PID
    }
    start_on_free_port upstream _upstream_start
    UPSTREAM_PORT=$SYS_PORT
}

# A self-signed certificate for the TLS listeners (localhost, 127.0.0.1).
make_cert() {
    CERT="$WORK/tls/cert.pem"; KEY="$WORK/tls/key.pem"
    mkdir -p "$WORK/tls"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 || die "openssl could not make a certificate"
}

# === Portcullis ===

KEY_SHA="$(printf 'bench-key' | sha256sum | cut -d' ' -f1)"
printf 'bench-admin-token' > "$WORK/admin-token"

# portcullis_config FILE PORT ADMIN ROUTES TLS_PORT LABEL [EXTRA_TOML]: one tenant; the `bench`
# inject route (Authorization from a secret, like a SaaS route); ROUTES-1 other routes to the same
# upstream under other paths and hosts (LABEL goes into one of them, so reloads can flip it);
# metrics on; a file audit log; no body limit. TLS_PORT "" means no TLS listener. EXTRA_TOML, a
# file, is appended as is (a variant's own routes, tenants, sections).
portcullis_config() {
    local file="$1" port="$2" admin="$3" routes="$4" tls_port="$5" label="${6:-a}" extra="${7:-}"
    local tls_args=()
    [ -z "$tls_port" ] || tls_args=(--tls-port "$tls_port" --tls-cert "$CERT" --tls-key "$KEY")
    python3 "$LOAD_TESTS/lib/gen_config.py" --port "$port" --admin "$admin" --routes "$routes" \
        --upstream "$UPSTREAM_PORT" --key-sha "$KEY_SHA" --work "$WORK" --label "$label" \
        "${tls_args[@]}" > "$file.tmp"
    if [ -n "$extra" ]; then printf '\n' >> "$file.tmp"; cat "$extra" >> "$file.tmp"; fi
    mv "$file.tmp" "$file"
}

# start_portcullis NAME PORT ROUTES LOG(warn|info) TLS(yes|no) [EXTRA_TOML]: sets SYS_PID,
# PC_ADMIN, PC_CONFIG. With TLS, PORT is the TLS listener (h1 + h2 by ALPN) and the plain listener
# gets its own port. PC_ENV (an array of NAME=VALUE, empty by default) is added to the gateway's
# environment, e.g. the secrets a variant's routes reference. SUT_WRAP (an array, empty by
# default) goes before the gateway's and the agent's binary: callgrind.sh puts valgrind there.
PC_ENV=()
SUT_WRAP=()
start_portcullis() {
    local name="$1" port="$2" routes="$3" level="$4" tls="$5" extra="${6:-}" plain tls_port=""
    PC_ADMIN="$(pick_port)"
    PC_CONFIG="$WORK/$name.toml"
    plain="$port"
    if [ "$tls" = yes ]; then plain="$(pick_port)"; tls_port="$port"; fi
    portcullis_config "$PC_CONFIG" "$plain" "$PC_ADMIN" "$routes" "$tls_port" a "$extra"
    spawn "$name" env PORTCULLIS_SECRET_BENCH_BENCH=bench-secret RUST_LOG="$level" "${PC_ENV[@]}" \
        taskset -c "$SUT_CPU" "${SUT_WRAP[@]}" "$PORTCULLIS" run --threads 1 --config "$PC_CONFIG"
    SYS_PID=$SPAWN_PID
}

# === nginx as the proxy under test ===

# write_nginx_proxy_conf DIR PORT TLS(yes|no): nginx configured like the inject route: upstream
# keep-alive pool, only the forward list of request headers passed (as Portcullis and Backstage
# do), the gateway key and cookie dropped with them, Host set to the target, one injected
# header, X-Forwarded-*, a request id both ways, Set-Cookie hidden from the caller.
write_nginx_proxy_conf() {
    local dir="$1" port="$2" tls="$3" listen h var
    mkdir -p "$dir"
    if [ "$tls" = yes ]; then
        listen="listen 127.0.0.1:$port ssl http2 backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:1m;"
    else
        listen="listen 127.0.0.1:$port backlog=4096;"
    fi
    local forward=""
    for h in cache-control content-language content-type expires last-modified pragma accept \
        accept-language user-agent; do
        var="\$http_${h//-/_}"
        forward+="            proxy_set_header $h $var;
"
    done
    cat > "$dir/nginx.conf" <<NGINX
$(nginx_user)worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile $(ulimit -n);
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $dir;
    proxy_temp_path $dir;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 128;
        keepalive_requests 100000000;
    }
    server {
        $listen
        client_max_body_size 0;
        location /bench/ {
            proxy_pass http://bench_upstream/;
            proxy_http_version 1.1;
            proxy_pass_request_headers off;
$forward            proxy_set_header Host 127.0.0.1:$UPSTREAM_PORT;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer bench-secret";
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$request_id;
            proxy_hide_header Set-Cookie;
            add_header X-Request-Id \$request_id always;
        }
    }
}
NGINX
}
