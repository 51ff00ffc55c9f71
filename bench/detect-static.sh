#!/usr/bin/env bash
# obs-detect's static mode (`detect --path`) over the static corpus tests/fixtures/static/*
# (small source trees with expected.yaml): language and framework accuracy and confident wrong
# answers, and, side by side on the same trees, the language an established build tool
# detects (nixpacks' `detect`, installed from crates.io with `cargo install nixpacks --locked`).
# Prints figures; asserts nothing (tests/detect_static.rs asserts the targets).
#
#   bench/detect-static.sh                          # builds the release binary
#   BIN=target/debug/obs-stack bench/detect-static.sh
#   NIXPACKS=/path/to/nixpacks bench/detect-static.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/obs-stack}
if [ "$BIN" = target/release/obs-stack ]; then
  echo "== building release binary" >&2
  cargo build --release --quiet
fi
NIXPACKS=${NIXPACKS:-$(command -v nixpacks || true)}
for c in /opt/nixpacks/bin/nixpacks "$HOME/.cargo/bin/nixpacks"; do
  [ -n "$NIXPACKS" ] || { [ -x "$c" ] && NIXPACKS=$c; } || true
done
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for d in tests/fixtures/static/*/; do
  name=$(basename "$d")
  "$BIN" detect --path "$d" --json > "$OUT/$name.ours.json" 2>/dev/null || true
  if [ -n "$NIXPACKS" ]; then
    "$NIXPACKS" detect "$d" > "$OUT/$name.peer.txt" 2>/dev/null || echo "error" > "$OUT/$name.peer.txt"
  fi
done
peer_version=none
[ -n "$NIXPACKS" ] && peer_version=$("$NIXPACKS" --version 2>/dev/null | head -1)

python3 - "$OUT" "$peer_version" <<'PY'
import json, os, sys
out, peer_version = sys.argv[1], sys.argv[2]
root = "tests/fixtures/static"
# nixpacks provider -> obs-detect language id
PEER = {"python": "python", "node": "node", "ruby": "ruby", "php": "php", "go": "go",
        "golang": "go", "rust": "rust", "java": "java", "csharp": "dotnet", "fsharp": "dotnet", "c#": "dotnet", "f#": "dotnet",
        "elixir": "elixir", "deno": "deno", "gleam": "gleam", "cpp": "cpp", "c": "cpp",
        "shell": "shell", "staticfile": None}
def expected(name):
    e = {}
    for line in open(os.path.join(root, name, "expected.yaml")):
        k, _, v = line.partition(":")
        v = v.strip().strip('"')
        e[k.strip()] = None if v in ("null", "") else v
    return e
names = sorted(n for n in os.listdir(root) if os.path.isdir(os.path.join(root, n)))
n = len(names)
ours = dict(lang=0, fw=0, wrong=0, abstain=0)
peer = dict(lang=0, wrong=0, abstain=0, ran=0)
rows = []
for name in names:
    e = expected(name)
    try:
        d = json.load(open(os.path.join(out, name + ".ours.json")))
    except Exception:
        d = {}
    lang, fw = d.get("language"), d.get("framework")
    serves = (d.get("frontend") or {}).get("serves")
    conf = d.get("confidence") or 0
    lang_ok = lang == e.get("language")
    fe_ok = (serves is not None and (e.get("serves") is None or serves == e.get("serves"))) \
        if e.get("kind") == "frontend" else serves is None
    fw_ok = fw == e.get("framework") and fe_ok
    ours["lang"] += lang_ok
    ours["fw"] += fw_ok
    ours["abstain"] += lang is None and e.get("language") is not None
    if ((lang is not None and not lang_ok) or (fw is not None and fw != e.get("framework"))) and conf >= 0.5:
        ours["wrong"] += 1
    p = os.path.join(out, name + ".peer.txt")
    plang = "-"
    if os.path.exists(p):
        peer["ran"] += 1
        providers = [l.strip() for l in open(p) if l.strip()]
        plang = PEER.get(providers[0], providers[0]) if providers else None
        peer["lang"] += plang == e.get("language")
        peer["abstain"] += plang is None and e.get("language") is not None
        peer["wrong"] += plang is not None and plang != e.get("language")
    if not (lang_ok and fw_ok) or (plang != "-" and plang != e.get("language")):
        rows.append(f"  {name:28} expected {e.get('language')}/{e.get('framework')}  ours {lang}/{fw}{'/' + serves if serves else ''}  peer {plang}")
pct = lambda k, d, m=n: f"{100.0 * d[k] / m:5.1f}%" if m else "  n/a"
print(f"static corpus: {n} trees (tests/fixtures/static)")
print(f"{'':22}{'obs-detect --path':>20}{'nixpacks detect':>20}")
print(f"{'language accuracy':22}{pct('lang', ours):>20}{pct('lang', peer, peer['ran']) if peer['ran'] else 'not installed':>20}")
print(f"{'framework accuracy':22}{pct('fw', ours):>20}{'(not reported)':>20}")
print(f"{'confident wrong':22}{ours['wrong']:>20}{peer['wrong'] if peer['ran'] else '-':>20}")
print(f"{'abstained':22}{ours['abstain']:>20}{peer['abstain'] if peer['ran'] else '-':>20}")
print(f"peer: {peer_version} (language = its first provider; every answer counts as confident)")
if rows:
    print("trees where either is wrong:")
    print("\n".join(rows))
PY
