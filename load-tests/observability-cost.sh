#!/usr/bin/env bash
# What do request metrics and the audit log cost? Two gateways on the same core, one with
# metrics + a file audit log, one with both off, loaded in turn (interleaved rounds, same run).
# Reports requests/s and the gateway's CPU microseconds per request.
#
#   load-tests/observability-cost.sh [ROUNDS=3] [SECONDS=10]
source "$(dirname "$0")/common.sh"
source "$(dirname "$0")/lib-gateway.sh"
ROUNDS="${1:-3}"
SECONDS_PER_RUN="${2:-10}"
need wrk nginx
build_release
start_upstream

declare -A PORT CPU REQ ERR
for variant in on off; do
    PORT[$variant]="$(free_port)"
    admin="$(free_port)"
    if [ "$variant" = on ]; then m=true; a=file; else m=false; a=off; fi
    write_config "$WORK/$variant.toml" "${PORT[$variant]}" "$admin" "$m" "$a" "$variant"
    start_gateway "$WORK/$variant.toml" "${PORT[$variant]}"
    eval "GW_$variant=$GW_PID"
    run_wrk "http://127.0.0.1:${PORT[$variant]}/bench/warmup" 2 >/dev/null
    CPU[$variant]=0; REQ[$variant]=0; ERR[$variant]=0
done

printf '%-6s %-8s %10s %8s %10s %12s\n' round variant requests errors req/s cpu_us/req
for round in $(seq 1 "$ROUNDS"); do
    for variant in on off; do
        pid_var="GW_$variant"; pid="${!pid_var}"
        before=$(cpu_us "$pid")
        read -r requests errors rps < <(run_wrk "http://127.0.0.1:${PORT[$variant]}/bench/x" "$SECONDS_PER_RUN")
        after=$(cpu_us "$pid")
        used=$(( after - before ))
        CPU[$variant]=$(( CPU[$variant] + used )); REQ[$variant]=$(( REQ[$variant] + requests ))
        ERR[$variant]=$(( ERR[$variant] + errors ))
        printf '%-6s %-8s %10s %8s %10s %12.2f\n' "$round" "$variant" "$requests" "$errors" "$rps" \
            "$(echo "$used / $requests" | bc -l)"
    done
done
echo
on=$(echo "${CPU[on]} / ${REQ[on]}" | bc -l); off=$(echo "${CPU[off]} / ${REQ[off]}" | bc -l)
printf 'metrics+audit on : %.2f cpu_us/req over %d requests (%d errors)\n' "$on" "${REQ[on]}" "${ERR[on]}"
printf 'metrics+audit off: %.2f cpu_us/req over %d requests (%d errors)\n' "$off" "${REQ[off]}" "${ERR[off]}"
printf 'cost: %.2f cpu_us/req (%.1f%%)\n' "$(echo "$on - $off" | bc -l)" "$(echo "($on - $off) * 100 / $off" | bc -l)"
audit_lines=$(cat "$WORK"/audit-*.jsonl 2>/dev/null | wc -l)
echo "audit lines written: $audit_lines"
"$PORTCULLIS" audit verify "$WORK/audit-${PORT[on]}.jsonl"
[ "${ERR[on]}" -eq 0 ] && [ "${ERR[off]}" -eq 0 ] || { echo "INVALID RUN: errors" >&2; exit 1; }
