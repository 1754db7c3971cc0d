#!/usr/bin/env bash
# Hot reload at full speed: wrk saturates the gateway while the config flips between two valid
# versions (and now and then an invalid one) through POST /api/v1/reload. A valid run has zero
# errors and ends on the last valid config's hash. A baseline run without reloads comes first.
#
#   load-tests/reload-under-load.sh [SECONDS=20] [RELOADS=300]
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/lib-gateway.sh"
SECONDS_PER_RUN="${1:-20}"
MAX_RELOADS="${2:-300}"
need wrk nginx curl
build_release
start_upstream

port="$(free_port)"; admin="$(free_port)"
config="$WORK/portcullis.toml"
write_config "$config" "$port" "$admin" true off a
start_gateway "$config" "$port"
run_wrk "http://127.0.0.1:$port/bench/warmup" 2 >/dev/null

read -r base_req base_err base_rps < <(run_wrk "http://127.0.0.1:$port/bench/x" "$SECONDS_PER_RUN")
echo "baseline (no reloads): $base_req requests, $base_err errors, $base_rps req/s"

run_wrk "http://127.0.0.1:$port/bench/x" "$SECONDS_PER_RUN" > "$WORK/wrk.out" &
wrk_pid=$!
ok=0; rejected=0; last_valid=""
deadline=$(( $(date +%s) + SECONDS_PER_RUN ))
for i in $(seq 1 "$MAX_RELOADS"); do
    [ "$(date +%s)" -lt "$deadline" ] || break
    if [ $(( i % 50 )) -eq 0 ]; then
        printf '[[routes]]\nname = "broken"\n' > "$config.tmp" && mv "$config.tmp" "$config"
        code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer bench-admin-token' \
            "http://127.0.0.1:$admin/api/v1/reload")
        [ "$code" = 422 ] && rejected=$((rejected + 1))
    fi
    label=$([ $(( i % 2 )) -eq 0 ] && echo a || echo b)
    write_config "$config" "$port" "$admin" true off "$label"
    last_valid="$(sha256sum "$config" | cut -d' ' -f1)"
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Authorization: Bearer bench-admin-token' \
        "http://127.0.0.1:$admin/api/v1/reload")
    [ "$code" = 200 ] && ok=$((ok + 1))
    sleep 0.02
done
wait "$wrk_pid"
read -r req err rps < "$WORK/wrk.out"
sleep 0.5
active=$(curl -s -H 'Authorization: Bearer bench-admin-token' "http://127.0.0.1:$admin/api/v1/status" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["config"]["hash"])')
echo "with reloads:          $req requests, $err errors, $rps req/s; $ok successful reloads, $rejected invalid rejected"
echo "throughput ratio (reloading / baseline): $(echo "$rps / $base_rps" | bc -l | cut -c1-5)"
if [ "$active" = "$last_valid" ]; then echo "final hash = last valid file: OK"; else echo "final hash MISMATCH" >&2; exit 1; fi
[ "$err" -eq 0 ] || { echo "INVALID RUN: $err errors during reloads" >&2; exit 1; }
