# shellcheck shell=bash disable=SC2034
# The measurements bench.sh makes once per run, after the interleaved rounds, each on a fresh
# process (sourced by bench.sh; uses bench-lib.sh). Each records rows with `extra KEY VALUE NOTE`;
# a failed check records `extra invalid "what failed"`, which fails --smoke and is shown in the
# report.

ADMIN_AUTH=(-H 'Authorization: Bearer bench-admin-token')

# admin_get ADMIN PATH
admin_get() { curl -sS -m 10 "${ADMIN_AUTH[@]}" "http://127.0.0.1:$1$2"; }

reloads_total() {
    admin_get "$1" /metrics | awk -v r="$2" '$1 == "portcullis_config_reloads_total{result=\"" r "\"}" {print $2; f=1} END {if (!f) print 0}'
}

# Reloads per second sustained under full load: wrk saturates a gateway while the config flips
# between two valid versions (one route's injected header) through POST /api/v1/reload, back to
# back, with an invalid version every 50th time (must be refused with 422). Valid: 0 request
# errors, every valid reload 200, every invalid one 422, and the gateway ends on the last valid
# file. The file watcher also reloads after each write; the metric counts those too.
extra_reloads() {
    log "reloads under full load ($RELOAD_SECS s)"
    _reload_start() { start_portcullis reload-gw "$1" 10 warn no; }
    start_on_free_port reload-gw _reload_start 60
    local pid=$SYS_PID port=$SYS_PORT admin=$PC_ADMIN cfg=$PC_CONFIG
    local url="http://127.0.0.1:$port/bench/x"
    portcullis_config "$WORK/reload-a.toml" "$port" "$admin" 10 "" a
    portcullis_config "$WORK/reload-b.toml" "$port" "$admin" 10 "" b
    printf '[[routes]]\nname = "broken"\n' > "$WORK/reload-invalid.toml"
    SYS_EXTRA_HEADERS=()
    wrk_run "$url" 1 >/dev/null
    local b_err b_rps
    read -r _ b_err b_rps < <(wrk_run "$url" "$RELOAD_SECS")
    local before
    before=$(reloads_total "$admin" success)

    wrk_run "$url" "$RELOAD_SECS" > "$WORK/reload-wrk.out" &
    local wrk_pid=$!
    local ok=0 bad_valid=0 rejected=0 bad_invalid=0 i=0 code last_valid=""
    local t0 t1 deadline=$(( $(date +%s%N) + RELOAD_SECS * 1000000000 ))
    t0=$(date +%s.%N)
    while [ "$(date +%s%N)" -lt "$deadline" ] && [ "$i" -lt 100000 ]; do
        i=$(( i + 1 ))
        if [ $(( i % 50 )) -eq 0 ]; then
            cp "$WORK/reload-invalid.toml" "$cfg.tmp" && mv "$cfg.tmp" "$cfg"
            code=$(on_load curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "${ADMIN_AUTH[@]}" \
                "http://127.0.0.1:$admin/api/v1/reload" || true)
            if [ "$code" = 422 ]; then rejected=$(( rejected + 1 )); else bad_invalid=$(( bad_invalid + 1 )); fi
        fi
        if [ $(( i % 2 )) -eq 0 ]; then last_valid="$WORK/reload-a.toml"; else last_valid="$WORK/reload-b.toml"; fi
        cp "$last_valid" "$cfg.tmp" && mv "$cfg.tmp" "$cfg"
        code=$(on_load curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "${ADMIN_AUTH[@]}" \
            "http://127.0.0.1:$admin/api/v1/reload" || true)
        if [ "$code" = 200 ]; then ok=$(( ok + 1 )); else bad_valid=$(( bad_valid + 1 )); fi
    done
    t1=$(date +%s.%N)
    wait "$wrk_pid" || true
    local req err rps
    read -r req err rps < "$WORK/reload-wrk.out"
    local after elapsed
    after=$(reloads_total "$admin" success)
    elapsed=$(echo "$t1 - $t0" | bc -l)

    # The gateway must end on the last valid file (the watcher may still be reloading it).
    local want active="" _
    want=$(sha256sum "$last_valid" | cut -d' ' -f1)
    for _ in $(seq 1 100); do
        active=$(admin_get "$admin" /api/v1/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["hash"])' 2>/dev/null || true)
        [ "$active" = "$want" ] && break
        sleep 0.1
    done

    extra reload.seconds "$(printf '%.1f' "$elapsed")"
    extra reload.api_ok "$ok" "valid reloads through POST /api/v1/reload answered 200"
    extra reload.api_per_s "$(printf '%.1f' "$(echo "$ok / $elapsed" | bc -l)")"
    extra reload.total_success "$(( ${after%.*} - ${before%.*} ))" "portcullis_config_reloads_total{result=\"success\"} delta (API + file watcher)"
    extra reload.total_per_s "$(printf '%.1f' "$(echo "(${after%.*} - ${before%.*}) / $elapsed" | bc -l)")"
    extra reload.invalid_rejected "$rejected"
    extra reload.requests "$req"
    extra reload.errors "$err"
    extra reload.rps "$rps"
    extra reload.baseline_rps "$b_rps" "same gateway, no reloads, just before"
    [ "$b_err" = 0 ] || extra invalid "reload baseline run had $b_err errors"
    [ "$err" = 0 ] || extra invalid "$err request errors while reloading"
    [ "$bad_valid" = 0 ] || extra invalid "$bad_valid valid reloads did not answer 200"
    [ "$bad_invalid" = 0 ] || extra invalid "$bad_invalid invalid reloads did not answer 422"
    [ "$ok" -gt 0 ] || extra invalid "no reload succeeded"
    [ "$active" = "$want" ] || extra invalid "final config hash $active is not the last valid file's $want"
    kill_tree "$pid"
    log "reloads: $ok API reloads in ${elapsed}s, $err errors, $rps req/s (baseline $b_rps)"
}

