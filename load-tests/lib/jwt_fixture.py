"""Writes the JWT fixture of the portcullis-jwt benchmark system (see systems/portcullis-jwt.sh).

    python3 jwt_fixture.py OUT_DIR ISSUER AUDIENCE

An RSA-2048 key pair made with the openssl CLI (Python's standard library cannot sign, and the
machine has openssl: bench.sh checks for it), and in OUT_DIR:

- jwks.json: the public key as a JWKS (kty RSA, kid bench-rs256-1, alg RS256), for the gateway to
  fetch over loopback;
- token: an RS256 JWT with iss ISSUER, aud AUDIENCE, iat now and exp a week away (a benchmark
  run lasts well under an hour), signed with that key: the caller's token in every request;
- bad-token: the same claims signed by another key under the same kid (the gateway must refuse it
  with 401 bad_signature);
- expired-token: signed by the right key, but exp an hour ago (401 expired).

RS256 because it is what most identity providers publish and the route's default algorithm.
The private keys stay in OUT_DIR (the run's temporary directory) and are good for nothing else.
"""
import base64
import json
import os
import subprocess
import sys
import time

KID = "bench-rs256-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args: str, data: bytes = b"") -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def make_key(path: str) -> None:
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    os.chmod(path, 0o600)


def public_jwk(path: str) -> dict:
    # `-modulus` prints "Modulus=HEX"; the exponent openssl uses is 65537 (AQAB).
    text = openssl("rsa", "-in", path, "-noout", "-modulus").decode().strip()
    modulus = bytes.fromhex(text.split("=", 1)[1])
    return {"kty": "RSA", "kid": KID, "alg": "RS256", "use": "sig",
            "n": b64url(modulus), "e": b64url((65537).to_bytes(3, "big"))}


def sign(key: str, claims: dict) -> str:
    header = {"alg": "RS256", "typ": "JWT", "kid": KID}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    signature = openssl("dgst", "-sha256", "-sign", key, data=signing_input.encode())
    return signing_input + "." + b64url(signature)


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: jwt_fixture.py OUT_DIR ISSUER AUDIENCE")
    out, issuer, audience = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    key, other = os.path.join(out, "key.pem"), os.path.join(out, "other-key.pem")
    make_key(key)
    make_key(other)
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "bench-user", "iat": now,
              "exp": now + 7 * 24 * 3600}
    files = {
        "jwks.json": json.dumps({"keys": [public_jwk(key)]}),
        "token": sign(key, claims),
        "bad-token": sign(other, claims),
        "expired-token": sign(key, {**claims, "iat": now - 7200, "exp": now - 3600}),
    }
    for name, text in files.items():
        with open(os.path.join(out, name), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
