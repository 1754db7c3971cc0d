#!/usr/bin/env bash
# The same-run benchmark suite (issue 11): Portcullis against the direct upstream, nginx, bare
# Pingora and Backstage's Node proxy, interleaved, each proxy pinned to one core with one worker,
# load generator + trivial upstream on the other core; then reloads under load, a large body
# through the inject route, and memory per idle keep-alive connection. Writes RESULTS.md.
#
#   load-tests/bench.sh [--smoke] [--rounds N] [--seconds S] [--only "SYS ..."] [--out FILE]
#
#   --smoke      a few seconds per system; asserts "no errors, every system answered"; exits
#                non-zero otherwise; writes load-tests/results/RESULTS-smoke.md (CI runs this)
#   --rounds N   interleaved rounds (default 5; smoke 1); medians are over the valid rounds
#   --seconds S  seconds per load run (default 10; smoke 2)
#   --only LIST  only these systems (names of load-tests/systems/*.sh); nginx is always kept,
#                since the fixed rates are fractions of its max
#   --out FILE   where the report goes (default load-tests/RESULTS.md; smoke as above)
#
# BENCH_BIG_MIB and BENCH_IDLE_CONNS override the large body's size (1024; smoke 64) and the
# number of idle connections (10000; smoke 500).
#
# Loopback only; every loop bounded in count and time; every process it starts is stopped and
# its temporary directory removed on exit (KEEP_WORK=1 keeps the directory for a post-mortem).
source "$(dirname "$0")/lib/bench-lib.sh"

MODE=full ROUNDS="" SECS="" ONLY="" OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --rounds) ROUNDS="$2"; shift ;;
        --seconds) SECS="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
if [ "$MODE" = smoke ]; then
    ROUNDS="${ROUNDS:-1}"; SECS="${SECS:-2}"; OUT="${OUT:-$LOAD_TESTS/results/RESULTS-smoke.md}"
    BIG_MIB="${BENCH_BIG_MIB:-64}"; IDLE_CONNS="${BENCH_IDLE_CONNS:-500}"; RELOAD_SECS=3
else
    ROUNDS="${ROUNDS:-5}"; SECS="${SECS:-10}"; OUT="${OUT:-$LOAD_TESTS/RESULTS.md}"
    BIG_MIB="${BENCH_BIG_MIB:-1024}"; IDLE_CONNS="${BENCH_IDLE_CONNS:-10000}"; RELOAD_SECS=$(( SECS * 2 ))
fi
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || die "--rounds must be 1-99"
[[ "$SECS" =~ ^[1-9][0-9]{0,2}$ ]] || die "--seconds must be 1-999"
mkdir -p "$(dirname "$OUT")"
BENCH_START=$(date +%s)
COMMAND_LINE="load-tests/bench.sh $*"
[ "$MODE" = smoke ] && COMMAND_LINE="load-tests/bench.sh --smoke${ROUNDS:+ --rounds $ROUNDS} --seconds $SECS"
[ "$MODE" = full ] && COMMAND_LINE="load-tests/bench.sh --rounds $ROUNDS --seconds $SECS${ONLY:+ --only \"$ONLY\"}"

if [ "$(nproc)" -lt 2 ]; then
    log "only one core: the proxy and the load share it (numbers are not comparable to 2 cores)"
    SUT_CPU=0; LOAD_CPU=0
fi
# 10,000 idle connections need ~10k descriptors in the client and in the proxy.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $(( IDLE_CONNS + 1000 )) ]; then
    IDLE_CONNS=$(( $(ulimit -n) - 1000 ))
    log "open-file limit $(ulimit -n): idle-connection test lowered to $IDLE_CONNS connections"
fi

META="$WORK/meta.txt"
meta() { printf '%s\t%s\n' "$1" "$2" >> "$META"; }
meta mode "$MODE"; meta rounds "$ROUNDS"; meta seconds "$SECS"; meta command "$COMMAND_LINE"
meta started "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"

# --- tools, dependencies, binaries ---
need_tools nginx:nginx wrk:wrk h2load:nghttp2-client curl:curl openssl:openssl \
    python3:python3 node:nodejs npm:npm taskset:util-linux ss:iproute2 pgrep:procps
need_oha
if [ ! -f "$LOAD_TESTS/node-proxy/node_modules/.package-lock.json" ] \
    || [ "$LOAD_TESTS/node-proxy/package-lock.json" -nt "$LOAD_TESTS/node-proxy/node_modules/.package-lock.json" ]; then
    log "npm ci in load-tests/node-proxy"
    (cd "$LOAD_TESTS/node-proxy" && npm ci --no-audit --no-fund >"$WORK/logs/npm.log" 2>&1) \
        || { tail -n 20 "$WORK/logs/npm.log" >&2; die "npm ci failed"; }
