#!/usr/bin/env bash
# Stops what deploy/demo/start.sh started (breakglass up and the throwaway sshd), by the
# process ids it wrote in the demo directory. The directory itself (keys, database,
# recordings) stays: remove it to start afresh.
#   BREAKGLASS_DEMO  the demo directory (default /tmp/breakglass-demo)
set -euo pipefail
demo=${BREAKGLASS_DEMO:-/tmp/breakglass-demo}
for what in breakglass sshd; do
  f="$demo/$what.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  # Only the process start.sh started: a pid can be reused after a reboot.
  if [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$what"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "demo: stopped $what (pid $pid)"
  fi
  rm -f "$f"
done
