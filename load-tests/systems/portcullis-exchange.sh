# shellcheck shell=bash disable=SC2034
# An exchange route: the tenant's client id + secret exchanged (OAuth client credentials, HTTP
# Basic) for a short-lived token at a token endpoint, the token cached and injected; else as
# portcullis-warn (metrics, file audit, 10 routes besides this one, RUST_LOG=warn). The token
# endpoint is the upstream nginx's /oauth/token (lib/bench-lib.sh): it answers only the client's
# own Basic credentials, with a token that lives a day, so the steady state measured is the
# cached token (refresh_skew_seconds is far from expiry). The route's target is the upstream's
# /exchanged/, which answers 401 unless that exact token came: every benchmark request is checked.
SYSTEM_DESC="Portcullis exchange route (client credentials, token cached), RUST_LOG=warn"
SYSTEM_SORT=54
SYSTEM_PATH=/exchange/x
SYSTEM_COMPARE="portcullis-warn bare-pingora"

system_start() {
    cat > "$WORK/exchange-route.toml" <<TOML
[[routes]]
name = "exchange"
tenant = "bench"
path = "/exchange"
target = "http://127.0.0.1:$UPSTREAM_PORT/exchanged"
allow_destinations = ["127.0.0.0/8"]
auth = "exchange"

[routes.exchange]
kind = "client_credentials"
token_url = "http://127.0.0.1:$UPSTREAM_PORT/oauth/token"
client_id = "\${secret:exchange-client-id}"
client_secret = "\${secret:exchange-client-secret}"
TOML
    PC_ENV=("PORTCULLIS_SECRET_BENCH_EXCHANGE_CLIENT_ID=$EXCHANGE_CLIENT_ID"
        "PORTCULLIS_SECRET_BENCH_EXCHANGE_CLIENT_SECRET=$EXCHANGE_CLIENT_SECRET")
    start_portcullis "$SYS_NAME" "$1" 10 warn no "$WORK/exchange-route.toml"
}

# exchange_count ADMIN_PORT: the route's exchange count from GET /api/v1/secrets, and its error.
exchange_count() {
    curl -sS -m 10 -H 'Authorization: Bearer bench-admin-token' "http://127.0.0.1:$1/api/v1/secrets" \
        | python3 -c '
import json, sys
doc = json.load(sys.stdin)
e = [x for x in doc.get("exchanges", []) if x.get("route") == "exchange"]
print(e[0]["exchanges"] if e else "none", (e[0].get("last_error") if e else None) or "")'
}

# A few requests through the route: all 200, and the gateway exchanged exactly once.
system_check() {
    local url="$1" admin="$2" h args=() i got count err
    for h in "${REQ_HEADERS[@]}"; do args+=(-H "$h"); done
    for i in 1 2 3 4 5; do
        got="$(curl -sS -m 10 "${args[@]}" -w ' %{http_code}' "$url" 2>&1)"
        [ "$got" = "ok 200" ] || { echo "request $i: $(head -c 200 <<<"$got")"; return 1; }
    done
    read -r count err < <(exchange_count "$admin")
    [ "$count" = 1 ] || { echo "expected 1 exchange after 5 requests, the admin API says ${count:-?} ${err}"; return 1; }
}

# After every round: still one exchange, so every measured request used the cached token.
system_after() {
    local count err
    read -r count err < <(exchange_count "$2")
    [ "$count" = 1 ] || { echo "expected 1 exchange over the whole run, the admin API says ${count:-?} ${err}"; return 1; }
}
