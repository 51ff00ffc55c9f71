#!/usr/bin/env python3
"""Summary of bench/overhead.sh's raw rows: medians with [min–max] per figure and per variant,
deltas against `base` paired by round (the variants of one round ran back to back), `!` where
the spread of a delta (max − min) is larger than the delta itself, and the targets of the prod
profile. Usage: overhead_report.py RAW.tsv VARIANT...
"""
import statistics
import sys
from collections import defaultdict

raw, variants = sys.argv[1], sys.argv[2:]
fixed = defaultdict(dict)  # (app, ep, v) -> {round: (p50, p99, cpu, ok)}
sat = defaultdict(dict)  # (app, v) -> {round: (rps, cpu)}
rss = {}
idle = {}
start = defaultdict(list)
meta = {}
red = []
apps = []
for line in open(raw):
    f = line.rstrip("\n").split("\t")
    kind, app = f[0], f[1]
    if kind == "meta":
        meta[app] = dict(rate_w=f[3], rate_o=f[4], cap_w=f[5], cap_o=f[6], label=f[7].replace("_", " "),
                         n=f[8] if len(f) > 8 else None, rate_w1=f[9] if len(f) > 9 else None,
                         cap_w1=f[10] if len(f) > 10 else None)
        apps.append(app)
    elif kind == "fixed":
        fixed[(app, f[2], f[3])][int(f[4])] = tuple(float(x) for x in f[5:9])
    elif kind == "sat":
        sat[(app, f[3])][int(f[4])] = tuple(float(x) for x in f[5:7])
    elif kind == "rss":
        rss[(app, f[3])] = float(f[5]) if f[5] != "NaN" else float("nan")
        idle[(app, f[3])] = float(f[6]) if len(f) > 6 else float("nan")
    elif kind == "start":
        start[(app, f[3])].append(float(f[5]))
    elif kind == "red":
        red.append((f[1], f[2], f[3]))


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fig(xs, fmt="%.2f"):
    if not xs:
        return "-"
    return (fmt + " [" + fmt + "–" + fmt + "]") % (med(xs), min(xs), max(xs))


def deltas(cur, base, idx):
    """Per-round relative deltas (%) of field idx, paired by round."""
    return [(cur[r][idx] - base[r][idx]) / base[r][idx] * 100 for r in cur if r in base and base[r][idx] > 0]


def dfig(ds):
    if not ds:
        return "-", None
    m, lo, hi = med(ds), min(ds), max(ds)
    flag = "!" if (hi - lo) > abs(m) else " "
    return "%+.1f%% [%+.1f…%+.1f]%s" % (m, lo, hi, flag), m


