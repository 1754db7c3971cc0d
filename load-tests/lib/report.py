"""Turns one bench.sh run (the TSV files in its work directory) into RESULTS.md.

    python3 report.py --work DIR --out FILE [--check]

Medians are taken over the valid rounds only: a run with any socket error, timeout or non-2xx
response is invalid, listed as such, and never enters a median. With --check (smoke mode) the
exit status is 1 unless every system answered, every run was valid and every extra check passed.
"""
import argparse
import csv
import os
import statistics
import sys

p = argparse.ArgumentParser()
p.add_argument("--work", required=True)
p.add_argument("--out", required=True)
p.add_argument("--check", action="store_true")
args = p.parse_args()
W = args.work


def tsv(name, header=False):
    path = os.path.join(W, name)
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows[1:] if header else rows


meta = {r[0]: r[1] for r in tsv("meta.txt") if len(r) >= 2}
systems = []
for r in tsv("systems.tsv"):
    name, sort, proto, role, compare, desc = (r + [""] * 6)[:6]
    systems.append(
        {"name": name, "sort": int(sort or 99), "proto": proto, "role": role,
         "compare": compare.split(), "desc": desc}
    )
systems.sort(key=lambda s: (s["sort"], s["name"]))
by_name = {s["name"]: s for s in systems}
answers = {r[0]: (r[1], r[2] if len(r) > 2 else "") for r in tsv("answers.tsv")}
not_built = [r for r in tsv("not-built.tsv") if r]
extras_rows = [r + [""] * (3 - len(r)) for r in tsv("extras.tsv") if r]
extras = {r[0]: r[1] for r in extras_rows if r[0] != "invalid"}
extras_notes = {r[0]: r[2] for r in extras_rows}
extra_failures = [r[1] for r in extras_rows if r[0] == "invalid"]

runs = []
for r in tsv("runs.tsv", header=True):
    r = (r + [""] * 13)[:13]
    keys = ["round", "system", "kind", "rate", "requests", "errors", "rps", "cpu", "rss",
            "p50", "p99", "p999", "note"]
    runs.append(dict(zip(keys, r)))


def num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if x != x else x


def skipped(run):
    return run["note"].startswith("above knee")


def valid(run):
    return not skipped(run) and num(run["errors"]) == 0 and (num(run["requests"]) or 0) > 0