fi
build_release
make_cert
start_upstream
log "upstream nginx on 127.0.0.1:$UPSTREAM_PORT (cpu $LOAD_CPU); systems on cpu $SUT_CPU"

meta machine_cpu "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
meta machine_nproc "$(nproc)"
meta machine_kernel "$(uname -r)"
meta machine_mem "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
meta v_portcullis "$("$PORTCULLIS" --version 2>&1 | head -1) ($(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . ':!load-tests/RESULTS.md' || echo ', modified'))"
meta v_pingora "$(awk '/^name = "pingora-core"$/ {getline; print $3; exit}' "$ROOT/Cargo.lock" | tr -d '"')"
meta v_nginx "$(nginx -v 2>&1 | sed 's/.*: //')"
meta v_node "node $(node --version), express $(node -p 'require("'"$LOAD_TESTS"'/node-proxy/node_modules/express/package.json").version'), http-proxy-middleware $(node -p 'require("'"$LOAD_TESTS"'/node-proxy/node_modules/http-proxy-middleware/package.json").version')"
meta v_wrk "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
meta v_oha "$(oha --version 2>&1 | head -1)"
meta v_h2load "$(h2load --version 2>&1 | head -1)"
meta v_rustc "$(rustc --version)"

# --- the systems: one definition each in systems/NAME.sh ---
declare -A DESC PROTO PORT PID URL ANSWER
SYSTEMS=()
SYSTEMS_TSV="$WORK/systems.tsv"
: > "$SYSTEMS_TSV"
load_definition() {
    unset -f system_start system_check system_after
    SYSTEM_DESC=""; SYSTEM_SORT=99; SYSTEM_PROTO=h1; SYSTEM_ROLE=proxy; SYSTEM_COMPARE=""
    SYSTEM_PATH=/bench/x; SYSTEM_START_SECONDS=60; SYS_EXTRA_HEADERS=(); SYS_MEASURE_PIDS=()
    PC_ENV=(); PC_ADMIN=""
    # shellcheck disable=SC1090
    source "$LOAD_TESTS/systems/$1.sh"
    declare -F system_start >/dev/null || die "systems/$1.sh defines no system_start"
}
for f in "$LOAD_TESTS"/systems/*.sh; do
    name="$(basename "$f" .sh)"
    if [ -n "$ONLY" ] && [ "$name" != nginx ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
    load_definition "$name"
    DESC[$name]="$SYSTEM_DESC"; PROTO[$name]="$SYSTEM_PROTO"
    SYSTEMS+=("$name")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$SYSTEM_SORT" "$SYSTEM_PROTO" "$SYSTEM_ROLE" \
        "$SYSTEM_COMPARE" "$SYSTEM_DESC" >> "$SYSTEMS_TSV"
done
[ -n "${DESC[nginx]:-}" ] || die "systems/nginx.sh is missing: the fixed rates are fractions of nginx's max"
NOT_BUILT_TSV="$WORK/not-built.tsv"
: > "$NOT_BUILT_TSV"
trim() { local v="$1"; v="${v#"${v%%[![:space:]]*}"}"; echo "${v%"${v##*[![:space:]]}"}"; }
while IFS='|' read -r name what _; do
    name="$(trim "$name")"
    if [ -z "$name" ] || [[ "$name" == \#* ]]; then continue; fi
    if [ ! -f "$LOAD_TESTS/systems/$name.sh" ]; then
        log "not built yet: $name ($(trim "$what"))"
        printf '%s\t%s\n' "$name" "$(trim "$what")" >> "$NOT_BUILT_TSV"
    fi
done < "$LOAD_TESTS/systems/planned.txt"

url_of() {
    local scheme=http
    [ "${PROTO[$1]}" = h2tls ] && scheme=https
    echo "$scheme://127.0.0.1:${PORT[$1]}$2"
}

start_system() {
    local name="$1"
    load_definition "$name"
    SYS_NAME="$name"
    if [ "$SYSTEM_ROLE" = limit ]; then
        system_start
        PORT[$name]="$SYS_PORT"; PID[$name]=""
    else
        start_on_free_port "$name" system_start "$SYSTEM_START_SECONDS"
        PORT[$name]="$SYS_PORT"; PID[$name]="${SYS_MEASURE_PIDS[*]:-$SYS_PID}"
    fi
    URL[$name]="$(url_of "$name" "$SYSTEM_PATH")"
    EXTRA_HEADERS_OF[$name]="$(printf '%s\n' "${SYS_EXTRA_HEADERS[@]}")"
    ADMIN_OF[$name]="$PC_ADMIN"
    # A definition's own check (system_check URL ADMIN_PORT: exits non-zero with a message) runs
    # once it listens, e.g. that a bad token is refused: a system that fails it is not loaded.
    if declare -F system_check >/dev/null; then
        local msg
        if ! msg="$(system_check "${URL[$name]}" "${ADMIN_OF[$name]}" 2>&1)"; then
            CHECK_FAILED[$name]="${msg:-system_check failed}"
            log "$name: its check failed: ${CHECK_FAILED[$name]}"
        fi
    fi
}
declare -A EXTRA_HEADERS_OF ADMIN_OF CHECK_FAILED
extra_headers() {
    local -n _out="$2"
    _out=()
    local line
    while IFS= read -r line; do
        if [ -n "$line" ]; then _out+=("$line"); fi
    done <<<"${EXTRA_HEADERS_OF[$1]}"
}

for name in "${SYSTEMS[@]}"; do
    log "starting $name"
    start_system "$name"
done

# Every system must answer the benchmark request with 200 "ok" before anything is measured.
for name in "${SYSTEMS[@]}"; do
    extra_headers "$name" SYS_EXTRA_HEADERS
    answer="$(answer_check "${URL[$name]}" "${PROTO[$name]}")"
    [ -z "${CHECK_FAILED[$name]:-}" ] || answer="check failed: ${CHECK_FAILED[$name]}"
    if [ "$answer" = "ok 200" ]; then ANSWER[$name]=yes; else
        ANSWER[$name]=no
        log "$name did not answer 200 ok: $(head -c 300 <<<"$answer")"
    fi
    printf '%s\t%s\t%s\n' "$name" "${ANSWER[$name]}" "$(head -c 200 <<<"$answer" | tr '\t\n' '  ')" >> "$WORK/answers.tsv"
done

# One closed-loop run of a system: prints "requests errors rps cpu_us_per_req rss_kb split",
# split being, for a system of several processes (SYS_MEASURE_PIDS), each one's share of the
# CPU per request ("portcullis=80.1,portcullis-agen=54.3", names from /proc/PID/comm), else "-".
throughput_run() {
    local name="$1" secs="$2" before after extra=() p
    extra_headers "$name" extra
    local pids=() each_before=()
    read -r -a pids <<<"${PID[$name]}"
    [ ${#pids[@]} -gt 0 ] && before=$(cpu_us "${pids[@]}")
    if [ ${#pids[@]} -gt 1 ]; then for p in "${pids[@]}"; do each_before+=("$(cpu_us "$p")"); done; fi
    local out
    if [ "${PROTO[$name]}" = h2tls ]; then
        out="$(h2load_run "${URL[$name]}" "$secs" "${extra[@]}")"
    else
        out="$(wrk_run "${URL[$name]}" "$secs" 32 "${extra[@]}")"
    fi
    local requests errors rps cpu="" rss="" split="" i
    read -r requests errors rps <<<"$out"
    if [ ${#pids[@]} -gt 0 ]; then
        after=$(cpu_us "${pids[@]}")
        [ "$requests" -gt 0 ] && cpu=$(echo "scale=3; ($after - $before) / $requests" | bc -l)
        rss=$(status_kb VmRSS "${pids[@]}")
    fi
    if [ ${#pids[@]} -gt 1 ] && [ "$requests" -gt 0 ]; then
        for i in "${!pids[@]}"; do
            split+="${split:+,}$(tr -d ' \n' < "/proc/${pids[$i]}/comm" 2>/dev/null || echo "pid${pids[$i]}")="
            split+="$(echo "scale=1; ($(cpu_us "${pids[$i]}") - ${each_before[$i]}) / $requests" | bc -l)"
        done
    fi
    echo "$requests $errors $rps ${cpu:--} ${rss:--} ${split:--}"
}

RUNS="$WORK/runs.tsv"
mkdir -p "$WORK/raw"
printf 'round\tsystem\tkind\trate\trequests\terrors\trps\tcpu_us_per_req\trss_kb\tp50_ms\tp99_ms\tp999_ms\tnote\n' > "$RUNS"

# Warm-up: every system gets a short closed-loop run (JIT, pools, caches), not recorded.
for name in "${SYSTEMS[@]}"; do
    [ "${ANSWER[$name]}" = yes ] || continue
    throughput_run "$name" 1 >/dev/null
done

# The fixed rates: fractions of nginx's max, measured once before the rounds.
read -r _ cal_err NGINX_MAX _ _ _ < <(throughput_run nginx "$SECS")
[ "${cal_err:-1}" = 0 ] || log "nginx calibration run had $cal_err errors"
NGINX_MAX="${NGINX_MAX%.*}"
[ "${NGINX_MAX:-0}" -gt 0 ] || die "nginx calibration failed: $(cat "$WORK/last-wrk.txt")"
RATE_LOW=$(( NGINX_MAX / 4 )); RATE_HIGH=$(( NGINX_MAX / 2 ))
meta nginx_calibration_rps "$NGINX_MAX"; meta rate_low "$RATE_LOW"; meta rate_high "$RATE_HIGH"
log "nginx max $NGINX_MAX req/s: fixed rates $RATE_LOW and $RATE_HIGH req/s"

# A rate is run only while it is below the knee of that system in this round (<= 80% of the
# max it just reached); above, the open-loop queue grows without bound and the percentiles
# would measure the run's length, not the system.
KNEE=0.8
for round in $(seq 1 "$ROUNDS"); do
    n=${#SYSTEMS[@]}
    for (( k=0; k<n; k++ )); do
        name="${SYSTEMS[$(( (k + round - 1) % n ))]}"
        [ "${ANSWER[$name]}" = yes ] || continue
        read -r requests errors rps cpu rss split < <(throughput_run "$name" "$SECS")
        cp "$WORK/last-wrk.txt" "$WORK/raw/$round-$name-max.txt" 2>/dev/null || true
        cp "$WORK/last-h2load.txt" "$WORK/raw/$round-$name-max.txt" 2>/dev/null || true
        rm -f "$WORK/last-wrk.txt" "$WORK/last-h2load.txt"
        note=""
        [ "$split" = - ] || note="CPU us/req by process: $split"
        log "round $round $name: $requests req, $errors errors, $rps req/s, $cpu cpu us/req, rss $rss kB${note:+ ($note)}"
        printf '%s\t%s\tmax\t-\t%s\t%s\t%s\t%s\t%s\t-\t-\t-\t%s\n' "$round" "$name" "$requests" \
            "$errors" "$rps" "$cpu" "$rss" "$note" >> "$RUNS"
        for kind in low high; do
            if [ "$kind" = low ]; then rate=$RATE_LOW; else rate=$RATE_HIGH; fi
            if [ "$(echo "$rate <= $rps * $KNEE" | bc -l)" != 1 ]; then
                printf '%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\tabove knee (max %s req/s)\n' \
                    "$round" "$name" "$kind" "$rate" "$rps" >> "$RUNS"
                continue
            fi
            extra_headers "$name" extra
            read -r o_req o_err o_rps p50 p99 p999 aborted < <(oha_run "${URL[$name]}" "$SECS" "$rate" "${PROTO[$name]}" "${extra[@]}")
            cp "$WORK/last-oha.json" "$WORK/raw/$round-$name-$kind.json" 2>/dev/null || true
            log "round $round $name @ $rate req/s: p50 $p50 p99 $p99 p99.9 $p999 ms, $o_err errors"
            note=""
            [ "${aborted:-0}" = 0 ] || note="$aborted requests cut by oha at the deadline (not errors)"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t-\t-\t%s\t%s\t%s\t%s\n' "$round" "$name" "$kind" "$rate" \
                "$o_req" "$o_err" "$o_rps" "$p50" "$p99" "$p999" "$note" >> "$RUNS"
        done
    done
done

EXTRAS="$WORK/extras.tsv"
: > "$EXTRAS"
extra() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >> "$EXTRAS"; }

# A definition's after-rounds check (system_after URL ADMIN_PORT), on the processes that were
# measured, e.g. that the exchanged token stayed cached the whole time; a failure fails --smoke.
for name in "${SYSTEMS[@]}"; do
    [ "${ANSWER[$name]}" = yes ] || continue
    load_definition "$name"
    declare -F system_after >/dev/null || continue
    if ! msg="$(system_after "${URL[$name]}" "${ADMIN_OF[$name]}" 2>&1)"; then
        log "$name: its after-rounds check failed: $msg"
        extra invalid "$name after the rounds: ${msg:-system_after failed}"
    fi
done

# The round systems are stopped before the extras, which each start fresh processes.
all_pids=()
for name in "${SYSTEMS[@]}"; do read -r -a pids <<<"${PID[$name]}"; all_pids+=("${pids[@]}"); done
[ ${#all_pids[@]} -eq 0 ] || kill_tree "${all_pids[@]}"

source "$LOAD_TESTS/lib/extras.sh"
if [ -n "${DESC[portcullis-warn]:-}" ]; then
    extra_reloads
    extra_big_body
fi
for name in nginx bare-pingora portcullis-warn; do
    [ -n "${DESC[$name]:-}" ] && extra_idle_connections "$name"
done

meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
meta finished "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
meta duration_s "$(( $(date +%s) - BENCH_START ))"

check=()
[ "$MODE" = smoke ] && check=(--check)
status=0
python3 "$LOAD_TESTS/lib/report.py" --work "$WORK" --out "$OUT" "${check[@]}" || status=$?
log "report written to $OUT ($(( $(date +%s) - BENCH_START )) s)"
exit "$status"
