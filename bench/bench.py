#!/usr/bin/env python3
"""The breakglass gateway benchmark (started by bench/run.sh; Python 3 standard library only).

It builds a throwaway world in a temporary directory: a target OpenSSH sshd (trusting the
gateway's CA for certificates and the bench key through AuthorizedKeysFile), a jump sshd for
the ProxyJump baseline, a probe sshd (LogLevel DEBUG1, only to see which cipher the gateway's
upstream leg negotiates), and `breakglass up` with its HTTP API and SSH gateway. Then it
measures, side by side:

1. bulk output throughput: `cat` of a printable file through the gateway (recording on),
   direct to the target, and through a ProxyJump hop; the same for upload (to `cat >
   /dev/null`) and a bidirectional stream (`cat` echoing what the client sends), and 32
   transfers each way with a hang count (no progress for 10 s = a hang, killed and counted);
2. keystroke echo latency: single-byte round trips in a PTY (`stty raw -echo; cat`);
3. connect time: `ssh ... true`;
4. gateway RSS per idle session;
5. recording size relative to the output.

Every process it starts is killed on exit (normal end, error, SIGINT, SIGTERM, SIGHUP), and
the temporary directory is removed unless --keep-tmp is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import platform
import re
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

MIB = 1024 * 1024
# Seconds between the last interactive session opened and the memory reading (9.): past the 2 s
# after which a quiet screen sleeps (recorder SCREEN_QUIET).
PTY_SETTLE_S = 13
CLK_TCK = os.sysconf("SC_CLK_TCK")
F_SETPIPE_SZ = 1031
RESULTS_START = "<!-- bench:results:start -->"
RESULTS_END = "<!-- bench:results:end -->"
TOKENS = {who: f"bgt_bench_{who}_not_secret" for who in ("alice", "bob", "carol")}


class BenchError(Exception):
    """A failure with a message meant for the person running the bench."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# /proc helpers


def proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime of PID (plus its reaped children's when `children`), in seconds."""
    f = proc_stat_fields(pid)
    if f is None:
        return 0.0
    ticks = int(f[11]) + int(f[12])
    if children:
        ticks += int(f[13]) + int(f[14])
    return ticks / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Every live descendant of PID (children first discovered, breadth first)."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        f = proc_stat_fields(int(d))
        if f is None:
            continue
        kids.setdefault(int(f[1]), []).append(int(d))
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def status_kib(pid: int, key: str) -> int:
    """A `kB` line of /proc/PID/status (VmRSS, VmHWM, RssAnon, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def system_busy_seconds() -> float:
    """Busy CPU time of the whole machine (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    # guest time is already included in user/nice
    total = sum(v[:8])
    return (total - idle) / CLK_TCK


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = proc_stat_fields(int(d))
            if f is not None and int(f[1]) == pid:
                out.append(int(d))
    return out


def become_subreaper() -> bool:
    """Orphaned descendants (ProxyJump's inner ssh, a session whose sshd died) are reparented to
    us rather than to init: we can reap them (their CPU time is then counted) and kill them."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, math.ceil(p / 100 * len(sorted_values)) - 1)
    return sorted_values[k]


def summary_ms(values: list[float | None]) -> str:
    """`p50 … p99 … max … ms (n=…)` of seconds; a missing value (never happened) is named."""
    v = sorted(x for x in values if x is not None)
    missing = len(values) - len(v)
    if not v:
        return f"no samples ({missing} missing)"
    return (f"p50 {percentile(v, 50) * 1000:.0f} ms, p99 {percentile(v, 99) * 1000:.0f} ms, "
            f"max {v[-1] * 1000:.0f} ms (n={len(v)}" + (f", {missing} MISSING" if missing else "") + ")")


def p99_ms(values: list[float | None]) -> float:
    """p99 in ms; infinite when a value is missing (a cut that never came fails its goal)."""
    if not values or any(x is None for x in values):
        return math.inf
    return percentile(sorted(values), 99) * 1000  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.a = args
        self.bin = Path(args.bin)
        self.login = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        base = args.tmpdir or None
        self.tmp = Path(tempfile.mkdtemp(prefix="bg-bench-", dir=base))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.procs: list[subprocess.Popen] = []  # everything we started, in start order
        self.listeners: list[subprocess.Popen] = []  # sshd listeners (their trees are killed)
        self.remote_pids: set[int] = set()  # `sleep 600` processes of idle sessions
        self.lock = threading.Lock()
        self.seq = 0
        self.gw: subprocess.Popen | None = None
        self.api_url = ""
        self.gw_port = 0
        self.cleaned = False
        self.quiet: list[dict] = []

    # ---- process bookkeeping ---------------------------------------------------------------

    def errlog(self, name: str) -> Path:
        with self.lock:
            self.seq += 1
            return self.logs / f"{self.seq:04d}-{name}.err"

    def spawn(self, argv: list[str], name: str, **kw) -> subprocess.Popen:
        """Starts a child in its own session (so a terminal ^C reaches only us), stderr to a log."""
        if self.cleaned:
            raise BenchError("shutting down")
        err = self.errlog(name)
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        with open(err, "wb") as ef:
            p = subprocess.Popen(argv, stderr=ef, start_new_session=True, **kw)
        p.errpath = err  # type: ignore[attr-defined]
        with self.lock:
            self.procs.append(p)
        return p

    def forget(self, p: subprocess.Popen) -> None:
        with self.lock:
            if p in self.procs:
                self.procs.remove(p)

    @staticmethod
    def err_text(p: subprocess.Popen) -> str:
        try:
            return Path(p.errpath).read_text(errors="replace").strip()  # type: ignore[attr-defined]
        except OSError:
            return ""

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        # 1. idle sessions' remote sleeps (checked by name: the pid may have been reused)
        for pid in list(self.remote_pids):
            try:
                if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        # 2. clients (everything that is not a listener or the gateway)
        special = set(map(id, self.listeners)) | ({id(self.gw)} if self.gw else set())
        for p in list(self.procs):
            if id(p) not in special and p.poll() is None:
                p.kill()
        # 3. every process under each sshd listener (sessions run in their own sessions, so
        #    killing the listener alone would orphan them), then the listener
        for l in self.listeners:
            if l.poll() is None:
                for pid in descendants(l.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                l.kill()
        # 4. the gateway: SIGTERM (it closes its recordings), then SIGKILL
        if self.gw and self.gw.poll() is None:
            self.gw.terminate()
            try:
                self.gw.wait(15)
            except subprocess.TimeoutExpired:
                self.gw.kill()
        for p in list(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        # 5. orphans reparented to us (we are a child subreaper), e.g. ProxyJump's inner ssh
        tracked = {p.pid for p in self.procs}
        for pid in children_of(os.getpid()):
            if pid not in tracked:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (OSError, ChildProcessError):
                    pass
        if self.a.keep_tmp:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def reap_orphans(self, timeout: float = 5.0) -> None:
        """Waits for (and reaps) children we did not start ourselves: orphans reparented to us."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                mine = {p.pid for p in self.procs}
            orphans = [pid for pid in children_of(os.getpid()) if pid not in mine]
            if not orphans or time.monotonic() > deadline:
                return
            for pid in orphans:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            time.sleep(0.02)

    def busy_over(self, seconds: float) -> float:
        """Cores the whole machine kept busy over the next `seconds`."""
        b0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(seconds)
        return (system_busy_seconds() - b0) / (time.monotonic() - t0)

    def wait_quiet(self, what: str) -> float:
        """Waits up to --quiet-wait seconds until the machine is nearly idle (others' builds and
        tests share it); returns the busy cores last seen, and keeps it for the report."""
        t0 = time.monotonic()
        deadline = t0 + self.a.quiet_wait
        while True:
            busy = self.busy_over(0.5)
            if busy < self.a.quiet_busy or time.monotonic() >= deadline:
                break
        waited = time.monotonic() - t0
        if busy >= self.a.quiet_busy:
            log(f"{what}: the machine is still busy ({busy:.2f} cores) after {waited:.0f} s; measuring anyway")
        self.quiet.append({"what": what, "busy": busy, "waited_s": waited})
        return busy

    # ---- setup -----------------------------------------------------------------------------

    def run_ok(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(argv, capture_output=True, text=True, **kw)
        if r.returncode != 0:
            raise BenchError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def keygen(self, path: Path, comment: str = "bench") -> str:
        self.run_ok(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        return Path(str(path) + ".pub").read_text().strip()

    def openssh_version(self) -> tuple[int, int]:
        out = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr
        m = re.search(r"OpenSSH_(\d+)\.(\d+)", out)
        return (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def start_sshd(self, name: str, ca_line: str | None, loglevel: str = "VERBOSE") -> dict:
        d = self.tmp / name
        d.mkdir()
        os.makedirs("/run/sshd", exist_ok=True)
        key = d / "ssh_host_ed25519_key"
        self.keygen(key, f"{name}-host")
        host_pub = Path(str(key) + ".pub").read_text().split()
        (d / "authorized_keys").write_text(self.client_pub + "\n")
        lines = [
            "ListenAddress 127.0.0.1",
            f"HostKey {key}",
            f"PidFile {d}/sshd.pid",
            f"AuthorizedKeysFile {d}/authorized_keys",
            "UsePAM no",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes",
            f"LogLevel {loglevel}",
            "UseDNS no",
            # many concurrent connections from one address
            "MaxStartups 2000",
            "MaxSessions 2000",
            "ClientAliveInterval 0",
        ]
        if ca_line:
            (d / "ca.pub").write_text(ca_line + "\n")
            lines.append(f"TrustedUserCAKeys {d}/ca.pub")
        if self.openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")
        if self.a.cipher:
            lines.append(f"Ciphers {self.a.cipher}")
        if self.a.kex:
            lines.append(f"KexAlgorithms {self.a.kex}")
        for attempt in range(5):
            port = free_port()
            cfg = d / "sshd_config"
            cfg.write_text("\n".join([f"Port {port}"] + lines) + "\n")
            errf = d / "sshd.log"
            with open(errf, "wb") as ef:
                p = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=ef, start_new_session=True)
            p.errpath = errf  # type: ignore[attr-defined]
            self.procs.append(p)
            self.listeners.append(p)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return {"name": name, "port": port, "proc": p, "dir": d, "log": errf,
                            "known_hosts": f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}"}
                except OSError:
                    time.sleep(0.02)
            p.kill()
            p.wait()
        raise BenchError(f"sshd ({name}) did not start: {(d / 'sshd.log').read_text(errors='replace')}")

    def write_client_config(self) -> None:
        """One ssh_config for every client, so that ProxyJump's inner ssh (which gets -F but not
        -o options) uses the same options."""
        lines = [
            "Host *",
            f"  IdentityFile {self.client_key}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  BatchMode yes",
            "  LogLevel ERROR",
            "  EscapeChar none",
            "  ControlMaster no",
            "  ForwardAgent no",
            "  ForwardX11 no",
            "  Compression no",
        ]
        if self.a.cipher:
            lines.append(f"  Ciphers {self.a.cipher}")
        if self.a.kex:
            lines.append(f"  KexAlgorithms {self.a.kex}")
        self.client_cfg = self.tmp / "ssh_config"
        self.client_cfg.write_text("\n".join(lines) + "\n")

    def ssh_argv(self, path: str, code: str | None = None, extra: list[str] | None = None) -> list[str]:
        """`ssh` to the target by `path`: gateway (user = grant code), direct, or jump."""
        base = ["ssh", "-F", str(self.client_cfg)] + (extra or [])
        if path == "gateway":
            assert code
            pin = ["-c", self.a.gateway_cipher] if self.a.gateway_cipher else []
            return base + pin + ["-p", str(self.gw_port), f"{code}@127.0.0.1"]
        if path == "direct":
            return base + ["-p", str(self.target["port"]), f"{self.login}@127.0.0.1"]
        if path == "jump":
            return base + ["-J", f"{self.login}@127.0.0.1:{self.jump['port']}",
                           "-p", str(self.target["port"]), f"{self.login}@127.0.0.1"]
        raise ValueError(path)

    def start_gateway(self) -> None:
        data = self.tmp / "data"
        ca = self.run_ok([str(self.bin), "ca", "public-key", "--data-dir", str(data)], cwd=self.tmp,
                         env=self.clean_env()).stdout.strip()
        self.ca_line = ca
        self.target = self.start_sshd("target", ca)
        self.jump = self.start_sshd("jump", None)
        self.probe = self.start_sshd("probe", ca, loglevel="DEBUG1")
        kh = self.tmp / "known_hosts"
        kh.write_text(self.target["known_hosts"] + "\n" + self.probe["known_hosts"] + "\n")
        sha = {w: hashlib.sha256(t.encode()).hexdigest() for w, t in TOKENS.items()}
        cfg = f"""# written by bench/bench.py
[server]
# Every grant is requested and approved through the API from 127.0.0.1: no per-source rate.
requests_per_second_per_source = 0

[gateway]
known_hosts_file = "{kh}"
connect_timeout = "15s"

[users.alice]
groups = ["oncall"]
ssh_keys = ["{self.client_pub}"]
api_token_sha256 = "{sha['alice']}"
[users.bob]
groups = ["dba"]
api_token_sha256 = "{sha['bob']}"
[users.carol]
groups = ["dba"]
api_token_sha256 = "{sha['carol']}"

[scopes.bench]
hosts = {{ target = "127.0.0.1:{self.target['port']}", probe = "127.0.0.1:{self.probe['port']}" }}
logins = ["{self.login}"]
max_duration = "1h"
default_duration = "1h"
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 2

# The same target under another name, for grants of a few seconds (expiry -> cut, 7.)
[scopes.cuts]
hosts = {{ cut = "127.0.0.1:{self.target['port']}" }}
logins = ["{self.login}"]
max_duration = "1h"
default_duration = "1h"
requester_groups = ["oncall"]
approver_groups = ["dba"]
quorum = 2
"""
        self.gw_config = self.tmp / "gateway.toml"
        self.gw_config.write_text(cfg)
        self.gw_port = free_port()
        http_port = free_port()
        env = self.clean_env()
        env["BREAKGLASS_LOG"] = "info,sqlx=warn"
        self.gw_log = self.tmp / "gateway.log"
        with open(self.gw_log, "wb") as ef:
            self.gw = subprocess.Popen(
                [str(self.bin), "up", "--config", str(self.gw_config), "--data-dir", str(data),
                 "--listen", f"127.0.0.1:{http_port}", "--ssh-listen", f"127.0.0.1:{self.gw_port}"],
                cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=ef,
                start_new_session=True)
        self.gw.errpath = self.gw_log  # type: ignore[attr-defined]
        self.procs.append(self.gw)
        self.recordings = data / "recordings"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.gw.poll() is not None:
                raise BenchError(f"breakglass up exited ({self.gw.returncode}):\n{self.gw_log.read_text(errors='replace')}")
            m = re.search(r"HTTP API on (\S+)", self.gw_log.read_text(errors="replace"))
            if m:
                try:
                    socket.create_connection(("127.0.0.1", self.gw_port), timeout=1).close()
                    self.api_url = m.group(1).rstrip("/")
                    if not self.api_url.startswith("http"):
                        self.api_url = "http://" + self.api_url
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise BenchError(f"breakglass up did not listen within 60 s:\n{self.gw_log.read_text(errors='replace')}")

    @staticmethod
    def clean_env() -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("BREAKGLASS")}

    def setup(self) -> None:
        self.client_key = self.tmp / "bench_key"
        self.keygen(self.client_key, "bench")
        self.client_pub = Path(str(self.client_key) + ".pub").read_text().strip()
        self.write_client_config()
        self.start_gateway()
        log(f"target sshd :{self.target['port']}, jump sshd :{self.jump['port']}, probe sshd "
            f":{self.probe['port']}, gateway ssh :{self.gw_port}, API {self.api_url}, tmp {self.tmp}")

    # ---- API -------------------------------------------------------------------------------

    def api(self, who: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {TOKENS[who]}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def grant(self, host: str = "target", duration: str = "1h") -> str:
        """Requests `host` as alice, approves as bob and carol; returns the grant code."""
        s, v = self.api("alice", "POST", "/api/v1/requests",
                        {"host": host, "login": self.login, "reason": "benchmark run", "duration": duration})
        if s != 201:
            raise BenchError(f"request refused ({s}): {v}")
        code = v["code"]
        for who in ("bob", "carol"):
            s, v = self.api(who, "POST", f"/api/v1/requests/{code}/approve")
            if s != 200:
                raise BenchError(f"approval by {who} refused ({s}): {v}")
        return code

    def sealed_recording(self, code: str, timeout: float = 120) -> Path:
        """The .cast of grant `code` once its .sig is written (the recording is closed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in self.recordings.glob(f"{code}*.cast"):
                if Path(str(p) + ".sig").exists():
                    return p
            time.sleep(0.05)
        raise BenchError(f"no sealed recording for {code} after {timeout:.0f} s")

    # ---- 0. ciphers ------------------------------------------------------------------------

    def probe_algorithms(self) -> dict:
        """Which key exchange and cipher each leg negotiated, from `ssh -v` (client legs) and
        the probe sshd's DEBUG1 log (the gateway's upstream leg)."""
        out: dict = {"cipher": {}, "kex": {}}
        pat = re.compile(r"kex: server->client cipher: (\S+)")
        kex = re.compile(r"kex: algorithm: (\S+)")
        for path in ("direct", "jump", "gateway"):
            # the gateway's probe session goes to the probe sshd, whose DEBUG1 log names the cipher
            code = self.grant("probe") if path == "gateway" else None
            before = self.probe["log"].stat().st_size
            argv = self.ssh_argv(path, code, ["-v"]) + ["true"]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            if r.returncode != 0:
                raise BenchError(f"{path} probe failed ({r.returncode}): {r.stderr[-2000:]}")
            out["cipher"][path] = sorted(set(pat.findall(r.stderr)))
            out["kex"][path] = sorted(set(kex.findall(r.stderr)))
            if path == "gateway":
                time.sleep(0.3)
                with open(self.probe["log"], "rb") as f:
                    f.seek(before)
                    new = f.read().decode(errors="replace")
                out["cipher"]["gateway_upstream"] = sorted(set(re.findall(r"kex: client->server cipher: (\S+)", new)))
                out["kex"]["gateway_upstream"] = sorted(set(kex.findall(new)))
        log(f"negotiated: {out}")
        return out

    # ---- 1. bulk output --------------------------------------------------------------------

    def make_file(self) -> Path:
        f = self.tmp / "bulk.txt"
        size = self.a.size_mib * MIB
        log(f"generating {self.a.size_mib} MiB of base64 text (76-char lines)")
        with open(f, "wb") as out:
            b64 = subprocess.Popen(["base64", "-w", "76", "/dev/urandom"], stdout=subprocess.PIPE)
            head = subprocess.Popen(["head", "-c", str(size)], stdin=b64.stdout, stdout=out)
            b64.stdout.close()  # type: ignore[union-attr]
            head.wait()
            b64.wait()
        if f.stat().st_size != size:
            raise BenchError(f"{f} has {f.stat().st_size} bytes, expected {size}")
        # read once so every run reads it from the page cache
        with open(f, "rb") as r:
            while r.read(8 * MIB):
                pass
        return f

    def stream_once(self, path: str, file: Path) -> dict:
        code = self.grant() if path == "gateway" else None
        argv = self.ssh_argv(path, code) + ["cat", str(file)]
        quiet = self.wait_quiet(f"bulk {path}")
        listener = self.target["proc"]
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        sys0 = system_busy_seconds()
        gw0 = cpu_seconds(self.gw.pid)
        tgt0 = cpu_seconds(listener.pid, children=True)
        jmp0 = cpu_seconds(self.jump["proc"].pid, children=True)
        t0 = time.perf_counter()
        p = self.spawn(argv, f"bulk-{path}", stdout=subprocess.PIPE)
        fd = p.stdout.fileno()  # type: ignore[union-attr]
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, MIB)
        except OSError:
            pass
        buf = bytearray(MIB)
        total = 0
        t_first = None
        while True:
            r, _, _ = select.select([fd], [], [], 300)
            if not r:
                p.kill()
                raise BenchError(f"bulk {path}: no output for 300 s after {total} bytes")
            n = os.readv(fd, [buf])
            if n == 0:
                break
            if t_first is None:
                t_first = time.perf_counter()
            total += n
        t_last = time.perf_counter()
        rc = p.wait(120)
        t_exit = time.perf_counter()
        p.stdout.close()  # type: ignore[union-attr]
        self.forget(p)
        self.reap_orphans()  # ProxyJump's inner `ssh -W`, so that its CPU time is counted
        gw1 = cpu_seconds(self.gw.pid)
        sys1 = system_busy_seconds()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        if rc != 0 or total != file.stat().st_size:
            raise BenchError(f"bulk {path}: exit {rc}, got {total} of {file.stat().st_size} bytes: {self.err_text(p)}")
        # wait until the sshd session processes are reaped, so the listener's cumulative
        # children times include them
        for l in (self.target["proc"], self.jump["proc"]):
            deadline = time.monotonic() + 10
            while descendants(l.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        tgt1 = cpu_seconds(listener.pid, children=True)
        jmp1 = cpu_seconds(self.jump["proc"].pid, children=True)
        stream_s = t_last - (t_first or t_last)
        wall = t_exit - t0
        res = {
            "path": path, "code": code, "bytes": total, "wall_s": wall, "stream_s": stream_s,
            "mibps": total / MIB / stream_s if stream_s > 0 else float("nan"),
            "mibps_wall": total / MIB / wall,
            "cpu": {
                "client ssh": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
                "gateway": gw1 - gw0,
                "jump sshd": jmp1 - jmp0,
                "target sshd + cat": tgt1 - tgt0,
                "bench reader": (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime),
            },
            "system_busy_s": sys1 - sys0,
            "busy_before": quiet,
        }
        if path == "gateway":
            t_seal0 = time.perf_counter()
            cast = self.sealed_recording(code)
            res["seal_s"] = time.perf_counter() - t_seal0
            res["cast_bytes"] = cast.stat().st_size
            res["gw_cpu_incl_seal"] = cpu_seconds(self.gw.pid) - gw0
            if not self.a.keep_tmp:
                cast.unlink()  # hundreds of MiB each; the size is all we need
        accounted = sum(res["cpu"].values())
        res["cpu"]["other processes"] = max(0.0, res["system_busy_s"] - accounted)
        log(f"bulk {path:8s} {res['mibps']:8.1f} MiB/s (first byte to EOF), {res['mibps_wall']:8.1f} MiB/s wall, "
            + ", ".join(f"{k} {v / wall * 100:.0f}%" for k, v in res["cpu"].items() if v > 0.005))
        return res

    def profile_gateway(self, file: Path, direction: str = "down") -> list[dict] | None:
        """One extra, unmeasured gateway run under `perf record`, a bulk download (`down`) or an
        upload (`up`): where the gateway's CPU time goes (top symbols)."""
        perf = shutil.which("perf")
        if self.a.no_perf or not perf:
            if not self.a.no_perf:
                log("perf is not installed: no gateway profile (apt-get install linux-perf)")
            return None
        code = self.grant()
        data = self.tmp / f"perf-{direction}.data"
        pr = self.spawn([perf, "record", "-F", "499", "-p", str(self.gw.pid), "-o", str(data)], "perf")  # type: ignore[union-attr]
        time.sleep(1)
        if pr.poll() is not None:
            log(f"perf record failed, no gateway profile: {self.err_text(pr)[-300:]}")
            self.forget(pr)
            return None
        if direction == "up":
            with open(file, "rb") as stdin:
                p = self.spawn(self.ssh_argv("gateway", code) + ["cat > /dev/null"], "perf-upload", stdin=stdin)
        else:
            p = self.spawn(self.ssh_argv("gateway", code) + ["cat", str(file)], "perf-bulk")
        rc = p.wait(900)
        self.forget(p)
        pr.send_signal(signal.SIGINT)
        try:
            pr.wait(60)
        except subprocess.TimeoutExpired:
            pr.kill()
            pr.wait()
        self.forget(pr)
        if rc != 0:
            raise BenchError(f"profiled gateway run: exit {rc}: {self.err_text(p)}")
        cast = self.sealed_recording(code)
        if not self.a.keep_tmp:
            cast.unlink()
        r = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "dso,symbol",
                            "--stdio", "-q", "--percent-limit", "1"], capture_output=True, text=True, timeout=300)
        top = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s*$", line)
            if m:
                top.append({"pct": float(m.group(1)), "dso": m.group(2),
                            "kernel": m.group(3) == "k",
                            "symbol": re.sub(r"(\s+-)+$", "", m.group(4))})
        if not top:
            log(f"perf report gave nothing usable: {r.stderr.strip()[-300:]}")
            return None
        log("gateway profile: " + ", ".join(f"{t['symbol'][:40]} {t['pct']:.0f}%" for t in top[:6]))
        return top[:15]

    def bulk(self) -> dict:
        f = self.make_file()
        runs: dict[str, list[dict]] = {"gateway": [], "direct": [], "jump": []}
        for i in range(self.a.runs):
            for path in ("gateway", "direct", "jump"):  # interleaved: drift hits all three
                runs[path].append(self.stream_once(path, f))
        profile = self.profile_gateway(f)
        size = f.stat().st_size
        f.unlink()
        return {"size": size, "runs": runs, "profile": profile}

    def primitives(self, alg: dict) -> dict:
        """Single-core speed, in ms per MiB, of the work a recording gateway cannot avoid for
        each byte of output: decrypting the target's cipher, encrypting the client's, and
        SHA-256 (`openssl speed`, 32 KiB blocks, the size of an SSH packet's payload). With the
        CPU the bulk runs measured for client and target, this bounds what the machine allows."""
        openssl = shutil.which("openssl")
        if not openssl:
            log("openssl is not installed: no bound from the primitives (apt-get install openssl)")
            return {}
        names = {"chacha20-poly1305@openssh.com": "chacha20-poly1305",
                 "aes256-gcm@openssh.com": "aes-256-gcm", "aes128-gcm@openssh.com": "aes-128-gcm"}
        want = {"sha256": "sha256"}
        for role, leg in (("decrypt", "gateway_upstream"), ("encrypt", "gateway")):
            c = (alg["cipher"].get(leg) or ["?"])[0]
            if c in names:
                want[role] = names[c]
        self.wait_quiet("primitives")
        out: dict = {"ms_per_mib": {}, "algorithm": {}}
        for role, evp in want.items():
            r = subprocess.run([openssl, "speed", "-seconds", "2", "-bytes", "32768", "-evp", evp],
                               capture_output=True, text=True, timeout=60)
            last = (r.stdout.strip().splitlines() or [""])[-1].split()
            try:
                bytes_per_s = float(last[-1].rstrip("k")) * 1000
            except (ValueError, IndexError):
                log(f"openssl speed {evp}: unreadable output {r.stdout[-200:]!r}")
                continue
            out["ms_per_mib"][role] = MIB / bytes_per_s * 1000
            out["algorithm"][role] = evp
        return out

    # ---- 2. keystrokes ---------------------------------------------------------------------

    def read_until(self, p: subprocess.Popen, marker: bytes, timeout_s: float, what: str) -> bytes:
        """Reads `p`'s stdout until `marker` shows (returns all it read); kills `p` and fails
        with `what` if the output ends or `timeout_s` passes first."""
        fd = p.stdout.fileno()  # type: ignore[union-attr]
        got = b""
        deadline = time.monotonic() + timeout_s
        while marker not in got:
            r, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(fd, 4096) if r else b""
            if not chunk:
                p.kill()
                raise BenchError(f"{what} (got {got!r}): {self.err_text(p)}")
            got += chunk
        return got

    def open_echo(self, path: str) -> subprocess.Popen:
        """A PTY session running `cat` in raw mode, ready to echo."""
        code = self.grant() if path == "gateway" else None
        argv = self.ssh_argv(path, code, ["-tt"]) + ["stty raw -echo; printf READY; exec cat"]
        env = dict(os.environ, TERM="xterm")
        p = self.spawn(argv, f"keys-{path}", stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        got = self.read_until(p, b"READY", 30, f"keystrokes {path}: no READY")
        tail = got.split(b"READY", 1)[1]
        if tail:
            raise BenchError(f"keystrokes {path}: unexpected output after READY: {tail!r}")
        return p

    def keystrokes(self, n: int, warmup: int = 50) -> dict:
        """Both sessions open at once and the round trips alternate between them (the order
        flipping every time), so that both see the same machine: on this VM, the latency of a
        short round trip drifts by more than the difference being measured."""
        paths = ("gateway", "direct")
        procs = {p: self.open_echo(p) for p in paths}
        samples: dict[str, list[float]] = {p: [] for p in paths}
        self.wait_quiet("keystrokes")
        try:
            for i in range(warmup + n):
                b = bytes([97 + i % 26])
                for path in (paths if i % 2 == 0 else paths[::-1]):
                    p = procs[path]
                    wfd = p.stdin.fileno()  # type: ignore[union-attr]
                    rfd = p.stdout.fileno()  # type: ignore[union-attr]
                    t0 = time.perf_counter_ns()
                    os.write(wfd, b)
                    r, _, _ = select.select([rfd], [], [], 10)
                    back = os.read(rfd, 64) if r else b""
                    t1 = time.perf_counter_ns()
                    if back != b:
                        raise BenchError(f"keystrokes {path}: sent {b!r}, got {back!r}: {self.err_text(p)}")
                    if i >= warmup:
                        samples[path].append((t1 - t0) / 1e6)
        finally:
            for p in procs.values():
                p.terminate()  # raw mode: no EOF or ^C reaches cat; closing the connection ends it
            for p in procs.values():
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                for f in (p.stdin, p.stdout):
                    f.close()  # type: ignore[union-attr]
                self.forget(p)
        out = {}
        for path in paths:
            s = sorted(samples[path])
            out[path] = {"path": path, "n": n, "p50": percentile(s, 50), "p90": percentile(s, 90),
                         "p99": percentile(s, 99), "max": s[-1], "min": s[0], "mean": statistics.fmean(s)}
            r = out[path]
            log(f"keystrokes {path:8s} p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  max {r['max']:.3f} ms")
        return out

    # ---- 3. connect ------------------------------------------------------------------------

    def connect_times(self, n: int) -> dict:
        out: dict = {"gateway": [], "direct": []}
        self.wait_quiet("connect")
        b0, t0w = system_busy_seconds(), time.monotonic()
        for i in range(n):
            for path in ("gateway", "direct"):
                code = self.grant() if path == "gateway" else None
                argv = self.ssh_argv(path, code) + ["true"]
                t0 = time.perf_counter()
                p = self.spawn(argv, f"connect-{path}")
                rc = p.wait(60)
                dt_s = time.perf_counter() - t0
                self.forget(p)
                if rc != 0:
                    raise BenchError(f"connect {path}: exit {rc}: {self.err_text(p)}")
                out[path].append(dt_s * 1000)
        out["busy"] = (system_busy_seconds() - b0) / (time.monotonic() - t0w)
        for path in ("gateway", "direct"):
            v = out[path]
            log(f"connect {path:8s} median {statistics.median(v):.1f} ms (min {min(v):.1f}, max {max(v):.1f})")
        return out

    # ---- 4. RSS per idle session -----------------------------------------------------------

    def open_idle(self, i: int, code: str) -> tuple[subprocess.Popen, int]:
        argv = self.ssh_argv("gateway", code) + ["echo $$; exec sleep 600"]
        p = self.spawn(argv, f"idle-{i}", stdout=subprocess.PIPE)
        got = self.read_until(p, b"\n", 60, f"idle session {i} ({code}) did not start")
        pid = int(got.split(b"\n", 1)[0])
        with self.lock:
            self.remote_pids.add(pid)
        return p, pid

    def rss(self, n: int) -> dict:
        gw = self.gw.pid  # type: ignore[union-attr]
        # grants first, so that the memory the API and the database pool take for 3n calls is
        # in `before`, not counted against the sessions
        log(f"requesting and approving {n} grants")
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.a.open_concurrency) as ex:
            codes = list(ex.map(lambda _: self.grant(), range(n)))
        self.wait_quiet("idle sessions")
        time.sleep(1)
        before = status_kib(gw, "VmRSS")
        fds_before = fd_count(gw)
        threads_before = int(proc_stat_fields(gw)[17])  # type: ignore[index]
        log(f"opening {n} idle sessions through the gateway (gateway VmRSS {before} KiB)")
        t0 = time.monotonic()
        sessions: list[tuple[subprocess.Popen, int]] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.a.open_concurrency) as ex:
            futs = [ex.submit(self.open_idle, i, code) for i, code in enumerate(codes)]
            for f in futs:
                sessions.append(f.result())
        open_s = time.monotonic() - t0
        time.sleep(3)  # let buffers and tasks settle
        alive = sum(1 for p, _ in sessions if p.poll() is None)
        if alive != n:
            raise BenchError(f"only {alive} of {n} idle sessions are still open")
        after = status_kib(gw, "VmRSS")
        after_anon = status_kib(gw, "RssAnon")
        fds_after = fd_count(gw)
        threads_after = int(proc_stat_fields(gw)[17])  # type: ignore[index]
        log(f"{n} idle sessions open after {open_s:.1f} s: gateway VmRSS {after} KiB, "
            f"{(after - before) / n:.1f} KiB per session, fds {fds_before} -> {fds_after}")
        # close: end the remote sleeps, so each session ends the ordinary way
        for _, pid in sessions:
            try:
                if b"sleep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        for p, pid in sessions:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()  # type: ignore[union-attr]
            self.forget(p)
            self.remote_pids.discard(pid)
        for code in codes:  # each session is over once its recording is sealed
            self.sealed_recording(code, 60)
        self.reap_orphans(1)
        time.sleep(1)
        closed = status_kib(gw, "VmRSS")
        log(f"sessions closed: gateway VmRSS {closed} KiB, fds {fd_count(gw)}")
        return {"n": n, "before_kib": before, "after_kib": after, "after_anon_kib": after_anon,
                "closed_kib": closed, "per_session_kib": (after - before) / n, "open_s": open_s,
                "fds_before": fds_before, "fds_after": fds_after,
                "threads_before": threads_before, "threads_after": threads_after}

    # ---- 6. upload, bidirectional stream, transfers with a hang count -----------------------
    # (issue 13: the bench covers what users do. Each transfer is watched for progress; one
    # that makes none for --stall-s seconds is a hang: it is killed, counted, and the bench
    # goes on.)

    def _cpu_begin(self) -> dict:
        return {"ru": resource.getrusage(resource.RUSAGE_CHILDREN), "self": resource.getrusage(resource.RUSAGE_SELF),
                "sys": system_busy_seconds(), "gw": cpu_seconds(self.gw.pid),  # type: ignore[union-attr]
                "tgt": cpu_seconds(self.target["proc"].pid, children=True),
                "jmp": cpu_seconds(self.jump["proc"].pid, children=True)}

    def _cpu_end(self, c0: dict, wait_reaped: bool = True) -> dict:
        self.reap_orphans()
        if wait_reaped:  # the sshd session processes, so the listeners' children times include them
            for l in (self.target["proc"], self.jump["proc"]):
                deadline = time.monotonic() + 10
                while descendants(l.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        ru, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        cpu = {
            "client ssh": (ru.ru_utime + ru.ru_stime) - (c0["ru"].ru_utime + c0["ru"].ru_stime),
            "gateway": cpu_seconds(self.gw.pid) - c0["gw"],  # type: ignore[union-attr]
            "jump sshd": cpu_seconds(self.jump["proc"].pid, children=True) - c0["jmp"],
            "target sshd + cat": cpu_seconds(self.target["proc"].pid, children=True) - c0["tgt"],
            "bench reader": (me.ru_utime + me.ru_stime) - (c0["self"].ru_utime + c0["self"].ru_stime),
        }
        busy = system_busy_seconds() - c0["sys"]
        cpu["other processes"] = max(0.0, busy - sum(cpu.values()))
        return {"cpu": cpu, "system_busy_s": busy}

    @staticmethod
    def _stdin_pos(pid: int) -> int:
        """How far a process has read its stdin (a regular file): /proc/PID/fdinfo/0."""
        try:
            with open(f"/proc/{pid}/fdinfo/0") as f:
                for line in f:
                    if line.startswith("pos:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return -1

    def _after_hang(self) -> None:
        """A hung session leaves processes on the target (and maybe the jump host): end them,
        so that they do not skew the runs after it. The hang is in the report."""
        for l in (self.target["proc"], self.jump["proc"]):
            for pid in descendants(l.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.reap_orphans(2)

    def transfer_once(self, path: str, direction: str, file: Path, cpu: bool = False) -> dict:
        """One transfer of `file` through `path`: `down` (`cat FILE`, the client reads it),
        `up` (the client sends it to `cat > /dev/null`) or `bidi` (the client sends it to `cat`
        and reads the echo back at once). MiB/s from the first byte moved to the last; a
        transfer with no progress for --stall-s seconds is killed and reported as a hang."""
        code = self.grant() if path == "gateway" else None
        size = file.stat().st_size
        remote = {"down": f"cat {file}", "up": "cat > /dev/null", "bidi": "cat"}[direction]
        argv = self.ssh_argv(path, code) + [remote]
        quiet = self.wait_quiet(f"{direction} {path}") if cpu else None
        c0 = self._cpu_begin() if cpu else None
        stdin = open(file, "rb") if direction != "down" else subprocess.DEVNULL
        t0 = time.perf_counter()
        try:
            p = self.spawn(argv, f"{direction}-{path}", stdin=stdin,
                           stdout=subprocess.PIPE if direction != "up" else subprocess.DEVNULL)
        finally:
            if stdin is not subprocess.DEVNULL:
                stdin.close()  # type: ignore[union-attr]
        fd = p.stdout.fileno() if p.stdout else None
        if fd is not None:
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, MIB)
            except OSError:
                pass
        buf = bytearray(MIB)
        got = 0  # bytes the client printed
        t_first = t_last = None
        last_progress, last_mark = time.monotonic(), (-1, -1)
        hang = False
        eof = fd is None
        sent, last_pos_check = 0, 0.0  # how far the client read the file it sends
        while True:
            if fd is not None and not eof:
                r, _, _ = select.select([fd], [], [], 0.05)
                if r:
                    n = os.readv(fd, [buf])
                    if n == 0:
                        eof = True
                    else:
                        got += n
                        if t_first is None:
                            t_first = time.perf_counter()
                        t_last = time.perf_counter()
            else:
                time.sleep(0.002 if t_first is None else 0.05)
            if direction != "down" and (t_first is None or time.monotonic() - last_pos_check >= 0.05):
                sent, last_pos_check = max(sent, self._stdin_pos(p.pid)), time.monotonic()
                if direction == "up" and t_first is None and sent > 0:
                    t_first = time.perf_counter()
            if eof and p.poll() is not None:
                break
            now = time.monotonic()
            if (sent, got) != last_mark:
                last_mark, last_progress = (sent, got), now
            elif now - last_progress >= self.a.stall_s:
                hang = True
                p.kill()
                p.wait(10)
                break
        rc = p.wait(30)
        t_end = time.perf_counter()
        if p.stdout:
            p.stdout.close()
        self.forget(p)
        if hang:
            self._after_hang()
        if direction == "up":
            t_last = t_end  # the upload is over when the remote `cat` got EOF and the session closed
        res = {"path": path, "dir": direction, "code": code, "bytes": size, "echoed": got,
               "sent": last_mark[0], "hang": hang, "rc": rc, "busy_before": quiet}
        stream_s = (t_last or t_end) - (t_first or t_end)
        res["stream_s"] = stream_s
        res["mibps"] = size / MIB / stream_s if not hang and stream_s > 0 else float("nan")
        res["mibps_wall"] = size / MIB / (t_end - t0) if not hang else float("nan")
        if not hang and (rc != 0 or (direction != "up" and got != size)):
            raise BenchError(f"{direction} {path}: exit {rc}, {got} of {size} bytes back: {self.err_text(p)}")
        if hang:
            log(f"{direction} {path:8s} HANG: no progress for {self.a.stall_s:.0f} s after {got} bytes back "
                f"(sent {last_mark[0]}); killed")
        if c0 is not None:
            res.update(self._cpu_end(c0, wait_reaped=not hang))
            res["wall_s"] = t_end - t0
        if path == "gateway" and not hang:
            cast = self.sealed_recording(code)  # type: ignore[arg-type]
            if c0 is not None:
                res["gw_cpu_incl_seal"] = cpu_seconds(self.gw.pid) - c0["gw"]  # type: ignore[union-attr]
                res["cast_bytes"] = cast.stat().st_size
            if not self.a.keep_tmp:
                cast.unlink()
        if not hang and cpu:
            log(f"{direction} {path:8s} {res['mibps']:8.1f} MiB/s, gateway "
                f"{res['cpu']['gateway'] / (size / MIB) * 1000:.2f} ms/MiB")
        return res

    def make_text_file(self, name: str, mib: int) -> Path:
        """`mib` MiB of base64 text in 76-character lines (printable), read once into the cache."""
        f = self.tmp / name
        size = mib * MIB
        with open(f, "wb") as out:
            b64 = subprocess.Popen(["base64", "-w", "76", "/dev/urandom"], stdout=subprocess.PIPE)
            head = subprocess.Popen(["head", "-c", str(size)], stdin=b64.stdout, stdout=out)
            b64.stdout.close()  # type: ignore[union-attr]
            head.wait()
            b64.wait()
        if f.stat().st_size != size:
            raise BenchError(f"{f} has {f.stat().st_size} bytes, expected {size}")
        with open(f, "rb") as r:
            while r.read(8 * MIB):
                pass
        return f

    def upload(self) -> dict:
        """Upload throughput: the client sends --size-mib MiB to `cat > /dev/null`, N runs per
        path, interleaved (the same file and CPU accounting as the bulk download)."""
        f = self.make_text_file("upload.txt", self.a.size_mib)
        runs: dict[str, list[dict]] = {"gateway": [], "direct": [], "jump": []}
        for _ in range(self.a.runs):
            for path in ("gateway", "direct", "jump"):
                runs[path].append(self.transfer_once(path, "up", f, cpu=True))
        profile = self.profile_gateway(f, "up")
        f.unlink()
        return {"size": self.a.size_mib * MIB, "runs": runs, "profile": profile}

    def bidi(self) -> dict:
        """A bidirectional stream: the client sends --bidi-mib MiB to `cat` and reads the echo
        back as it comes, N runs per path. Through a relay whose directions depend on each
        other this deadlocks; the stall detector reports it as a hang and the bench goes on."""
        f = self.make_text_file("bidi.txt", self.a.bidi_mib)
        runs: dict[str, list[dict]] = {"gateway": [], "direct": [], "jump": []}
        for _ in range(self.a.runs):
            for path in ("gateway", "direct", "jump"):
                runs[path].append(self.transfer_once(path, "bidi", f, cpu=True))
        f.unlink()
        return {"size": self.a.bidi_mib * MIB, "runs": runs}

    def transfers(self) -> dict:
        """--transfers transfers of --transfer-mib MiB each way (download and upload) through the
        gateway and direct, interleaved, counting hangs."""
        f = self.make_text_file("transfer.txt", self.a.transfer_mib)
        runs: dict[str, list[dict]] = {}
        self.wait_quiet("transfers")
        for i in range(self.a.transfers):
            for direction in ("down", "up"):
                for path in ("gateway", "direct"):
                    runs.setdefault(f"{path} {direction}", []).append(self.transfer_once(path, direction, f))
        f.unlink()
        for key, rs in runs.items():
            hangs = sum(r["hang"] for r in rs)
            log(f"transfers {key:14s} {len(rs)} runs, {hangs} hangs, median "
                f"{statistics.median([r['mibps'] for r in rs if not r['hang']] or [float('nan')]):.1f} MiB/s")
        return {"size": self.a.transfer_mib * MIB, "runs": runs}
    # ---- 7.-9. cuts, time to grant, interactive memory ------------------------------------------

    def open_watched(self, code: str, marks: Path) -> dict:
        """A session through the gateway whose remote shell notes (in `marks/CODE`, wall-clock
        seconds) when its terminal hangs up: the moment the target's sshd lost the gateway's
        connection, i.e. the target leg was severed and nothing more can run. A thread notes
        when the client's connection closed (ssh's stdout at EOF)."""
        mark = marks / code
        script = f"trap '' HUP; echo up; read -r x; echo ${{EPOCHREALTIME:-$(date +%s.%N)}} > {mark}; exit 0"
        p = self.spawn(self.ssh_argv("gateway", code, ["-tt"]) + [script], f"cut-{code}",
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.read_until(p, b"up", 60, f"cut session {code} did not start")
        s = {"code": code, "p": p, "mark": mark, "closed_at": None}

        fd = p.stdout.fileno()  # type: ignore[union-attr]

        def watch() -> None:
            while os.read(fd, 4096):
                pass
            s["closed_at"] = time.time()
        threading.Thread(target=watch, daemon=True).start()
        return s

    def finish_watched(self, s: dict, origin: float, timeout: float = 10) -> tuple[float | None, float | None]:
        """Seconds from `origin` to the target leg severed and to the client closed."""
        deadline = time.monotonic() + timeout
        severed = None
        while time.monotonic() < deadline:
            try:
                text = s["mark"].read_text().strip()
                if text:
                    severed = float(text) - origin
            except (OSError, ValueError):
                pass
            if severed is not None and s["closed_at"] is not None:
                break
            time.sleep(0.01)
        closed = s["closed_at"] - origin if s["closed_at"] is not None else None
        p = s["p"]
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        for f in (p.stdin, p.stdout):
            try:
                f.close()
            except OSError:
                pass
        self.forget(p)
        return severed, closed

    def session_deadline(self, code: str) -> float:
        """The signed deadline of `code`'s live session, from its recording's header."""
        for _ in range(200):
            for rec in self.recordings.glob(f"{code}*.cast"):
                first = rec.read_text(errors="replace").split("\n", 1)[0]
                if first:
                    return float(json.loads(first)["breakglass"]["session_deadline"])
            time.sleep(0.05)
        raise BenchError(f"no recording header for {code}")

    def cuts(self, n: int, batch: int = 10) -> dict:
        """Revoke -> cut and expiry -> cut over `n` sessions each, `batch` open at a time."""
        marks = self.tmp / "cut-marks"
        marks.mkdir(exist_ok=True)
        out: dict = {"n": n, "revoke": [], "expiry": []}
        self.wait_quiet("cuts")
        done = 0
        while done < n:
            k = min(batch, n - done)
            codes = [self.grant("cut") for _ in range(k)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=k) as ex:
                sessions = list(ex.map(lambda c: self.open_watched(c, marks), codes))
            for s in sessions:
                time.sleep(0.2)
                t0 = time.time()  # the revoke request is sent: the bot's own time counts
                st, v = self.api("bob", "POST", f"/api/v1/requests/{s['code']}/revoke")
                if st != 200:
                    raise BenchError(f"revoke refused ({st}): {v}")
                severed, closed = self.finish_watched(s, t0)
                out["revoke"].append({"severed": severed, "closed": closed, "api": time.time() - t0})
            done += k
        log("revoke -> cut: " + summary_ms([r["severed"] for r in out["revoke"]]) + " (target severed), "
            + summary_ms([r["closed"] for r in out["revoke"]]) + " (client closed)")
        done = 0
        while done < n:
            k = min(batch, n - done)
            codes = [self.grant("cut", "6s") for _ in range(k)]
            with concurrent.futures.ThreadPoolExecutor(max_workers=k) as ex:
                sessions = list(ex.map(lambda c: self.open_watched(c, marks), codes))
            for s in sessions:
                deadline = self.session_deadline(s["code"])
                severed, closed = self.finish_watched(s, deadline, max(0.0, deadline - time.time()) + 10)
                out["expiry"].append({"severed": severed, "closed": closed})
            done += k
        log("expiry -> cut: " + summary_ms([r["severed"] for r in out["expiry"]]) + " (target severed), "
            + summary_ms([r["closed"] for r in out["expiry"]]) + " (client closed)")
        return out

    def grant_latency(self, n: int, rate: float) -> dict:
        """Time from the last approval sent to a usable grant, with approvals arriving at `rate`
        a second: `n` requests are made first (not timed), then their 2n approvals (bob, then
        carol) are sent on a fixed schedule. The quorum-completing call answers once the
        approval is committed, which is when the gateway accepts the grant; the bench checks
        the answer says `approved`, and connects with a few of the grants."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
            codes = list(ex.map(lambda _: self.request_only(), range(n)))
        self.wait_quiet("time to grant")
        slots = [(code, who) for code in codes for who in ("bob", "carol")]
        lat: list[float] = []
        bad: list[str] = []
        lock = threading.Lock()

        approved: set[str] = set()

        def approve(code: str, who: str, at: float) -> None:
            # Two approvals a request, sent 1/rate apart: whichever is applied second completes
            # the quorum, and its answer says `approved`.
            st, v = self.api(who, "POST", f"/api/v1/requests/{code}/approve")
            took = time.monotonic() - at
            with lock:
                if st != 200:
                    bad.append(f"{who} {code}: {st} {v}")
                elif v.get("status") == "approved":
                    lat.append(took)
                    approved.add(code)
        t0 = time.monotonic() + 0.2
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
            for i, (code, who) in enumerate(slots):
                at = t0 + i / rate
                time.sleep(max(0.0, at - time.monotonic()))
                ex.submit(approve, code, who, at)
        sent_s = len(slots) / rate
        bad += [f"{c} is not approved after its two approvals" for c in codes if c not in approved]
        if bad:
            raise BenchError(f"{len(bad)} approvals failed: {bad[:3]}")
        usable = 0
        for code in codes[:3]:
            r = subprocess.run(self.ssh_argv("gateway", code) + ["true"], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=60)
            usable += r.returncode == 0
        lat.sort()
        log(f"time to grant at {rate:.0f} approvals/s: {summary_ms(lat)}; {usable}/3 grants connected")
        return {"n": n, "rate": rate, "sent_s": sent_s, "lat": lat, "usable": usable, "tried": 3}

    def request_only(self) -> str:
        s, v = self.api("alice", "POST", "/api/v1/requests",
                        {"host": "target", "login": self.login, "reason": "benchmark run", "duration": "1h"})
        if s != 201:
            raise BenchError(f"request refused ({s}): {v}")
        return v["code"]

    def open_pty(self, code: str, rows: int, cols: int) -> dict:
        """An interactive login shell through the gateway in a local pty of `rows` x `cols`
        (ssh asks the gateway for a terminal of that size); one command typed and run."""
        import pty
        import struct
        import termios
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            p = self.spawn(self.ssh_argv("gateway", code, ["-tt"]), f"pty-{code}",
                           stdin=slave, stdout=slave)
        finally:
            os.close(slave)
        os.write(master, b"echo bg-up\n")
        got = b""
        deadline = time.monotonic() + 60
        while not re.search(rb"[\r\n]bg-up\r\n", got):  # the output line, not the typed one
            r, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            try:
                chunk = os.read(master, 4096) if r else b""
            except OSError:
                chunk = b""
            if not chunk:
                p.kill()
                raise BenchError(f"interactive session {code} did not start (got {got[-200:]!r}): {self.err_text(p)}")
            got += chunk
        return {"code": code, "p": p, "master": master}

    def pty_memory(self, n: int, rows: int = 50, cols: int = 200, idle_s: float = 10) -> dict:
        """Gateway memory per interactive session at `n` open `rows` x `cols` shells, and the
        gateway's CPU while they sit idle."""
        gw = self.gw.pid  # type: ignore[union-attr]
        log(f"requesting and approving {n} grants for interactive sessions")
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.a.open_concurrency) as ex:
            codes = list(ex.map(lambda _: self.grant(), range(n)))
        self.wait_quiet("interactive sessions")
        time.sleep(1)
        before = status_kib(gw, "VmRSS")
        log(f"opening {n} interactive {cols}x{rows} sessions (gateway VmRSS {before} KiB)")
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.a.open_concurrency) as ex:
            sessions = list(ex.map(lambda c: self.open_pty(c, rows, cols), codes))
        open_s = time.monotonic() - t0
        time.sleep(PTY_SETTLE_S)  # well past the 2 s after which a quiet screen sleeps (SCREEN_QUIET)
        after = status_kib(gw, "VmRSS")
        cpu0, w0 = cpu_seconds(gw), time.monotonic()
        time.sleep(idle_s)
        idle_cpu = (cpu_seconds(gw) - cpu0) / (time.monotonic() - w0)
        alive = sum(1 for s in sessions if s["p"].poll() is None)
        log(f"{alive}/{n} interactive sessions open after {open_s:.1f} s: gateway VmRSS {after} KiB, "
            f"{(after - before) / n:.1f} KiB per session; idle gateway CPU {idle_cpu * 100:.2f}% of a core")
        for s in sessions:
            try:
                os.write(s["master"], b"exit\n")
            except OSError:
                pass
        for s in sessions:
            try:
                s["p"].wait(30)
            except subprocess.TimeoutExpired:
                s["p"].kill()
                s["p"].wait()
            os.close(s["master"])
            self.forget(s["p"])
        for code in codes:
            self.sealed_recording(code, 60)
        if alive != n:
            raise BenchError(f"only {alive} of {n} interactive sessions stayed open")
        return {"n": n, "rows": rows, "cols": cols, "before_kib": before, "after_kib": after,
                "per_session_kib": (after - before) / n, "open_s": open_s, "idle_cpu": idle_cpu,
                "idle_s": idle_s}

    # ---- driver ----------------------------------------------------------------------------

    def wants(self, section: str) -> bool:
        """Whether this run measures `section` (every one unless --only names some)."""
        return not self.a.only or section in self.a.only

    def run(self) -> dict:
        started = time.time()
        load0 = os.getloadavg()
        self.setup()
        res: dict = {"started": started, "load_start": load0}
        if self.a.only_timing:
            return self.run_timing(res)
        res["algorithms"] = self.probe_algorithms()
        # RSS first, on a gateway that has served only the probes: the bulk runs would leave
        # freed memory in the allocator that new sessions could reuse unseen.
        if self.wants("rss"):
            res["rss"] = self.rss(self.a.sessions)
        if self.wants("connect"):
            res["connect"] = self.connect_times(self.a.connects)
        if self.wants("keys"):
            res["keys"] = self.keystrokes(self.a.keystrokes)
        if self.wants("bulk"):
            res["bulk"] = self.bulk()
            res["primitives"] = self.primitives(res["algorithms"])
        if self.wants("upload"):
            res["upload"] = self.upload()
        if self.wants("transfers"):
            res["transfers"] = self.transfers()
        if self.wants("timing"):
            self.timing(res)
        # last: through a relay that can deadlock, its hung sessions may linger in the gateway
        if self.wants("bidi"):
            res["bidi"] = self.bidi()
        res["gw_rss_end_kib"] = status_kib(self.gw.pid, "VmRSS")  # type: ignore[union-attr]
        res["gw_hwm_kib"] = status_kib(self.gw.pid, "VmHWM")  # type: ignore[union-attr]
        res["load_end"] = os.getloadavg()
        res["elapsed_s"] = time.time() - started
        res["quiet"] = self.quiet
        return res

    def timing(self, res: dict) -> None:
        """7.-9.: cuts, time to grant, interactive memory (issue 13, items 3-5)."""
        res["cuts"] = self.cuts(self.a.cut_sessions)
        res["grant_latency"] = self.grant_latency(self.a.grant_requests, self.a.approval_rate)
        res["pty"] = self.pty_memory(self.a.pty_sessions)

    def run_timing(self, res: dict) -> dict:
        """--only-timing: 7.-9. alone, on a fresh gateway."""
        self.timing(res)
        res["load_end"] = os.getloadavg()
        res["elapsed_s"] = time.time() - res["started"]
        res["quiet"] = self.quiet
        return res


# --------------------------------------------------------------------------------------------
# Report


def machine_facts(repo: Path, binary: Path) -> dict:
    def sh(argv: list[str], err: bool = False) -> str:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=repo)
            return (r.stderr if err else r.stdout).strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    rev = sh(["git", "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "status", "--porcelain", "--untracked-files=no"])
    untracked = sh(["git", "status", "--porcelain"])
    state = " + uncommitted changes" if dirty or untracked else ""
    return {
        "nproc": sh(["nproc"]),
        "cpu": model,
        "kernel": platform.release(),
        "mem_gib": mem_kib / 1024 / 1024,
        "openssh": sh(["ssh", "-V"], err=True),
        "sshd_pkg": sh(["dpkg-query", "-W", "-f", "${Version}", "openssh-server"]),
        "breakglass": sh([str(binary), "--version"]) or "?",
        "git": f"{rev}{state}",
        "python": platform.python_version(),
    }


def median_run(rs: list[dict]) -> dict:
    """The run with the median throughput (the upper one of an even count)."""
    return sorted(rs, key=lambda x: x["mibps"])[len(rs) // 2]


def fmt_cpu_table(runs: dict[str, list[dict]]) -> list[str]:
    keys = ["client ssh", "gateway", "jump sshd", "target sshd + cat", "bench reader", "other processes"]
    out = ["| path | " + " | ".join(keys) + " | machine busy |", "|---" * (len(keys) + 2) + "|"]
    for path, rs in runs.items():
        r = median_run(rs)
        w = r["wall_s"]
        cells = [f"{r['cpu'][k] / w * 100:.0f}%" if r["cpu"][k] > 0.005 else "–" for k in keys]
        out.append(f"| {path} | " + " | ".join(cells) + f" | {r['system_busy_s'] / w * 100:.0f}% |")
    return out


def fmt_bound(res: dict, facts: dict, med: dict, cast_ratio: float) -> list[str]:
    """What this machine allows a recording gateway, from the primitives' speed and the CPU
    client and target used per MiB in the gateway's median bulk run."""
    prim = res.get("primitives") or {}
    ms = prim.get("ms_per_mib", {})
    # The CPU per MiB includes connection setup: meaningful for big files only.
    if not {"sha256", "decrypt", "encrypt"} <= ms.keys() or res["bulk"]["size"] < 256 * MIB:
        return []
    r = median_run(res["bulk"]["runs"]["gateway"])
    mib = r["bytes"] / MIB
    others = {k: r["cpu"][k] / mib * 1000 for k in ("client ssh", "target sshd + cat", "bench reader")}
    # One SHA-256 pass: the recording file's (the raw streams are covered by it, see cast.rs).
    floor = ms["decrypt"] + ms["encrypt"] + ms["sha256"] * cast_ratio
    chain = sum(others.values()) + floor
    d = median_run(res["bulk"]["runs"]["direct"])
    busy_direct = d["system_busy_s"] / d["wall_s"]
    at_direct_busy = busy_direct * 1000 / chain
    at_all_cores = int(facts["nproc"]) * 1000 / chain
    alg = prim["algorithm"]
    L = ["", "What this machine allows a gateway that records, whatever its design. Per MiB of output the "
         f"gateway must at least decrypt the target's leg (`{alg['decrypt']}`), encrypt the client's "
         f"(`{alg['encrypt']}`) and compute the SHA-256 of the recording file ({cast_ratio:.3f}× the output; "
         "its signed digest covers the raw streams, which get no digest of their own). Single-core speeds from `openssl speed -seconds 2 "
         "-bytes 32768 -evp ALG`, measured in this run; client, target and reader CPU per MiB from the "
         "gateway's median bulk run above:", "",
         "| work per MiB of output | ms of CPU |", "|---|---|"]
    L.append(f"| gateway: decrypt `{alg['decrypt']}` | {ms['decrypt']:.2f} |")
    L.append(f"| gateway: encrypt `{alg['encrypt']}` | {ms['encrypt']:.2f} |")
    L.append(f"| gateway: SHA-256 of the recording | {ms['sha256'] * cast_ratio:.2f} |")
    L.append(f"| **gateway floor** (nothing else: no JSON, no copies, no system calls) | **{floor:.2f}** |")
    for k, v in others.items():
        L.append(f"| {k} (measured) | {v:.2f} |")
    L.append(f"| **whole chain** | **{chain:.2f}** |")
    L.append("")
    L.append(f"With all {facts['nproc']} cores busy the whole time, that chain allows at most {at_all_cores:.0f} MiB/s "
             f"= **{at_all_cores / med['direct']:.2f}× direct** (a hard ceiling: no scheduling could do better); at the "
             f"{busy_direct * 100:.0f}% machine busy the direct run reached, {at_direct_busy:.0f} MiB/s = "
             f"{at_direct_busy / med['direct']:.2f}× direct (an estimate: a run may keep the machine busier). "
             f"The gateway measured {med['gateway']:.0f} MiB/s = {med['gateway'] / med['direct']:.2f}× direct.")
    return L


def render(res: dict, facts: dict, args: argparse.Namespace) -> str:
    b = res["bulk"]
    med = {p: statistics.median(r["mibps"] for r in rs) for p, rs in b["runs"].items()}
    medw = {p: statistics.median(r["mibps_wall"] for r in rs) for p, rs in b["runs"].items()}
    ratio = med["gateway"] / med["direct"]
    ratio_jump = med["jump"] / med["direct"]
    k = res["keys"]
    d50 = k["gateway"]["p50"] - k["direct"]["p50"]
    d99 = k["gateway"]["p99"] - k["direct"]["p99"]
    cast_ratios = [r["cast_bytes"] / r["bytes"] for r in b["runs"]["gateway"]]
    cast_ratio = statistics.median(cast_ratios)
    c = res["connect"]
    rss = res["rss"]
    alg = res["algorithms"]

    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**FAIL**"

    def runs_list(vals) -> str:
        return ", ".join(f"{v:.0f}" for v in vals)

    mode = "quick" if args.quick else "full"
    when = dt.datetime.fromtimestamp(res["started"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    pinned = [f"`{x}`" for x in (args.cipher, args.kex) if x]
    alg_note = (f"pinned on every client and sshd: {', '.join(pinned)}" if pinned
                else "defaults, negotiated (nothing pinned)")
    L: list[str] = []
    L.append(RESULTS_START)
    L.append("")
    L.append(f"## Results ({mode} run, {when})")
    L.append("")
    L.append("Written by `bench/run.sh`; rerunning it replaces this section.")
    L.append("")
    L.append("| | |")
    L.append("|---|---|")
    L.append(f"| date | {when} |")
    L.append(f"| command | `{args.command}` |")
    L.append(f"| parameters | {args.size_mib} MiB bulk file, N = {args.runs} bulk runs per path, "
             f"{args.keystrokes} keystrokes, {args.connects} connects per path, {args.sessions} idle sessions |")
    L.append(f"| machine | `nproc` = {facts['nproc']}, {facts['cpu']}, {facts['mem_gib']:.1f} GiB RAM, "
             f"kernel {facts['kernel']} |")
    L.append(f"| load average (1 min) at start / end | {res['load_start'][0]:.2f} / {res['load_end'][0]:.2f} |")
    L.append(f"| OpenSSH | {facts['openssh']} (openssh-server {facts['sshd_pkg']}) |")
    L.append(f"| breakglass | {facts['breakglass']}, release build, git {facts['git']} |")
    L.append(f"| algorithms | {alg_note}; see the table below |")
    L.append(f"| run time | {res['elapsed_s'] / 60:.1f} min (without the build) |")
    L.append("")
    L.append("| SSH leg | key exchange | cipher |")
    L.append("|---|---|---|")
    legs = [("client → gateway (russh server)", "gateway"), ("gateway (russh client) → target sshd", "gateway_upstream"),
            ("client → target sshd (direct)", "direct"), ("ProxyJump: client → jump sshd, and client → target through it", "jump")]
    for label, key in legs:
        L.append(f"| {label} | {', '.join(f'`{x}`' for x in alg['kex'].get(key, [])) or '?'} | "
                 f"{', '.join(f'`{x}`' for x in alg['cipher'].get(key, [])) or '?'} |")
    L.append("")
    q = res["quiet"]
    noisy = [x for x in q if x["busy"] >= args.quiet_busy]
    L.append(f"Background load: before each measurement the bench waited up to {args.quiet_wait:.0f} s for the "
             f"machine to be quiet (under {args.quiet_busy} busy cores); {len(q) - len(noisy)} of {len(q)} waits "
             "got there" + (", the others measured anyway with "
                            + ", ".join(f"{x['what']} {x['busy']:.2f}" for x in noisy) + " cores busy" if noisy else "")
             + ". Other processes' CPU during each bulk run is in the CPU table below.")
    L.append("")
    L.append("### Goals")
    L.append("")
    L.append("| goal | measured | |")
    L.append("|---|---|---|")
    L.extend(fmt_goal_rows(throughput_goals(res)))
    L.append(f"| keystroke echo p99 < 0.5 ms over direct | {d99:+.3f} ms | {verdict(d99 < 0.5)} |")
    L.append(f"| recording ≤ 1.3× the output | {cast_ratio:.3f}× | {verdict(cast_ratio <= 1.3)} |")
    L.extend(render_timing_goals(res)[2:])
    L.append("")
    L.append("### 1. Bulk output throughput")
    L.append("")
    L.append(f"`cat` of a {b['size'] // MIB} MiB base64 text file (76-character lines) to the client, "
             "which discards it. MiB/s from the first byte to EOF (connection setup excluded; it is "
             "measured in 3.); the wall column includes setup. Median of the runs.")
    L.append("")
    L.append("| path | MiB/s | ratio to direct | MiB/s incl. setup | runs (MiB/s) |")
    L.append("|---|---|---|---|---|")
    names = {"gateway": "gateway (recording on)", "direct": "direct to the target sshd",
             "jump": "ProxyJump (`ssh -J`) via a second sshd"}
    for p in ("gateway", "direct", "jump"):
        rs = b["runs"][p]
        rr = f"{med[p] / med['direct']:.2f}×"
        L.append(f"| {names[p]} | {med[p]:.1f} | {rr} | {medw[p]:.1f} | {runs_list(r['mibps'] for r in rs)} |")
    L.append("")
    L.append("CPU use during the median run of each path, in % of one core over the run's wall time "
             f"(the machine has {facts['nproc']} cores, so 100% = one core busy). \"other processes\" is "
             "whatever else the machine ran meanwhile (machine busy time minus the processes above).")
    L.append("")
    L.extend(fmt_cpu_table(b["runs"]))
    gws = b["runs"]["gateway"]
    L.append("")
    L.append(f"Each recording was sealed (hashed and signed) {statistics.median(r['seal_s'] for r in gws):.2f} s "
             "(median) after the client exited; counting that, the gateway used "
             f"{statistics.median(r['gw_cpu_incl_seal'] for r in gws):.2f} CPU-seconds per run "
             f"({statistics.median(r['gw_cpu_incl_seal'] / (r['bytes'] / MIB) for r in gws) * 1000:.1f} ms per MiB).")
    prof = b.get("profile")
    if prof:
        L.append("")
        L.append("Where the gateway's CPU time goes: `perf record -F 499 -p GATEWAY` during one extra gateway bulk "
                 "run (not counted above), symbols over 1% of the samples (`[k]` = kernel):")
        L.append("")
        L.extend(fmt_profile(prof))
    L.extend(fmt_bound(res, facts, med, cast_ratio))
    L.extend(fmt_more_throughput(res, args))
    L.append("")
    L.append("### 2. Keystroke echo latency")
    L.append("")
    L.append(f"`ssh -tt … 'stty raw -echo; cat'`: write one byte, wait for the echo; {k['gateway']['n']} round "
             "trips per path after 50 warm-up ones, in ms. Both sessions are open at once and the round trips "
             "alternate between them.")
    L.append("")
    L.append("| path | p50 | p90 | p99 | max | mean |")
    L.append("|---|---|---|---|---|---|")
    for p in ("gateway", "direct"):
        r = k[p]
        L.append(f"| {p} | {r['p50']:.3f} | {r['p90']:.3f} | {r['p99']:.3f} | {r['max']:.3f} | {r['mean']:.3f} |")
    L.append(f"| **gateway − direct** | {d50:+.3f} | {k['gateway']['p90'] - k['direct']['p90']:+.3f} | "
             f"{d99:+.3f} | | {k['gateway']['mean'] - k['direct']['mean']:+.3f} |")
    L.append("")
    L.append("### 3. Connect time")
    L.append("")
    L.append(f"Wall time of `ssh … true` (process start to exit), {len(c['direct'])} runs each, "
             "interleaved; through the gateway the grant is requested and approved beforehand (not timed).")
    L.append("")
    L.append("| path | median ms | min | max |")
    L.append("|---|---|---|---|")
    for p in ("gateway", "direct"):
        v = c[p]
        L.append(f"| {p} | {statistics.median(v):.1f} | {min(v):.1f} | {max(v):.1f} |")
    L.append(f"| **gateway − direct** | {statistics.median(c['gateway']) - statistics.median(c['direct']):+.1f} | | |")
    note = ""
    if alg["kex"].get("direct") != alg["kex"].get("gateway"):
        gw = sorted(set(alg["kex"].get("gateway", []) + alg["kex"].get("gateway_upstream", [])))
        note += (f"The key exchange differs: direct uses {', '.join(alg['kex']['direct'])}, the gateway's two legs "
                 f"{' and '.join(gw)} (see the algorithms table; `--kex` pins one everywhere).")
    if note:
        L.append("")
        L.append(note)
    L.append("")
    L.append("### 4. Gateway memory per idle session")
    L.append("")
    L.append(f"{rss['n']} concurrent `ssh … 'sleep 600'` sessions through the gateway, each with its own grant, "
             f"opened {args.open_concurrency} at a time (in {rss['open_s']:.1f} s). VmRSS of the `breakglass up` "
             "process (it also serves the HTTP API) from /proc/PID/status.")
    L.append("")
    L.append("| before | with all sessions open | per session | after they closed | fds before → open | threads |")
    L.append("|---|---|---|---|---|---|")
    L.append(f"| {rss['before_kib']} KiB | {rss['after_kib']} KiB | **{rss['per_session_kib']:.1f} KiB** | "
             f"{rss['closed_kib']} KiB | {rss['fds_before']} → {rss['fds_after']} | "
             f"{rss['threads_before']} → {rss['threads_after']} |")
    L.append("")
    L.append(f"At the end of the whole run the gateway's VmRSS was {res['gw_rss_end_kib']} KiB, "
             f"its peak (VmHWM) {res['gw_hwm_kib']} KiB.")
    L.append("")
    L.append("### 5. Recording size")
    L.append("")
    L.append("| output bytes | .cast bytes (median run) | ratio | runs |")
    L.append("|---|---|---|---|")
    mid = sorted(gws, key=lambda r: r["cast_bytes"])[len(gws) // 2]
    L.append(f"| {mid['bytes']} | {mid['cast_bytes']} | {cast_ratio:.3f}× | "
             + ", ".join(f"{x:.3f}×" for x in cast_ratios) + " |")
    L.append("")
    L.extend(render_timing(res, args))
    L.append("")
    L.append(RESULTS_END)
    return "\n".join(L) + "\n"


# ---- upload, bidirectional stream, transfers: tables and goals (issue 13) -------------------


def _med(vals) -> float:
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.median(vals) if vals else float("nan")


def _ms_per_mib(runs: list[dict]) -> float:
    """The gateway's CPU per MiB moved (recording sealed included), median of the runs."""
    return _med([r["gw_cpu_incl_seal"] / (r["bytes"] / MIB) * 1000 for r in runs if "gw_cpu_incl_seal" in r])


def throughput_goals(res: dict) -> list[tuple[str, str, bool]]:
    """Issue 13's throughput goals: (goal, measured, met), for what this run measured."""
    rows: list[tuple[str, str, bool]] = []
    for key, what, goal in (("bulk", "download", 0.80), ("upload", "upload", 0.75)):
        if key not in res:
            continue
        runs = res[key]["runs"]
        m = {p: _med([r["mibps"] for r in rs]) for p, rs in runs.items()}
        ratio, jump = m["gateway"] / m["direct"], m["jump"] / m["direct"]
        rows.append((f"{what} through the gateway ≥ {goal:.2f}× direct (recording on, printable)",
                     f"{ratio:.2f}×", ratio >= goal))
        rows.append((f"{what} through the gateway ahead of ProxyJump", f"{ratio:.2f}× vs {jump:.2f}×", ratio > jump))
        ms = _ms_per_mib(runs["gateway"])
        rows.append((f"gateway CPU ≤ 2.5 ms per MiB ({what})", f"{ms:.2f} ms", ms <= 2.5))
    hangs, total, parts = 0, 0, []
    for key, label in (("transfers", None), ("bidi", "bidirectional")):
        if key not in res:
            continue
        for name, rs in res[key]["runs"].items():
            if not name.startswith("gateway"):
                continue
            h = sum(r["hang"] for r in rs)
            hangs, total = hangs + h, total + len(rs)
            parts.append(f"{label or name.split()[1]} {h}/{len(rs)}")
    if total:
        rows.append(("0 hangs through the gateway in every direction (a hang = no progress for 10 s)",
                     ", ".join(parts), hangs == 0))
    return rows


def fmt_transfer_table(runs: dict[str, list[dict]], direct_key: str = "direct") -> list[str]:
    L = ["| path | MiB/s | ratio to direct | hangs | runs (MiB/s) | gateway ms CPU per MiB |", "|---|---|---|---|---|---|"]
    m = {p: _med([r["mibps"] for r in rs]) for p, rs in runs.items()}
    names = {"gateway": "gateway (recording on)", "direct": "direct to the target sshd",
             "jump": "ProxyJump (`ssh -J`) via a second sshd"}
    for p, rs in runs.items():
        h = sum(r.get("hang", False) for r in rs)
        vals = ", ".join("hang" if r.get("hang") else f"{r['mibps']:.0f}" for r in rs)
        ratio = m[p] / m[direct_key] if direct_key in m else float("nan")
        cpu = f"{_ms_per_mib(rs):.2f}" if p == "gateway" and any("gw_cpu_incl_seal" in r for r in rs) else "–"
        mibs = "–" if math.isnan(m[p]) else f"{m[p]:.1f}"
        rat = "–" if math.isnan(ratio) else f"{ratio:.2f}×"
        L.append(f"| {names.get(p, p)} | {mibs} | {rat} | {h} of {len(rs)} | {vals} | {cpu} |")
    return L


def fmt_profile(prof: list[dict]) -> list[str]:
    """A `perf report` top list as a table."""
    L = ["| share | symbol |", "|---|---|"]
    for t in prof:
        sym = t["symbol"].replace("|", "\\|")
        L.append(f"| {t['pct']:.1f}% | {'[k] ' if t['kernel'] else ''}`{sym}` |")
    return L


def fmt_more_throughput(res: dict, args: argparse.Namespace) -> list[str]:
    """Upload, the bidirectional stream and the transfer hang count, as far as measured."""
    L: list[str] = []
    if "upload" in res:
        u = res["upload"]
        L += ["", "### 1b. Upload throughput", "",
              f"The client sends a {u['size'] // MIB} MiB base64 text file (its stdin) to `cat > /dev/null` on the "
              "target; MiB/s from the first byte the client read to its exit (the remote `cat` got EOF and the "
              "session closed). Interleaved like 1., median of the runs; the gateway's CPU counts sealing the "
              "recording.", ""]
        L += fmt_transfer_table(u["runs"])
        L += ["", "CPU use during the median run of each path (as in 1.):", ""]
        L += fmt_cpu_table(u["runs"])
        if u.get("profile"):
            L += ["", "Where the gateway's CPU time goes during one extra, unmeasured upload (`perf record -F 499 "
                  "-p GATEWAY`), symbols over 1% of the samples (`[k]` = kernel):", ""]
            L += fmt_profile(u["profile"])
    if "bidi" in res:
        b = res["bidi"]
        L += ["", "### 1c. Bidirectional stream", "",
              f"The client sends {b['size'] // MIB} MiB of base64 text to `cat` on the target and reads the echo back "
              f"at once (`ssh … cat < FILE`). MiB/s of echo from its first byte to its last. A run with no progress "
              f"either way for {args.stall_s:.0f} s is a hang: it is killed and counted, and the bench goes on.", ""]
        L += fmt_transfer_table(b["runs"])
    if "transfers" in res:
        t = res["transfers"]
        n = len(next(iter(t["runs"].values())))
        L += ["", "### 1d. Transfers and hangs", "",
              f"{n} transfers of {t['size'] // MIB} MiB each way (download: `cat FILE`; upload: to `cat > /dev/null`), "
              f"through the gateway and direct, interleaved. A hang = no progress for {args.stall_s:.0f} s.", "",
              "| path, direction | runs | hangs | median MiB/s | min | max |", "|---|---|---|---|---|---|"]
        for key, rs in t["runs"].items():
            ok = [r["mibps"] for r in rs if not r["hang"]]
            cells = (f"{statistics.median(ok):.1f} | {min(ok):.1f} | {max(ok):.1f}" if ok else "– | – | –")
            L.append(f"| {key} | {len(rs)} | {sum(r['hang'] for r in rs)} | {cells} |")
    return L


def fmt_goal_rows(rows: list[tuple[str, str, bool]]) -> list[str]:
    return [f"| {g} | {m} | {'**pass**' if ok else '**FAIL**'} |" for g, m, ok in rows]


def render_focused(res: dict, facts: dict, args: argparse.Namespace) -> str:
    """The report of a focused run (--only): the throughput sections it measured and their goals."""
    L = [f"## Focused run ({', '.join(sorted(args.only))}), "
         f"{dt.datetime.fromtimestamp(res['started'], dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}", "",
         f"`{args.command}`; git {facts['git']}; load average at start / end "
         f"{res['load_start'][0]:.2f} / {res['load_end'][0]:.2f}; nproc {facts['nproc']}", ""]
    alg = res.get("algorithms")
    if alg:
        L.append("ciphers: " + "; ".join(f"{k} {', '.join(v)}" for k, v in alg["cipher"].items()))
        L.append("")
    L += ["| goal | measured | |", "|---|---|---|"] + fmt_goal_rows(throughput_goals(res))
    if "bulk" in res:
        L += ["", "### 1. Bulk output (download)", ""] + fmt_transfer_table(res["bulk"]["runs"])
        L += ["", "CPU use during the median run of each path:", ""] + fmt_cpu_table(res["bulk"]["runs"])
        prof = res["bulk"].get("profile")
        if prof:
            L += [""] + fmt_profile(prof)
    L += fmt_more_throughput(res, args)
    if "cuts" in res:
        L += [""] + render_timing_goals(res) + [""] + render_timing(res, args)
    return "\n".join(L) + "\n"


def render_timing_goals(res: dict) -> list[str]:
    """The goals table's rows for 7.-9. (with its header first, for --only-timing)."""
    def verdict(ok: bool) -> str:
        return "**pass**" if ok else "**FAIL**"
    c, g, m = res["cuts"], res["grant_latency"], res["pty"]
    rv = p99_ms([r["severed"] for r in c["revoke"]])
    ex = p99_ms([r["severed"] for r in c["expiry"]])
    gl = p99_ms(g["lat"])
    return [
        "| goal | measured | |",
        "|---|---|---|",
        f"| revoke → target severed p99 < 100 ms (one node) | {rv:.0f} ms | {verdict(rv < 100)} |",
        f"| expiry → target severed p99 < 50 ms after the signed deadline | {ex:.0f} ms | {verdict(ex < 50)} |",
        f"| last approval → usable grant at {g['rate']:.0f} approvals/s, p99 | {gl:.0f} ms | "
        f"{verdict(gl < 1000 and g['usable'] == g['tried'])} (goal: under 1 s, no failure) |",
        f"| memory per interactive {m['cols']}x{m['rows']} session at {m['n']} sessions < 256 KiB | "
        f"{m['per_session_kib']:.0f} KiB | {verdict(m['per_session_kib'] < 256)} |",
        f"| gateway CPU with {m['n']} idle interactive sessions near zero (< 1% of a core) | "
        f"{m['idle_cpu'] * 100:.2f}% | {verdict(m['idle_cpu'] < 0.01)} |",
    ]


def render_timing(res: dict, args: argparse.Namespace) -> list[str]:
    """Sections 7.-9.: cuts, time to grant, interactive memory."""
    c, g, m = res["cuts"], res["grant_latency"], res["pty"]
    L = ["### 7. Cuts on time", ""]
    L.append(f"{c['n']} sessions for each, opened 10 at a time, each an interactive shell on the target that "
             "notes (bash `$EPOCHREALTIME`) when its terminal hangs up: that is when the target's sshd lost the "
             "gateway's connection, so nothing more can run (**target severed**, the security moment). "
             "**Client closed** is when the client's `ssh` saw its connection end, after the goodbye line "
             "(given up after 250 ms if the client does not read). Revoke: from the API call sent (`breakglass "
             "up`: the revoke wakes the gateway in the same process). Expiry: from the signed deadline "
             "(`session_deadline` in the recording's header).")
    L.append("")
    L.append("| | target severed | client closed |")
    L.append("|---|---|---|")
    for key, label in (("revoke", "revoke → cut"), ("expiry", "signed deadline → cut")):
        L.append(f"| {label} | {summary_ms([r['severed'] for r in c[key]])} | "
                 f"{summary_ms([r['closed'] for r in c[key]])} |")
    L.append("")
    L.append("### 8. Time to a usable grant")
    L.append("")
    L.append(f"{g['n']} requests made first (not timed); then their {2 * g['n']} approvals (two per request) sent "
             f"through the HTTP API at {g['rate']:.0f} a second on a fixed schedule ({g['sent_s']:.1f} s). From "
             "each quorum-completing approval sent to its answer, which comes once the grant is committed and "
             f"usable: {summary_ms(g['lat'])}. {g['usable']} of {g['tried']} grants then connected.")
    L.append("")
    L.append("### 9. Memory and idle CPU per interactive session")
    L.append("")
    L.append(f"{m['n']} interactive login shells through the gateway, each in a local {m['cols']}x{m['rows']} pty "
             f"(`ssh -tt`), one command typed in each, opened {args.open_concurrency} at a time (in "
             f"{m['open_s']:.1f} s), then left idle.")
    L.append("")
    L.append(f"| VmRSS before | with all open ({PTY_SETTLE_S} s after the last opened) | per session | "
             "gateway CPU while idle |")
    L.append("|---|---|---|---|")
    L.append(f"| {m['before_kib']} KiB | {m['after_kib']} KiB | **{m['per_session_kib']:.1f} KiB** | "
             f"{m['idle_cpu'] * 100:.2f}% of a core over {m['idle_s']:.0f} s |")
    return L


DEFAULT_HEAD = """# Benchmarks

What `bench/run.sh` measures is described in bench/bench.py; the results follow.

"""


def write_results(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else DEFAULT_HEAD
    if RESULTS_START in text and RESULTS_END in text:
        head, rest = text.split(RESULTS_START, 1)
        tail = rest.split(RESULTS_END, 1)[1]
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the breakglass binary")
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 64 MiB, N=1, 200 keystrokes, 5 connects, 20 sessions")
    ap.add_argument("--size-mib", type=int)
    ap.add_argument("--runs", type=int, help="bulk runs per path (median reported)")
    ap.add_argument("--keystrokes", type=int)
    ap.add_argument("--connects", type=int)
    ap.add_argument("--sessions", type=int)
    ap.add_argument("--open-concurrency", type=int, default=8, help="idle sessions opened at once")
    ap.add_argument("--cipher", help="pin this cipher on every client and sshd (default: negotiate)")
    ap.add_argument("--gateway-cipher", help="pin this cipher on the client's leg to the gateway only (what a "
                    "gateway offering only it would get from OpenSSH), to try a cipher list without a rebuild")
    ap.add_argument("--kex", help="pin this key exchange on every client and sshd (default: negotiate)")
    ap.add_argument("--quiet-wait", type=float,
                    help="before each measurement, wait up to this many seconds for the machine to be "
                    "quiet (other processes under --quiet-busy); default 30, 5 with --quick")
    ap.add_argument("--quiet-busy", type=float, default=0.25,
                    help="'quiet' = the whole machine busy under this many cores (default 0.25)")
    ap.add_argument("--output", help="Markdown file whose results section is rewritten "
                    "(default: BENCHMARKS.md for a full run, none for --quick)")
    ap.add_argument("--no-perf", action="store_true",
                    help="skip the extra gateway runs (download, upload) under `perf record` (done when perf is installed)")
    ap.add_argument("--bidi-mib", type=int, help="MiB sent and echoed back per bidirectional run (default 64, 16 with --quick)")
    ap.add_argument("--transfers", type=int, help="transfers each way per path for the hang count (default 32, 4 with --quick)")
    ap.add_argument("--transfer-mib", type=int, help="MiB per transfer in the hang count (default 16, 4 with --quick)")
    ap.add_argument("--stall-s", type=float, default=10.0, help="a transfer with no progress for this long is a hang (default 10)")
    ap.add_argument("--only", type=lambda v: set(v.split(",")),
                    help="measure only these, comma-separated: rss, connect, keys, bulk, upload, bidi, transfers, timing "
                    "(a focused run: prints the throughput tables and goals, never writes BENCHMARKS.md)")
    ap.add_argument("--json", help="also write the raw results as JSON here")
    ap.add_argument("--cut-sessions", type=int, help="sessions for revoke -> cut and for expiry -> cut (7.)")
    ap.add_argument("--grant-requests", type=int, help="requests approved at --approval-rate (8.)")
    ap.add_argument("--approval-rate", type=float, default=200.0, help="approvals a second (8.)")
    ap.add_argument("--pty-sessions", type=int, help="interactive 200x50 sessions held open (9.)")
    ap.add_argument("--only-timing", action="store_true",
                    help="measure 7.-9. only (cuts, time to grant, interactive memory) and print them")
    ap.add_argument("--tmpdir", help="where to make the temporary directory")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory and recordings")
    ap.add_argument("--command", default="bench/bench.py " + " ".join(sys.argv[1:]))
    ap.add_argument("--git", help="what was built, for the report (default: the repository's HEAD and state)")
    a = ap.parse_args()
    full = {"size_mib": 512, "runs": 3, "keystrokes": 1000, "connects": 10, "sessions": 200, "quiet_wait": 30.0,
            "bidi_mib": 64, "transfers": 32, "transfer_mib": 16,
            "cut_sessions": 50, "grant_requests": 200, "pty_sessions": 1000}
    quick = {"size_mib": 64, "runs": 1, "keystrokes": 200, "connects": 5, "sessions": 20, "quiet_wait": 5.0,
             "bidi_mib": 16, "transfers": 4, "transfer_mib": 4,
             "cut_sessions": 10, "grant_requests": 50, "pty_sessions": 50}
    for key, v in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, v)
    known = {"rss", "connect", "keys", "bulk", "upload", "bidi", "transfers", "timing"}
    if a.only and not a.only <= known:
        ap.error(f"--only: unknown {', '.join(sorted(a.only - known))} (known: {', '.join(sorted(known))})")
    if a.output is None and not a.quick and not a.only:
        a.output = str(Path(a.repo) / "BENCHMARKS.md")
    for key in ("size_mib", "runs", "keystrokes", "connects", "sessions", "bidi_mib", "transfers", "transfer_mib"):
        if getattr(a, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be at least 1")

    # children inherit the limit: the gateway holds two sockets per session
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else max(soft, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass
    need = 4 * max(a.sessions, a.pty_sessions) + 200
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        log(f"warning: the open-file limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} is below {need}; "
            "raise it (ulimit -n) for this many sessions")

    if not become_subreaper():
        log("warning: cannot become a child subreaper; ProxyJump's inner ssh CPU time goes uncounted")
    bench = Bench(a)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        res = bench.run()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        bench.cleanup()
        return 130
    except (BenchError, subprocess.TimeoutExpired, OSError) as e:
        log(f"FAILED: {e}")
        gl = getattr(bench, "gw_log", None)
        if gl and gl.exists():
            tail = gl.read_text(errors="replace").splitlines()[-30:]
            log("last gateway log lines:\n" + "\n".join(tail))
        bench.cleanup()
        return 1
    except BaseException:
        bench.cleanup()
        raise
    bench.cleanup()

    facts = machine_facts(Path(a.repo), Path(a.bin))
    if a.git:
        facts["git"] = a.git
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "facts": facts, "results": res}, indent=1, default=str))
    if a.only_timing:
        print("\n".join(render_timing_goals(res) + [""] + render_timing(res, a)))
        log(f"done in {res['elapsed_s'] / 60:.1f} min")
        return 0
    try:
        section = render_focused(res, facts, a) if a.only else render(res, facts, a)
    except Exception:
        dump = Path(tempfile.gettempdir()) / f"bg-bench-results-{os.getpid()}.json"
        dump.write_text(json.dumps({"args": vars(a), "facts": facts, "results": res}, indent=1, default=str))
        log(f"could not render the report; the raw results are in {dump}")
        raise
    print(section)
    if a.output:
        write_results(Path(a.output), section)
        log(f"results written to {a.output}")
    log(f"done in {res['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
