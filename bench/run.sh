#!/usr/bin/env bash
# The breakglass gateway benchmark: builds the release binary, then runs bench/bench.py, which
# starts a throwaway target sshd, a ProxyJump sshd and `breakglass up`, measures throughput,
# keystroke latency, connect time, memory per idle session and recording size, and rewrites
# the results section of BENCHMARKS.md. See BENCHMARKS.md for what is measured and how.
#
#   bench/run.sh              full run (512 MiB, N=3, 1000 keystrokes, 10 connects, 200 sessions)
#   bench/run.sh --quick      smoke test (64 MiB, N=1, 200 keystrokes, 5 connects, 20 sessions);
#                             prints the results without touching BENCHMARKS.md
#   bench/run.sh --runs 5 --sessions 100 --cipher aes256-gcm@openssh.com ...
#
# Options of its own: --rev REV (build and measure commit REV, from `git archive`, instead of the
# working tree), --no-build (use the binary already built), -h/--help. Everything else goes to
# bench/bench.py (listed below). Honours CARGO_TARGET_DIR.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
command_line="bench/run.sh${*:+ $*}"

die() {
    echo "bench/run.sh: $*" >&2
    exit 2
}

build=1
rev=
pass=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-build) build=0 ;;
        --rev) [[ $# -ge 2 ]] || die "--rev needs a commit"; rev=$2; shift ;;
        --rev=*) rev=${1#--rev=} ;;
        -h | --help)
            sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
            echo
            python3 "$here/bench.py" --help 2>/dev/null | sed -n '/^options:/,$p' || true
            exit 0
            ;;
        *) pass+=("$1") ;;
    esac
    shift
done
[[ -z $rev || $build -eq 1 ]] || die "--rev and --no-build do not go together"

# Prerequisites, each with the fix.
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: apt-get install openssh-server (scripts/test installs it too)"
for tool in ssh ssh-keygen; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install openssh-client"
done
python=$(command -v python3 || true)
[[ -n $python ]] || { [[ -x /usr/bin/python3 ]] && python=/usr/bin/python3; }
[[ -n $python ]] || die "python3 is missing: apt-get install python3"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 8))' || die "python3 3.8 or newer is needed ($("$python" --version 2>&1))"
for tool in base64 head nproc; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install coreutils"
done
[[ $(id -u) -eq 0 ]] || echo "bench/run.sh: warning: not root; the throwaway sshd may not be able to log you in" >&2

target_dir=${CARGO_TARGET_DIR:-$root/target}
bin=$target_dir/release/breakglass
src=$root
src_tmp=
git_desc=
trap '[[ -z $src_tmp ]] || rm -rf "$src_tmp"' EXIT
if [[ -n $rev ]]; then
    sha=$(git -C "$root" rev-parse --verify --quiet "$rev^{commit}") || die "--rev $rev: no such commit"
    src_tmp=$(mktemp -d "${TMPDIR:-/tmp}/bg-bench-src.XXXXXX")
    git -C "$root" archive "$sha" | tar -x -C "$src_tmp"
    src=$src_tmp
    git_desc="${sha:0:7} (--rev $rev, built from git archive)"
fi
if [[ $build -eq 1 ]]; then
    command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (or pass --no-build with a built $bin)"
    echo "bench/run.sh: cargo build --release -p breakglass in $src (CARGO_TARGET_DIR=$target_dir)" >&2
    rc=0
    (cd "$src" && CARGO_TARGET_DIR=$target_dir cargo build --release -p breakglass) || rc=$?
    [[ -z $src_tmp ]] || rm -rf "$src_tmp"
    [[ $rc -eq 0 ]] || die "the build failed (exit $rc)"
fi
[[ -x $bin ]] || die "$bin is missing: run without --no-build, or set CARGO_TARGET_DIR to where it was built"

# Two sockets per idle session in the gateway, one pipe per session here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# bench.py kills everything it started when it gets SIGTERM; forward ^C and friends to it.
py_pid=
stop() {
    if [[ -n $py_pid ]] && kill -0 "$py_pid" 2>/dev/null; then
        kill -TERM "$py_pid" 2>/dev/null || true
        wait "$py_pid" 2>/dev/null || true
    fi
    py_pid=
}
trap stop EXIT
trap 'stop; exit 130' INT TERM HUP

"$python" "$here/bench.py" --bin "$bin" --repo "$root" --command "$command_line" \
    ${git_desc:+--git "$git_desc"} ${pass[@]+"${pass[@]}"} &
py_pid=$!
rc=0
wait "$py_pid" || rc=$?
py_pid=
exit "$rc"
