#!/usr/bin/env bash
# Revoke to cut across replicas (issue 15): the revoke API call on one bot replica until the
# ssh client of a session on another process's gateway has exited (EOF), with every gateway's
# database poll set to an hour, so only the change feed (PostgreSQL LISTEN/NOTIFY) can explain
# the cut; and the one-node number beside it (`breakglass up` on PostgreSQL, same measure).
# Runs the two tests of tests/tests/replicas.rs that print `cut-latency KIND SECONDS` ROUNDS
# times (each a fresh database, target and processes) and prints p50/p99/max of each.
# Usage: bench/replicas.sh [ROUNDS]   (default 10; each round takes ~15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bg-target}"
cargo build -q -p breakglass
cargo nextest run -p breakglass-e2e --test replicas --no-run >/dev/null 2>&1
out=$(mktemp)
for i in $(seq "$rounds"); do
  printf 'round %s/%s\n' "$i" "$rounds" >&2
  cargo nextest run -p breakglass-e2e --test replicas --no-capture --test-threads 1 \
    -E 'test(a_revoke_through_one_bot_cuts_a_session_on_another_gateway_at_once) | test(a_revoke_in_one_process_on_postgres_cuts_at_once)' \
    2>&1 | grep -o 'cut-latency [a-z-]* [0-9.e-]*' >>"$out" || true
done
python3 - "$out" <<'PY'
import re, sys
vals = {}
for line in open(sys.argv[1]):
    m = re.match(r"cut-latency ([\w-]+) ([-0-9.e]+)", line)
    if m:
        vals.setdefault(m.group(1), []).append(float(m.group(2)))
for kind, what in (("replicas", "revoke on bot B -> client EOF on gateway A (2 bots, 2 gateways)"),
                   ("one-node", "revoke -> client EOF in breakglass up (one process)")):
    v = sorted(vals.get(kind, []))
    if not v:
        print(f"{kind}: no samples")
        continue
    q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
    print(f"{what}: n={len(v)} p50={q(0.5)*1000:.0f} ms p99={q(0.99)*1000:.0f} ms max={v[-1]*1000:.0f} ms")
PY
rm -f "$out"
