#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind: repeatable on a noisy machine, where
# CPU time is not. Each system runs under `valgrind --tool=callgrind` with one worker thread;
# after a warm-up its counters are zeroed, a bounded client sends exactly N requests, the counters
# are dumped, and the total instruction count (every thread) is divided by N.
#
#   load-tests/callgrind.sh [--requests N] [--warmup N] [--systems "portcullis-warn portcullis-info bare-pingora"]
#
# portcullis-warn / -info: the inject route of bench.sh (10 routes, metrics + file audit) at
# RUST_LOG=warn and at the shipped default info; portcullis-10k-routes: the same at warn with
# 10,000 routes; portcullis-broker: bench.sh's broker route, the gateway and a real agent both
# under callgrind, counted together (and each shown); bare-pingora: one peer, one injected header.
# Prints a table and the ratios to bare Pingora. Requests go to 127.0.0.1 only; everything it
# starts is stopped on exit.
source "$(dirname "$0")/lib/bench-lib.sh"

REQUESTS=20000 WARMUP=2000 WHICH="portcullis-warn portcullis-info bare-pingora"
while [ $# -gt 0 ]; do
    case "$1" in
        --requests) REQUESTS="$2"; shift ;;
        --warmup) WARMUP="$2"; shift ;;
        --systems) WHICH="$2"; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
    shift
done
[[ "$REQUESTS" =~ ^[1-9][0-9]{0,6}$ ]] || die "--requests must be 1-9999999"
[[ "$WARMUP" =~ ^[1-9][0-9]{0,6}$ ]] || die "--warmup must be 1-9999999"

need_tools valgrind:valgrind callgrind_control:valgrind nginx:nginx h2load:nghttp2-client \
    curl:curl python3:python3 taskset:util-linux ss:iproute2 pgrep:procps
build_release
start_upstream

# The client: h2load speaking HTTP/1.1, exactly N requests over 4 keep-alive connections.
# Prints "succeeded failed_or_non2xx".
bounded_load() {
    local url="$1" n="$2" args=() h out
    for h in "${REQ_HEADERS[@]}"; do args+=(-H "$h"); done
    out=$(on_load h2load --h1 -t1 -c4 -n "$n" "${args[@]}" "$url" 2>&1) || true
    awk '
        /^requests:/ { gsub(",", ""); succeeded = $8; failed = $10 + $12 + $14 }
        /^status codes:/ { gsub(",", ""); non2xx = $5 + $7 + $9 }
        END { print (succeeded == "" ? 0 : succeeded), failed + non2xx + (succeeded == "" ? 1 : 0) }' <<<"$out"
}

# The total instruction count (all threads) of a callgrind dump file.
dump_total() {
    awk '/^totals:/ {t = $2} /^summary:/ {s = $2} END {print (t != "" ? t : s)}' "$1"
}

