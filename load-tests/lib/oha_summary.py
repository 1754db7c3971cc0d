"""Reads oha's JSON report on stdin; prints
"requests errors req_per_s p50_ms p99_ms p999_ms aborted_at_deadline".

Errors are oha's error distribution (socket errors, timeouts) plus every non-2xx response. An
unreadable report counts as one error, so a run that never happened is never taken for a clean one.
"aborted due to deadline" is not a server error: it is oha cancelling the requests still queued or
in flight when the duration ends (with -w it waits for them on HTTP/1, but on HTTP/2 it does not);
it is reported separately.
"""
import json
import sys

try:
    r = json.load(sys.stdin)
except ValueError:
    print("0 1 0 nan nan nan 0")
    sys.exit(0)

codes = r.get("statusCodeDistribution") or {}
ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
bad = sum(n for code, n in codes.items() if not str(code).startswith("2"))
dist = dict(r.get("errorDistribution") or {})
aborted = dist.pop("aborted due to deadline", 0)
errors = bad + sum(dist.values())
pct = r.get("latencyPercentiles") or {}


def ms(key):
    v = pct.get(key)
    return "nan" if v is None else f"{v * 1000:.3f}"


rps = ok / r["summary"]["total"] if r.get("summary", {}).get("total") else 0
print(ok, errors, f"{rps:.1f}", ms("p50"), ms("p99"), ms("p99.9"), aborted)
