#!/usr/bin/env bash
# A scripted walk against a running demo server (deploy/demo/start.sh starts one, or
#   breakglass up --config deploy/demo/breakglass.toml --data-dir ./data
# does); it waits up to a minute for the server's /readyz first.
# request -> first approval -> still pending -> second approval -> granted -> revoke, once
# through the CLI and once through the HTTP API (curl). Exits non-zero at the first surprise.
#   BREAKGLASS_SERVER  server URL (default http://127.0.0.1:8080)
#   BREAKGLASS_BIN     the breakglass binary (default: breakglass on PATH)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tokens.env
. "$here/tokens.env"
bg=${BREAKGLASS_BIN:-breakglass}
export BREAKGLASS_SERVER=${BREAKGLASS_SERVER:-http://127.0.0.1:8080}

# Top-level string field of a JSON object (compact or pretty-printed by the CLI).
field() { tr -d '\n' | grep -o "\"$1\": *\"[^\"]*\"" | head -n1 | sed 's/.*: *"\(.*\)"/\1/'; }
check() { # check WHAT EXPECTED ACTUAL
  if [ "$2" != "$3" ]; then echo "walk: $1: expected '$2', got '$3'" >&2; exit 1; fi
  echo "walk: $1: $3"
}
as() { local who=$1; shift; local var="${who^^}_TOKEN"; BREAKGLASS_TOKEN=${!var} "$bg" --json "$@"; }

for _ in $(seq 600); do
  curl -fsS -o /dev/null "$BREAKGLASS_SERVER/readyz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$BREAKGLASS_SERVER/readyz" ||
  { echo "walk: no breakglass server answers at $BREAKGLASS_SERVER/readyz" >&2; exit 1; }

echo "== through the CLI"
code=$(as alice request db-1 --as postgres --for 30m replica lag, need to kill a query | field code)
check "request opened" "pending" "$(as alice status "$code" | field status)"
check "first approval (bob)" "pending" "$(as bob approve "$code" | field status)"
check "still pending" "pending" "$(as carol status "$code" | field status)"
check "second approval (carol)" "approved" "$(as carol approve "$code" | field status)"
line=$(as alice status "$code" | field connect)
case "$line" in
  "ssh -p "[0-9]*" $code@127.0.0.1") echo "walk: connect line for alice: $line" ;;
  *) echo "walk: connect line for alice: expected 'ssh -p PORT $code@127.0.0.1', got '$line'" >&2; exit 1 ;;
esac
check "revoked by bob" "revoked" "$(as bob revoke "$code" | field status)"

echo "== through the HTTP API"
api() { # api WHO METHOD PATH [JSON]
  local var="${1^^}_TOKEN"
  curl -sS -X "$2" -H "Authorization: Bearer ${!var}" -H 'content-type: application/json' \
    ${4:+--data "$4"} "$BREAKGLASS_SERVER$3"
}
code=$(api alice POST /api/v1/requests '{"host":"db-1","duration":"20m","reason":"disk full on /var"}' | field code)
check "request opened" "pending" "$(api alice GET "/api/v1/requests/$code" | field status)"
check "first approval (carol)" "pending" "$(api carol POST "/api/v1/requests/$code/approve" | field status)"
check "second approval (bob)" "approved" "$(api bob POST "/api/v1/requests/$code/approve" | field status)"
check "revoked by alice" "revoked" "$(api alice POST "/api/v1/requests/$code/revoke" | field status)"
echo "walk: done"