declare -A IR PARTS
for name in $WHICH; do
    case "$name" in
        portcullis-warn|portcullis-info) level="${name#portcullis-}" routes=10 ;;
        portcullis-10k-routes) level=warn routes=10000 ;;
        portcullis-broker) level=broker ;;
        bare-pingora) level="" ;;
        *) die "unknown system $name (portcullis-warn, portcullis-info, portcullis-10k-routes, portcullis-broker, bare-pingora)" ;;
    esac
    out_dir="$WORK/callgrind-$name"
    mkdir -p "$out_dir"
    _cg_start() {
        local port="$1"
        local vg=(valgrind --tool=callgrind --dump-instr=no --trace-children=no
            "--callgrind-out-file=$out_dir/callgrind.out.%p")
        if [ "$level" = broker ]; then
            # The broker system's own start, with both of its processes under callgrind.
            SUT_WRAP=("${vg[@]}")
            system_start "$port"
            SUT_WRAP=()
            return 0
        elif [ -n "$level" ]; then
            PC_ADMIN="$(pick_port)"
            portcullis_config "$WORK/$name.toml" "$port" "$PC_ADMIN" "$routes" "" a
            PORTCULLIS_SECRET_BENCH_BENCH=bench-secret RUST_LOG="$level" \
                spawn "cg-$name" on_sut "${vg[@]}" "$PORTCULLIS" run --threads 1 --config "$WORK/$name.toml"
        else
            spawn "cg-$name" on_sut "${vg[@]}" "$BARE_PINGORA" --listen "127.0.0.1:$port" \
                --upstream "127.0.0.1:$UPSTREAM_PORT" --threads 1
        fi
        SYS_PID=$SPAWN_PID
    }
    log "$name under callgrind: starting (slow)"
    path=/bench/x SYS_MEASURE_PIDS=()
    if [ "$level" = broker ]; then
        # shellcheck disable=SC1091
        source "$LOAD_TESTS/systems/portcullis-broker.sh"
        SYS_NAME="cg-$name" SYSTEM_START_SECONDS=300 path="$SYSTEM_PATH"
    fi
    start_on_free_port "cg-$name" _cg_start 300
    pids=("${SYS_MEASURE_PIDS[@]:-$SYS_PID}") url="http://127.0.0.1:$SYS_PORT$path"
    read -r ok bad < <(bounded_load "$url" "$WARMUP")
    [ "$bad" = 0 ] && [ "$ok" = "$WARMUP" ] || die "$name warm-up: $ok ok, $bad failed"
    for pid in "${pids[@]}"; do
        callgrind_control --zero "$pid" >/dev/null 2>&1 || die "callgrind_control --zero failed for $name"
    done
    log "$name: $REQUESTS requests"
    read -r ok bad < <(bounded_load "$url" "$REQUESTS")
    [ "$bad" = 0 ] && [ "$ok" = "$REQUESTS" ] || die "$name: $ok ok, $bad failed"
    rm -f "$out_dir"/callgrind.out.*
    IR[$name]=0 PARTS[$name]=""
    labels=(gateway agent)
    for i in "${!pids[@]}"; do
        pid="${pids[$i]}"
        callgrind_control --dump "$pid" >/dev/null 2>&1 || die "callgrind_control --dump failed for $name"
        # The dump is written by the guest shortly after the request; wait for a complete file.
        dump="" total=""
        for _ in $(seq 1 600); do
            dump="$(compgen -G "$out_dir/callgrind.out.$pid.*" | head -1 || true)"
            if [ -n "$dump" ]; then total="$(dump_total "$dump")"; [ -n "$total" ] && break; fi
            sleep 0.1
        done
        [ -n "$dump" ] || die "no callgrind dump for $name (pid $pid)"
        [ -n "$total" ] || die "no total in $dump"
        IR[$name]=$(( IR[$name] + total ))
        PARTS[$name]+="${PARTS[$name]:+ + }${labels[$i]} $(( total / REQUESTS ))"
    done
    kill_tree "${pids[@]}"
done

printf '\n%-18s %16s %14s\n' system instructions instr/request
for name in $WHICH; do
    printf '%-18s %16s %14.0f' "$name" "${IR[$name]}" "$(echo "${IR[$name]} / $REQUESTS" | bc -l)"
    if [[ "${PARTS[$name]}" == *+* ]]; then printf '  (%s)' "${PARTS[$name]}"; fi
    printf '\n'
done
if [ -n "${IR[bare-pingora]:-}" ]; then
    for name in $WHICH; do
        [ "$name" = bare-pingora ] && continue
        printf '%s / bare-pingora: %.2f\n' "$name" "$(echo "${IR[$name]} / ${IR[bare-pingora]}" | bc -l)"
    done
fi
if [ -n "${IR[portcullis-warn]:-}" ] && [ -n "${IR[portcullis-info]:-}" ]; then
    printf 'access log (info - warn): %.0f instructions per request\n' \
        "$(echo "(${IR[portcullis-info]} - ${IR[portcullis-warn]}) / $REQUESTS" | bc -l)"
fi
echo "($REQUESTS requests after $WARMUP warm-up requests; totals include every thread of the process)"
