#!/usr/bin/env bash
# Lays out the container image's root folder: make-root.sh ROOT BINARY
#
# Run by the Containerfile's builder stage (ROOT=/out, then `COPY --from=builder /out/ /`) and
# by the end-to-end test (tests/tests/deploy.rs), which starts the binary in the same layout as
# an unprivileged user with the root read-only. What ROOT holds, and nothing else:
#   /usr/local/bin/breakglass          the binary (ENTRYPOINT)
#   /lib*, /usr/lib*                   the shared libraries `ldd` names, and the loader
#   /etc/breakglass/breakglass.toml    the default config (deploy/container/breakglass.toml)
#   /etc/passwd, /etc/group            root and breakglass (65532), for tools that look names up
#   /etc/ssl/certs/ca-certificates.crt TLS roots (Slack, Discord, PostgreSQL with TLS, S3)
#   /var/lib/breakglass                the volume: owned by 65532, mode 0700
#   /dev, /proc, /tmp                  empty mount points the runtime fills
# Must run as root (it chowns the data directory to 65532).
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 ROOT BINARY" >&2; exit 2; }
root=$1
binary=$2
here=$(cd "$(dirname "$0")" && pwd)
uid=65532

mkdir -p "$root"
install -D -m 0755 "$binary" "$root/usr/local/bin/breakglass"
install -D -m 0644 "$here/breakglass.toml" "$root/etc/breakglass/breakglass.toml"

# The dynamic loader and every library the binary links, at the paths the loader looks in.
# (A static binary has none: ldd says "not a dynamic executable".)
if ldd "$binary" >/dev/null 2>&1; then
  ldd "$binary" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
fi

ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "$ca is missing: install the ca-certificates package" >&2; exit 1; }
install -D -m 0644 "$ca" "$root$ca"

printf 'root:x:0:0:root:/:/sbin/nologin\nbreakglass:x:%s:%s:breakglass:/var/lib/breakglass:/sbin/nologin\n' \
  "$uid" "$uid" > "$root/etc/passwd"
printf 'root:x:0:\nbreakglass:x:%s:\n' "$uid" > "$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

install -d -m 0700 -o "$uid" -g "$uid" "$root/var/lib/breakglass"
install -d -m 0755 "$root/dev" "$root/proc"
install -d -m 1777 "$root/tmp"
