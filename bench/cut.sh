#!/usr/bin/env bash
# Cut latency under the decoy attack (issue 11): a hostile client keeps a channel it never
# reads full of output and types on another; measures seconds from the revoke (API call
# returned) and from the signed deadline to the client's TCP connection closed by the gateway.
# Runs the two decoy tests of tests/tests/hostile.rs ROUNDS times (each a fresh world: sshd +
# breakglass up) and prints p50/p99/max of each.
# Usage: bench/cut.sh [ROUNDS]   (default 10; each round takes ~20 s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bg-target}"
cargo build -q -p breakglass
cargo nextest run -p breakglass-e2e --test hostile --no-run >/dev/null 2>&1
out=$(mktemp)
for i in $(seq "$rounds"); do
  printf 'round %s/%s\n' "$i" "$rounds" >&2
  cargo nextest run -p breakglass-e2e --test hostile --no-capture \
    -E 'test(a_revoke_cuts_a_client_that_never_reads_its_decoy_channel) | test(the_deadline_cuts_a_client_that_never_reads_its_decoy_channel)' \
    2>&1 | grep -o 'cut-latency [a-z]* Some([0-9.e-]*)' >>"$out" || true
done
python3 - "$out" <<'PY'
import re, sys
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r"cut-latency (\w+) Some\(([-0-9.e]+)\)", line)
    if m:
        vals.setdefault(m.group(1), []).append(float(m.group(2)))
for kind in ("revoke", "deadline"):
    v = sorted(vals.get(kind, []))
    if not v:
        print(f"{kind}: no samples (a cut that never closed the connection counts as a failure)")
        continue
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
    print(f"{kind} -> TCP closed: n={len(v)} p50={q(0.5)*1000:.0f} ms p99={q(0.99)*1000:.0f} ms max={v[-1]*1000:.0f} ms")
PY
rm -f "$out"
