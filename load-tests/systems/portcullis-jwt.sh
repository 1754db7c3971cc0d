# shellcheck shell=bash disable=SC2034
# A passthrough route that validates the caller's JWT (RS256, signature + exp/iss/aud) against a
# cached JWKS, then forwards the caller's bearer token as it came; else as portcullis-warn
# (metrics, file audit, 10 routes besides this one, RUST_LOG=warn). The JWKS is a file the
# upstream nginx serves over loopback (fetched when the config loads, refreshed every 300 s, so
# the steady state is the cached key set); the token (lib/jwt_fixture.py, openssl-signed, valid
# a week) is sent by the load generator in every request, and the upstream answers 401 unless a
# bearer JWT reached it, so a request the gateway mangled counts as an error.
SYSTEM_DESC="Portcullis passthrough route, JWT validated (RS256, JWKS cached), RUST_LOG=warn"
SYSTEM_SORT=53
SYSTEM_PATH=/jwt/x
SYSTEM_COMPARE="portcullis-warn bare-pingora"
JWT_ISSUER="http://bench-idp.test/"
JWT_AUDIENCE="bench-api"

system_start() {
    local dir="$WORK/jwt"
    if [ ! -s "$dir/token" ]; then
        python3 "$LOAD_TESTS/lib/jwt_fixture.py" "$dir" "$JWT_ISSUER" "$JWT_AUDIENCE" \
            || die "lib/jwt_fixture.py failed"
        cp "$dir/jwks.json" "$WORK/upstream/files/jwks.json"
    fi
    cat > "$WORK/jwt-route.toml" <<TOML
[[routes]]
name = "jwt"
tenant = "bench"
path = "/jwt"
target = "http://127.0.0.1:$UPSTREAM_PORT/passthrough"
allow_destinations = ["127.0.0.0/8"]
auth = "passthrough"

[routes.jwt]
issuer = "$JWT_ISSUER"
audiences = ["$JWT_AUDIENCE"]
jwks_url = "http://127.0.0.1:$UPSTREAM_PORT/files/jwks.json"
algorithms = ["RS256"]
TOML
    SYS_EXTRA_HEADERS=("authorization: Bearer $(cat "$dir/token")")
    start_portcullis "$SYS_NAME" "$1" 10 warn no "$WORK/jwt-route.toml"
}

# The gateway must really validate: the good token gets 200, a token signed by another key under
# the same kid, an expired one and none at all each get 401 token_invalid with that reason.
system_check() {
    local url="$1" h args=() case token want got
    for h in "${REQ_HEADERS[@]}"; do args+=(-H "$h"); done
    for case in "token:200:" "bad-token:401:bad_signature" "expired-token:401:expired" "none:401:missing"; do
        IFS=: read -r token want reason <<<"$case"
        local auth=()
        [ "$token" = none ] || auth=(-H "authorization: Bearer $(cat "$WORK/jwt/$token")")
        got="$(curl -sS -m 10 "${args[@]}" "${auth[@]}" -w ' %{http_code}' "$url" 2>&1)"
        if [ "${got##* }" != "$want" ] || [[ "$got" != *"$reason"* ]]; then
            echo "$token: expected $want${reason:+ ($reason)}, got: $(head -c 200 <<<"$got")"
            return 1
        fi
    done
}