summary = {}  # (app, v) -> dict of median deltas
for app in apps:
    m = meta[app]
    print()
    print(f"## {app}: {m['label']}")
    co = m["cap_o"].split("/")
    print(f"   capacity (wrk -c4): base /work {m['cap_w']} req/s, base /orders/7 {co[0]} req/s, slowest variant "
          f"/orders/7 {co[-1]} req/s → fixed rates /work {m['rate_w']} req/s (LOAD × base), "
          f"/orders/7 {m['rate_o']} req/s (LOAD × slowest)")
    if m["n"]:
        print(f"   /work is /work?n={m['n']}: a fixed count of loop rounds, ~WORK_MS of CPU on base")
    if m["rate_w1"]:
        print(f"   /work1 is /work?n={int(m['n']) // 5} (~1/5 of it): base capacity {m['cap_w1']} req/s → fixed rate {m['rate_w1']} req/s")
    for ep in ("/work", "/work1", "/orders/7"):
        if not any(k[0] == app and k[1] == ep for k in fixed):
            continue
        print(f"   {ep} at a fixed rate — medians of the rounds [min–max]; Δ = median of per-round deltas vs base [min…max]")
        print("   %-9s %-22s %-24s %-22s %-26s %-26s %-26s %s" % (
            "variant", "p50 ms", "p99 ms", "CPU ms/req", "Δp50", "Δp99", "ΔCPU/req", "ok"))
        base = fixed.get((app, ep, "base"), {})
        for v in variants:
            cur = fixed.get((app, ep, v), {})
            if not cur:
                continue
            vals = list(cur.values())
            d50, m50 = dfig(deltas(cur, base, 0)) if v != "base" else ("", None)
            d99, m99 = dfig(deltas(cur, base, 1)) if v != "base" else ("", None)
            dcpu, mcpu = dfig(deltas(cur, base, 2)) if v != "base" else ("", None)
            ok = min(x[3] for x in vals)
            print("   %-9s %-22s %-24s %-22s %-26s %-26s %-26s %s" % (
                v, fig([x[0] for x in vals]), fig([x[1] for x in vals]), fig([x[2] for x in vals], "%.3f"),
                d50, d99, dcpu, "%.1f%%" % (ok * 100)))
            s = summary.setdefault((app, v), {})
            s[ep] = (m50, m99, mcpu, d50, d99, dcpu)
    print("   saturation (wrk -c4 on /work): req/s and CPU ms/req")
    base = sat.get((app, "base"), {})
    for v in variants:
        cur = sat.get((app, v), {})
        if not cur:
            continue
        vals = list(cur.values())
        drps, mrps = dfig(deltas(cur, base, 0)) if v != "base" else ("", None)
        dcpu, _ = dfig(deltas(cur, base, 1)) if v != "base" else ("", None)
        print("   %-9s %-26s Δ %-26s CPU %-24s Δ %s" % (
            v, fig([x[0] for x in vals], "%.1f"), drps, fig([x[1] for x in vals], "%.3f"), dcpu))
        summary.setdefault((app, v), {})["sat"] = (mrps, drps)
    print("   memory (anonymous RSS after the rounds), idle CPU (no traffic) and start-up (docker start → first 200)")
    for v in variants:
        if (app, v) not in rss:
            continue
        r, b = rss.get((app, v), float("nan")), rss.get((app, "base"), float("nan"))
        st, sb = start.get((app, v), []), start.get((app, "base"), [])
        print("   %-9s RSS %7.1f MiB (%+.1f)   idle CPU %7.3f ms/s   start %-28s (%+.0f ms)" % (
            v, r, r - b, idle.get((app, v), float("nan")), fig(st, "%.0f"), med(st) - med(sb) if st and sb else float("nan")))
        summary.setdefault((app, v), {})["mem"] = (r - b, (med(st) - med(sb)) if st and sb else float("nan"),
                                                   idle.get((app, v), float("nan")))
    if (app, "/work", "prod0") in fixed:
        print("   before/after: prod (this checkout) against prod0 (the previous prod profile), per-round deltas")
        for ep in ("/work", "/work1", "/orders/7"):
            if (app, ep, "prod") not in fixed or (app, ep, "prod0") not in fixed:
                continue
            a, b = fixed[(app, ep, "prod")], fixed[(app, ep, "prod0")]
            print("   %-9s p50 %s  p99 %s  CPU/req %s" % (
                ep, dfig(deltas(a, b, 0))[0], dfig(deltas(a, b, 1))[0], dfig(deltas(a, b, 2))[0]))
        a, b = sat.get((app, "prod"), {}), sat.get((app, "prod0"), {})
        print("   %-9s req/s %s  CPU/req %s" % ("saturated", dfig(deltas(a, b, 0))[0], dfig(deltas(a, b, 1))[0]))

print()
print("## RED metrics at the collector (http.server.request.duration: routes, requests in the largest export)")
for svc, routes, n in red:
    print(f"   {svc:32s} {n:>8s}  {routes}")

print()
print("## Targets at prod on /work at a fixed rate: Δp50 <= +3%, Δp99 <= +5%, ΔCPU/req <= +5%, each below operator")
for app in apps:
    p, o = summary.get((app, "prod"), {}).get("/work"), summary.get((app, "operator"), {}).get("/work")
    if not p:
        continue
    verdict = []
    for name, i, lim in (("p50", 0, 3), ("p99", 1, 5), ("cpu", 2, 5)):
        val = p[i]
        good = val is not None and val <= lim and (o is None or o[i] is None or val < o[i])
        verdict.append("%s %+.1f%% %s%s" % (name, val, "ok" if good else "MISS",
                                            "" if o is None else " (operator %+.1f%%)" % o[i]))
    print(f"   {app:16s} " + "; ".join(verdict))
    aa = summary.get((app, "aa"), {}).get("/work")
    if aa:
        print(f"   {'':16s} A/A (base against a second base container): p50 {aa[0]:+.1f}%, p99 {aa[1]:+.1f}%,"
              f" cpu {aa[2]:+.1f}%: effects this size are noise")

print()
print("## Markdown (README): medians of per-round deltas vs base; ! = spread larger than the effect")
print()
print("| app | variant | /work p50 | /work p99 | /work CPU/req | ~1 ms p50 | ~1 ms CPU/req | /orders p50 | /orders CPU/req | saturation req/s | RSS | idle CPU | start |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for app in apps:
    for v in variants:
        if v == "base":
            continue
        s = summary.get((app, v), {})
        if not s:
            continue
        w, w1, o = s.get("/work"), s.get("/work1"), s.get("/orders/7")
        sr, mem = s.get("sat"), s.get("mem")

        def short(d):
            return d.split(" ")[0] + ("!" if d.endswith("!") else "") if d else "-"
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            app, v, short(w[3]) if w else "-", short(w[4]) if w else "-", short(w[5]) if w else "-",
            short(w1[3]) if w1 else "-", short(w1[5]) if w1 else "-",
            short(o[3]) if o else "-", short(o[5]) if o else "-", short(sr[1]) if sr else "-",
            "%+.0f MiB" % mem[0] if mem else "-", "%.2f ms/s" % mem[2] if mem else "-",
            "%+.0f ms" % mem[1] if mem else "-"))
