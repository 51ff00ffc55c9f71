#!/usr/bin/env python3
"""Scores obs-detect JSON results against the fixtures' expected.yaml (helper of detect.sh).

Per framework: precision = correct claims / claims, recall = correct claims / fixtures.
Abstain: no framework claimed (P < 50%). Brier: for every fixture the top framework candidate's
stated probability p (0 when none) against y = 1 if it is the expected framework; the same for
the language. Run for both modes: host (/proc) and API-only (Docker API alone)."""
import json, os, sys
from collections import defaultdict

def load_expected(path):
    out = {}
    for line in open(path):
        if ':' in line and not line.startswith('#'):
            k, v = line.split(':', 1)
            out[k.strip()] = v.split('#')[0].strip().strip('"')
    return out

def score(fixdir, outdir, suffix):
    claims, correct, present = defaultdict(int), defaultdict(int), defaultdict(int)
    lang_ok = lang_n = abstain = n = 0
    brier_fw, brier_lang, wrong = [], [], []
    neg_fw = 0
    for name in sorted(os.listdir(fixdir)):
        exp_path = os.path.join(fixdir, name, 'expected.yaml')
        res_path = os.path.join(outdir, name + suffix)
        if not os.path.exists(exp_path) or not os.path.exists(res_path):
            continue
        e = load_expected(exp_path)
        try:
            d = json.load(open(res_path))
        except Exception:
            d = {}
        n += 1
        kind = e.get('kind')
        want_fw = e.get('framework') if kind == 'app' and e.get('framework') != 'unknown' else None
        want_infra = e.get('framework') if kind == 'infra' else None
        got = d.get('framework') or (d.get('infrastructure') if d.get('kind') == 'Infrastructure' else None)
        want = want_fw or want_infra
        if want:
            present[want] += 1
        if got:
            claims[got] += 1
            if got == want:
                correct[got] += 1
            else:
                wrong.append(f"{name}: claimed {got}, expected {want or 'none'}")
        else:
            abstain += 1
            if want:
                wrong.append(f"{name}: abstained, expected {want}")
        if kind == 'negative' and d.get('framework'):
            neg_fw += 1
        want_lang = e.get('language') if e.get('language') not in (None, 'none') else None
        if kind == 'app':
            lang_n += 1
            lang_ok += d.get('language') == want_lang
        cands = d.get('candidates') or []
        fw_c = [c for c in cands if c.get('kind') in ('framework', 'infrastructure')]
        top = max(fw_c, key=lambda c: c['probability'], default=None)
        p = top['probability'] if top else 0.0
        y = 1.0 if top and top['id'] == want else 0.0
        if not want and not top:
            y, p = 0.0, 0.0
        brier_fw.append((p - y) ** 2)
        lang_c = [c for c in cands if c.get('kind') == 'language']
        lt = max(lang_c, key=lambda c: c['probability'], default=None)
        lp = lt['probability'] if lt else 0.0
        ly = 1.0 if lt and lt['id'] == want_lang else 0.0
        brier_lang.append((lp - ly) ** 2)
    mode = {'.api.json': 'API only', '.cold.json': 'cold: host /proc, 1 s after start'}.get(suffix, 'host /proc')
    print(f"-- mode: {mode}, {n} fixtures")
    print(f"{'technology':<14} {'fixtures':>8} {'claims':>7} {'precision':>9} {'recall':>7}")
    tp_all = sum(correct.values()); cl_all = sum(claims.values()); pr_all = sum(present.values())
    for t in sorted(set(present) | set(claims)):
        prec = correct[t] / claims[t] if claims[t] else float('nan')
        rec = correct[t] / present[t] if present[t] else float('nan')
        print(f"{t:<14} {present[t]:>8} {claims[t]:>7} {prec:>9.2f} {rec:>7.2f}")
    print(f"{'overall':<14} {pr_all:>8} {cl_all:>7} {tp_all / max(cl_all, 1):>9.2f} {tp_all / max(pr_all, 1):>7.2f}")
    print(f"language accuracy (app fixtures): {lang_ok}/{lang_n} = {lang_ok / max(lang_n, 1):.0%}")
    print(f"abstained (no framework/infrastructure claimed): {abstain}/{n}")
    print(f"negatives with a framework at >= 50%: {neg_fw}")
    print(f"Brier score, framework/infrastructure: {sum(brier_fw) / max(len(brier_fw), 1):.4f}; language: {sum(brier_lang) / max(len(brier_lang), 1):.4f}")
    for w in wrong:
        print(f"  mismatch: {w}")
    print()
    return dict(n=n, correct=correct, present=present, claims=claims, lang=(lang_ok, lang_n))

def columns(results):
    """The modes side by side: per technology, correct claims / fixtures (recall)."""
    names = [m for m, r in results if r['n']]
    rs = [r for _, r in results if r['n']]
    if not rs:
        return
    techs = sorted(set().union(*[set(r['present']) | set(r['claims']) for r in rs]))
    print("-- side by side: correct / fixtures per technology (wrong claims in brackets)")
    print(f"{'technology':<14}" + "".join(f"{m:>14}" for m in names))
    for t in techs:
        cells = []
        for r in rs:
            bad = r['claims'][t] - r['correct'][t]
            cell = f"{r['correct'][t]}/{r['present'][t]}" + (f" [{bad}]" if bad else "")
            cells.append(f"{cell:>14}")
        print(f"{t:<14}" + "".join(cells))
    print(f"{'language':<14}" + "".join(f"{str(r['lang'][0]) + '/' + str(r['lang'][1]):>14}" for r in rs))

if __name__ == '__main__':
    fixdir, outdir = sys.argv[1], sys.argv[2]
    results = [('warm host', score(fixdir, outdir, '.json')),
               ('warm API', score(fixdir, outdir, '.api.json')),
               ('cold host', score(fixdir, outdir, '.cold.json'))]
    columns(results)