# BIG_MIB MiB through the inject route, down (a sparse file sent by the upstream) and up (a PUT
# the upstream writes to disk), on a fresh gateway; its peak RSS (VmHWM) before and after.
extra_big_body() {
    log "$BIG_MIB MiB through the inject route"
    _big_start() { start_portcullis big-gw "$1" 10 warn no; }
    start_on_free_port big-gw _big_start 60
    local pid=$SYS_PID port=$SYS_PORT
    local size=$(( BIG_MIB * 1048576 )) key=(-H "x-portcullis-key: bench-key" -H "Expect:")
    truncate -s "$size" "$WORK/upstream/files/big.bin"
    rm -f "$WORK/upstream/files/up.bin"
    SYS_EXTRA_HEADERS=()
    answer_check "http://127.0.0.1:$port/bench/x" h1 >/dev/null
    local hwm0 cpu0 out code bytes secs cpu1 hwm1 cpu2 hwm2 up_size
    hwm0=$(status_kb VmHWM "$pid"); cpu0=$(cpu_us "$pid")
    out=$(on_load curl -sS -m 600 -o /dev/null "${key[@]}" -w '%{http_code} %{size_download} %{time_total}' \
        "http://127.0.0.1:$port/bench/files/big.bin" 2>&1 || true)
    read -r code bytes secs <<<"$out"
    local down_secs="$secs"
    cpu1=$(cpu_us "$pid"); hwm1=$(status_kb VmHWM "$pid")
    extra big.mib "$BIG_MIB"
    extra big.hwm_start_kb "$hwm0" "VmHWM after start and one request"
    extra big.down_status "$code"
    extra big.down_seconds "$secs"
    extra big.down_cpu_s "$(echo "scale=3; ($cpu1 - $cpu0) / 1000000" | bc -l)"
    extra big.down_hwm_kb "$hwm1"
    [ "$code" = 200 ] && [ "$bytes" = "$size" ] \
        || extra invalid "download through the inject route: status $code, $bytes of $size bytes ($out)"

    out=$(on_load curl -sS -m 600 -o /dev/null "${key[@]}" -T "$WORK/upstream/files/big.bin" \
        -w '%{http_code} %{size_upload} %{time_total}' "http://127.0.0.1:$port/bench/files/up.bin" 2>&1 || true)
    read -r code bytes secs <<<"$out"
    cpu2=$(cpu_us "$pid"); hwm2=$(status_kb VmHWM "$pid")
    up_size=$(stat -c %s "$WORK/upstream/files/up.bin" 2>/dev/null || echo 0)
    extra big.up_status "$code"
    extra big.up_seconds "$secs"
    extra big.up_cpu_s "$(echo "scale=3; ($cpu2 - $cpu1) / 1000000" | bc -l)"
    extra big.up_hwm_kb "$hwm2"
    case "$code" in 201|204) ;; *) extra invalid "upload through the inject route: status $code ($out)" ;; esac
    [ "$up_size" = "$size" ] || extra invalid "upload: the upstream stored $up_size of $size bytes"
    rm -f "$WORK/upstream/files/big.bin" "$WORK/upstream/files/up.bin"
    kill_tree "$pid"
    log "big body: down ${down_secs}s, up ${secs}s; peak RSS ${hwm0} -> ${hwm1} -> ${hwm2} kB"
}

# Memory per idle keep-alive connection: a fresh instance of system NAME, IDLE_CONNS
# connections that each carried one request and now sit idle; (RSS with them - RSS before) / N.
extra_idle_connections() {
    local name="$1"
    log "$IDLE_CONNS idle keep-alive connections to $name"
    load_definition "$name"
    SYS_NAME="idle-$name"
    start_on_free_port "idle-$name" system_start 60
    local pid=$SYS_PID port=$SYS_PORT
    answer_check "http://127.0.0.1:$port/bench/x" h1 >/dev/null
    local rss0 rss1 word ok failed alive
    rss0=$(status_kb VmRSS "$pid")
    coproc IDLE { on_load python3 "$LOAD_TESTS/lib/idle_conns.py" "$port" "$IDLE_CONNS" /bench/x 300 "${REQ_HEADERS[@]}"; }
    local idle_pid=$IDLE_PID
    if ! read -r -t 300 word ok failed <&"${IDLE[0]}"; then word=""; ok=0; failed="$IDLE_CONNS"; fi
    alive=$(ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l)
    rss1=$(status_kb VmRSS "$pid")
    eval "exec ${IDLE[1]}>&-"
    wait "$idle_pid" 2>/dev/null || true
    extra "idle.$name.conns" "$ok" "connections that carried one request and were held idle"
    extra "idle.$name.alive" "$alive" "established on the proxy's port at measurement"
    extra "idle.$name.rss_before_kb" "$rss0"
    extra "idle.$name.rss_after_kb" "$rss1"
    if [ "${ok:-0}" -gt 0 ]; then
        extra "idle.$name.bytes_per_conn" "$(( (rss1 - rss0) * 1024 / ok ))"
    fi
    [ "$word" = ready ] && [ "${failed:-1}" = 0 ] \
        || extra invalid "idle connections to $name: ${ok:-0} held, ${failed:-?} failed"
    [ "$alive" -ge "${ok:-0}" ] || extra invalid "idle connections to $name: only $alive of $ok still open"
    kill_tree "$pid"
    log "idle: $name $ok conns, RSS $rss0 -> $rss1 kB"
}