def median(name, kind, field):
    vals = [num(r[field]) for r in runs
            if r["system"] == name and r["kind"] == kind and valid(r)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def counts(name, kind):
    rs = [r for r in runs if r["system"] == name and r["kind"] == kind]
    return sum(valid(r) for r in rs), sum(not skipped(r) for r in rs), sum(skipped(r) for r in rs)


def fmt(v, digits=1, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 1000 and digits <= 1:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.{digits}f}×"


def lat(name, kind):
    done, total, skip = counts(name, kind)
    if total == 0 and skip:
        return "above knee"
    vals = [median(name, kind, f) for f in ("p50", "p99", "p999")]
    if all(v is None for v in vals):
        return "—"
    return " / ".join(fmt(v, 2) for v in vals)


full = meta.get("mode") == "full"
loads = []
for k in ("load_start", "load_end"):
    try:
        loads.append(max(float(x) for x in meta.get(k, "").split()))
    except ValueError:
        pass
preliminary = any(l > 0.5 for l in loads)

out = []
w = out.append
w("# Load-test results")
w("")
w("Written by `load-tests/bench.sh` (see load-tests/README.md for the method and how to read this).")
w("Do not edit by hand: run the command below again.")
w("")
if preliminary:
    w(f"**PRELIMINARY: the machine was busy (load average {meta.get('load_start', '?')} at the start, "
      f"{meta.get('load_end', '?')} at the end; above 0.5 other work shared the cores), so absolute "
      "numbers are noisy; same-run ratios are less affected, but not immune.**")
    w("")
if not full:
    w(f"**Mode: {meta.get('mode')} — a check that the harness works, not a measurement.**")
    w("")
w(f"- command: `{meta.get('command', '')}`")
w(f"- started {meta.get('started', '?')}, finished {meta.get('finished', '?')} "
  f"({meta.get('duration_s', '?')} s); interleaved rounds: {meta.get('rounds')}, "
  f"{meta.get('seconds')} s per load run")
w(f"- load average (1/5/15 min): {meta.get('load_start', '?')} at the start, "
  f"{meta.get('load_end', '?')} at the end")
w(f"- machine: {meta.get('machine_nproc')} × {meta.get('machine_cpu')}, "
  f"{meta.get('machine_mem')}, kernel {meta.get('machine_kernel')}")
w(f"- versions: {meta.get('v_portcullis')}; Pingora {meta.get('v_pingora')}; "
  f"{meta.get('v_rustc')}; nginx {meta.get('v_nginx')}; {meta.get('v_node')}; "
  f"{meta.get('v_wrk')}; {meta.get('v_oha')}; {meta.get('v_h2load')}")
w(f"- fixed rates: {meta.get('rate_low')} and {meta.get('rate_high')} req/s = 25% and 50% of "
  f"nginx's max in this run ({meta.get('nginx_calibration_rps')} req/s, one calibration run "
  "before round 1)")
w("")
w("Load runs: `wrk -t1 -c32 -d{S}s` (h1) or `h2load -t1 -c4 -m8 -D {S}` (h2 over TLS) for max "
  "throughput; `oha -z {S}s -c 32 -q RATE --latency-correction` (plus `--http2 --insecure` for "
  "h2) for latency, all on the load core with the upstream; every request carries the same four "
  "headers (gateway key, accept, user-agent, cookie).")
w("")

commands = []
for r in tsv("commands.tsv"):
    if len(r) >= 2 and r[0] not in {c[0] for c in commands}:
        commands.append((r[0], r[1]))
if commands:
    w("<details><summary>How each process was started (configs are generated into the run's temporary "
      "directory: lib/gen_config.py for Portcullis, write_nginx_proxy_conf in lib/bench-lib.sh for nginx)</summary>")
    w("")
    w("```")
    for name, cmd in commands:
        w(f"{name}: {cmd}")
    w("```")
    w("</details>")
    w("")

w("## Per system (medians of the valid rounds)")
w("")
w(f"| system | what | valid max runs | max req/s | CPU µs/req | RSS MiB | p50 / p99 / p99.9 ms @ {meta.get('rate_low')} req/s | p50 / p99 / p99.9 ms @ {meta.get('rate_high')} req/s |")
w("|---|---|---|---|---|---|---|---|")
for s in systems:
    n = s["name"]
    if answers.get(n, ("no",))[0] != "yes":
        w(f"| {n} | {s['desc']} | did not answer | — | — | — | — | — |")
        continue
    ok, total, _ = counts(n, "max")
    cpu = median(n, "max", "cpu")
    rss = median(n, "max", "rss")
    w(f"| {n} | {s['desc']} | {ok}/{total} | {fmt(median(n, 'max', 'rps'))} | "
      f"{fmt(cpu, 1) if s['role'] != 'limit' else 'n/a'} | "
      f"{fmt(rss / 1024 if rss else None, 1) if s['role'] != 'limit' else 'n/a'} | "
      f"{lat(n, 'low')} | {lat(n, 'high')} |")
w("")
# Systems of several processes (SYS_MEASURE_PIDS, e.g. gateway + agent): each one's share.
for s in systems:
    shares = {}
    for r in runs:
        if r["system"] == s["name"] and r["kind"] == "max" and valid(r) \
                and r["note"].startswith("CPU us/req by process: "):
            for part in r["note"].split(": ", 1)[1].split(","):
                proc, _, v = part.partition("=")
                if num(v) is not None:
                    shares.setdefault(proc, []).append(num(v))
    if shares:
        w(f"{s['name']}: CPU µs/req by process (medians): "
          + ", ".join(f"{p} {fmt(statistics.median(v), 1)}" for p, v in shares.items()) + ".")
        w("")
w("CPU µs/req: the proxy's user+system time (all its threads and processes, from /proc/PID/stat) "
  "over the requests completed in the max-throughput run. \"above knee\": the rate exceeds 80% of "
  "what this system reached closed-loop in that round, so it was not run open-loop.")
w("")

w("## Ratios (same run, medians)")
w("")
w("| ratio | CPU µs/req | max req/s | p99 @ high rate |")
w("|---|---|---|---|")
for s in systems:
    for other in s["compare"]:
        if other not in by_name:
            w(f"| {s['name']} / {other} | — | — | — (no {other} in this run) |")
            continue
        a, b = s["name"], other
        cpu = ratio(median(a, "max", "cpu"), median(b, "max", "cpu")) \
            if by_name[b]["role"] != "limit" else "n/a"
        w(f"| {a} / {b} | {cpu} | {ratio(median(a, 'max', 'rps'), median(b, 'max', 'rps'))} | "
          f"{ratio(median(a, 'high', 'p99'), median(b, 'high', 'p99'))} |")
w("")

# Issue 11's targets that one same-run ratio decides: (what, system, divided by, field, bound,
# "max" = at most / "min" = at least). A missed one says by how much; a system not in the run
# (or without valid rounds) leaves its row open.
TARGETS = [
    ("inject route CPU per request", "portcullis-warn", "bare-pingora", "cpu", 1.10, "max"),
    ("inject route CPU per request (stretch)", "portcullis-warn", "nginx", "cpu", 1.00, "max"),
    ("throughput over the Node proxy", "portcullis-warn", "node-proxy", "rps", 15.0, "min"),
    ("10,000 routes CPU per request", "portcullis-10k-routes", "portcullis-warn", "cpu", 1.05, "max"),
    ("passthrough + JWT (cached JWKS) CPU per request", "portcullis-jwt", "portcullis-warn", "cpu", 1.15, "max"),
    ("broker route throughput (gateway + agent on one core)", "portcullis-broker", "portcullis-warn", "rps", 0.60, "min"),
]
w("## Targets (issue 11; same run, medians)")
w("")
w("| target | ratio | bound | result |")
w("|---|---|---|---|")
for what, a, b, field, bound, kind in TARGETS:
    label = "CPU µs/req" if field == "cpu" else "max req/s"
    va, vb = median(a, "max", field), median(b, "max", field)
    sign = "≤" if kind == "max" else "≥"
    if a not in by_name or b not in by_name or va is None or vb is None or vb == 0:
        result = "not measured in this run"
        r = "—"
    else:
        r = va / vb
        met = r <= bound if kind == "max" else r >= bound
        result = "met" if met else f"**missed** by {abs(r / bound - 1) * 100:.0f}%"
        r = f"{r:.2f}×"
    w(f"| {what}: {a} / {b}, {label} | {r} | {sign} {bound:.2f}× | {result} |")
w("")
if not full:
    w("(Smoke mode: one short round on a busy machine; the results here only show the table works.)")
    w("")

if "direct" in by_name:
    w("## Latency added over direct (ms, medians)")
    w("")
    w(f"| system | p50 @ low | p99 @ low | p99.9 @ low | p50 @ high | p99 @ high | p99.9 @ high |")
    w("|---|---|---|---|---|---|---|")
    for s in systems:
        if s["name"] == "direct" or s["proto"] != "h1":
            continue
        cells = []
        for kind in ("low", "high"):
            for f in ("p50", "p99", "p999"):
                a, b = median(s["name"], kind, f), median("direct", kind, f)
                cells.append("—" if a is None or b is None else f"{a - b:+.2f}")
        w(f"| {s['name']} | " + " | ".join(cells) + " |")
    w("")


def x(key, digits=None):
    v = extras.get(key)
    if v is None:
        return "—"
    if digits is not None and num(v) is not None:
        return fmt(num(v), digits)
    return v


w("## Once per run, on fresh processes")
w("")
if "reload.api_ok" in extras:
    w("### Reloads under full load (portcullis, 10 routes)")
    w("")
    w("| what | value |")
    w("|---|---|")
    w(f"| window | {x('reload.seconds')} s of wrk at full speed |")
    w(f"| valid reloads through POST /api/v1/reload (200) | {x('reload.api_ok')} = **{x('reload.api_per_s')}/s** |")
    w(f"| all successful reloads (metric; API + file watcher) | {x('reload.total_success')} = {x('reload.total_per_s')}/s |")
    w(f"| invalid configs refused (422) | {x('reload.invalid_rejected')} |")
    w(f"| requests / errors while reloading | {x('reload.requests')} / **{x('reload.errors')}** |")
    w(f"| req/s while reloading / without | {x('reload.rps')} / {x('reload.baseline_rps')} |")
    w("")
if "big.mib" in extras:
    w(f"### {x('big.mib')} MiB through the inject route")
    w("")
    w("| direction | status | seconds | gateway CPU s | gateway peak RSS (VmHWM) |")
    w("|---|---|---|---|---|")
    w(f"| (after start + one request) | | | | {fmt(num(extras.get('big.hwm_start_kb')) / 1024 if num(extras.get('big.hwm_start_kb')) else None)} MiB |")
    w(f"| download | {x('big.down_status')} | {x('big.down_seconds', 2)} | {x('big.down_cpu_s', 2)} | {fmt(num(extras.get('big.down_hwm_kb')) / 1024 if num(extras.get('big.down_hwm_kb')) else None)} MiB |")
    w(f"| upload (PUT) | {x('big.up_status')} | {x('big.up_seconds', 2)} | {x('big.up_cpu_s', 2)} | {fmt(num(extras.get('big.up_hwm_kb')) / 1024 if num(extras.get('big.up_hwm_kb')) else None)} MiB |")
    w("")
idle = sorted({k.split(".")[1] for k in extras if k.startswith("idle.")},
              key=lambda n: by_name.get(n, {"sort": 99})["sort"])
if idle:
    w("### Memory per idle keep-alive connection")
    w("")
    w("| system | connections held | still open | RSS before → with them | per connection |")
    w("|---|---|---|---|---|")
    for n in idle:
        b = num(extras.get(f"idle.{n}.rss_before_kb"))
        a = num(extras.get(f"idle.{n}.rss_after_kb"))
        per = num(extras.get(f"idle.{n}.bytes_per_conn"))
        w(f"| {n} | {x(f'idle.{n}.conns')} | {x(f'idle.{n}.alive')} | "
          f"{fmt(b / 1024 if b else None)} → {fmt(a / 1024 if a else None)} MiB | "
          f"{fmt(per / 1024 if per is not None else None, 1)} KiB |")
    w("")

w("## Not built yet")
w("")
if not_built:
    w("Variants issue 11 asks for whose feature is not on this branch; nothing is measured in their place:")
    w("")
    for r in not_built:
        w(f"- `{r[0]}`: {r[1] if len(r) > 1 else ''}")
else:
    w("None: every planned variant has a definition.")
w("")

invalid = [r for r in runs if not skipped(r) and not valid(r)]
w("## Invalid runs and failed checks")
w("")
unanswered = [n for n in by_name if answers.get(n, ("no",))[0] != "yes"]
if not invalid and not extra_failures and not unanswered:
    w("None.")
for n in unanswered:
    w(f"- {n} did not answer the benchmark request with 200 ok: `{answers.get(n, ('', ''))[1]}`")
for r in invalid:
    w(f"- round {r['round']} {r['system']} {r['kind']}: {r['requests']} requests, {r['errors']} errors — excluded")
for f in extra_failures:
    w(f"- {f}")
w("")

w("## Every run")
w("")
w("| round | system | run | rate | requests | errors | req/s | CPU µs/req | RSS kB | p50 ms | p99 ms | p99.9 ms | note |")
w("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in runs:
    w("| " + " | ".join(r[k] for k in ("round", "system", "kind", "rate", "requests", "errors", "rps",
                                           "cpu", "rss", "p50", "p99", "p999", "note")) + " |")
w("")

with open(args.out, "w") as f:
    f.write("\n".join(out))

if args.check:
    passed = failed = 0
    # A system's own after-rounds check (system_after) is recorded as "NAME after the rounds: …".
    after = {s["name"]: [f for f in extra_failures if f.startswith(s["name"] + " after the rounds:")]
             for s in systems}
    for s in systems:
        n = s["name"]
        ok = answers.get(n, ("no",))[0] == "yes" and counts(n, "max")[0] > 0 and not any(
            r["system"] == n and not skipped(r) and not valid(r) for r in runs) and not after[n]
        print(f"smoke {n}: {'ok' if ok else 'FAILED'}" + "".join(f" ({f})" for f in after[n]))
        passed, failed = passed + ok, failed + (not ok)
    extra_failures = [f for f in extra_failures if not any(f in fs for fs in after.values())]
    for f in extra_failures:
        print(f"smoke extra: FAILED: {f}")
        failed += 1
    if not extra_failures:
        passed += 1
        print("smoke extras (reloads, large body, idle connections): ok")
    print(f"bench: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
