#!/usr/bin/env bash
# Starts the demo on this machine and waits until it answers (README, "Try it"):
#   eval "$(deploy/demo/start.sh)"
# - alice's SSH key (generated), and an ssh config for her that pins the gateway's host key;
# - db-1: a throwaway OpenSSH sshd on 127.0.0.1:2200, run as you with its own host key,
#   trusting the gateway's CA, so you may log in to it as yourself through the gateway;
# - `breakglass up` on the demo config (deploy/demo/breakglass.toml, filled in with the above),
#   waited for until /readyz answers.
# Everything goes in one directory; deploy/demo/stop.sh stops both processes. Run again, it
# stops the previous demo first. Messages go to stderr; stdout is only the line for `eval`,
# which points your shell at the demo (BREAKGLASS_SERVER, BREAKGLASS_DEMO).
#   BREAKGLASS_DEMO            the demo directory (default /tmp/breakglass-demo)
#   BREAKGLASS_BIN             the breakglass binary (default: breakglass on PATH)
#   BREAKGLASS_DEMO_SSHD_PORT  db-1's port (default 2200)
#   BREAKGLASS__SERVER__LISTEN, BREAKGLASS__GATEWAY__LISTEN  where breakglass listens
#                              (default 127.0.0.1:8080 and 127.0.0.1:2222)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bg=${BREAKGLASS_BIN:-breakglass}
demo=${BREAKGLASS_DEMO:-/tmp/breakglass-demo}
port=${BREAKGLASS_DEMO_SSHD_PORT:-2200}
sshd=/usr/sbin/sshd

say() { echo "demo: $*" >&2; }
die() { echo "demo: $*" >&2; exit 1; }

command -v "$bg" >/dev/null ||
  die "no breakglass binary: run 'cargo install --locked --path app' (puts it in ~/.cargo/bin), or set BREAKGLASS_BIN"
[ -x "$sshd" ] || die "db-1 is an OpenSSH sshd, and $sshd is missing: apt-get install openssh-server"
for tool in ssh ssh-keygen curl; do
  command -v "$tool" >/dev/null || die "needs $tool: apt-get install openssh-client curl"
done

BREAKGLASS_DEMO=$demo "$here/stop.sh" >&2
umask 077
mkdir -p "$demo/target" "$demo/data"
demo=$(cd "$demo" && pwd)
login=$(id -un)

# alice's SSH key, and the demo config that lists it.
[ -f "$demo/alice" ] || ssh-keygen -q -t ed25519 -N '' -C alice@breakglass-demo -f "$demo/alice"
logins="\"$login\""
for l in postgres root; do [ "$l" = "$login" ] || logins="$logins, \"$l\""; done
sed -e "s|^ssh_keys = \[\]\$|ssh_keys = [\"$(cat "$demo/alice.pub")\"]|" \
    -e "s|\"127\.0\.0\.1:2200\"|\"127.0.0.1:$port\"|" \
    -e "s|^logins = \[.*\]\$|logins = [$logins]|" \
    "$here/breakglass.toml" >"$demo/breakglass.toml"
printf '\n# Added by start.sh.\n[server]\ndata_dir = "%s"\n' "$demo/data" >>"$demo/breakglass.toml"
grep -q 'alice@breakglass-demo' "$demo/breakglass.toml" || die "could not add alice's key to $demo/breakglass.toml"
grep -q "127.0.0.1:$port" "$demo/breakglass.toml" || die "could not set db-1's port in $demo/breakglass.toml"

# db-1: sshd trusting the gateway's CA (generated under the data directory by this command).
"$bg" ca public-key --config "$demo/breakglass.toml" >"$demo/target/ca.pub" 2>"$demo/target/ca.log" ||
  die "breakglass ca public-key failed: $(cat "$demo/target/ca.log")"
[ -f "$demo/target/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$demo/target/host_key"
cat >"$demo/target/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $demo/target/host_key
PidFile $demo/target/sshd.pid
AuthorizedKeysFile none
TrustedUserCAKeys $demo/target/ca.pub
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
Subsystem sftp internal-sftp
EOF
# As root, sshd wants its privilege separation directory.
if [ "$(id -u)" -eq 0 ]; then mkdir -p /run/sshd; fi
"$sshd" -D -e -f "$demo/target/sshd_config" </dev/null >/dev/null 2>"$demo/target/sshd.log" &
echo $! >"$demo/sshd.pid"
for _ in $(seq 100); do
  (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  kill -0 "$(cat "$demo/sshd.pid")" 2>/dev/null || die "sshd did not start: $(cat "$demo/target/sshd.log")"
  sleep 0.1
done
(echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "sshd does not answer on 127.0.0.1:$port"
# The gateway pins db-1's host key (gateway.known_hosts_file, by default in the data directory).
echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$demo/target/host_key.pub")" >"$demo/data/known_hosts"

# breakglass up, until /readyz answers.
BREAKGLASS_LOG=${BREAKGLASS_LOG:-info,sqlx=warn} \
  "$bg" up --config "$demo/breakglass.toml" </dev/null >/dev/null 2>"$demo/breakglass.log" &
echo $! >"$demo/breakglass.pid"
url='' gateway=''
for _ in $(seq 600); do
  kill -0 "$(cat "$demo/breakglass.pid")" 2>/dev/null ||
    die "breakglass up stopped: $(tail -n 20 "$demo/breakglass.log")"
  url=$(sed -n 's/.*HTTP API on \(http:[^ ]*\).*/\1/p' "$demo/breakglass.log" | head -n 1)
  gateway=$(sed -n 's/.*SSH gateway on \([^;]*\);.*/\1/p' "$demo/breakglass.log" | head -n 1)
  if [ -n "$url" ] && curl -fsS -o /dev/null "$url/readyz" 2>/dev/null; then break; fi
  url=''
  sleep 0.1
done
[ -n "$url" ] || die "breakglass up did not answer /readyz within a minute: $(tail -n 20 "$demo/breakglass.log")"

# alice's side: her key, and the gateway's host key pinned (no prompt on first connect).
echo "breakglass-demo-gateway $(ssh-keygen -y -f "$demo/data/keys/gateway_host_ed25519")" >"$demo/gateway_known_hosts"
cat >"$demo/ssh_config" <<EOF
# alice's ssh settings for the demo gateway: ssh -F $demo/ssh_config CODE@127.0.0.1
Host 127.0.0.1 localhost
  Port ${gateway##*:}
  IdentityFile $demo/alice
  IdentitiesOnly yes
  HostKeyAlias breakglass-demo-gateway
  UserKnownHostsFile $demo/gateway_known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
EOF

say "breakglass up is ready: HTTP API $url, SSH gateway $gateway (log: $demo/breakglass.log)"
say "db-1 is a throwaway sshd on 127.0.0.1:$port trusting the gateway's CA; log in to it as $login"
say "alice's SSH key is $demo/alice; ssh -F $demo/ssh_config CODE@127.0.0.1 uses it"
say "stop the demo with: deploy/demo/stop.sh"
printf 'export BREAKGLASS_SERVER=%q BREAKGLASS_DEMO=%q\n' "$url" "$demo"
