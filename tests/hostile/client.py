#!/usr/bin/env python3
"""A hostile SSH client for the gateway's adversarial tests (tests/tests/hostile.rs).

It does what a well-behaved client never does: it opens a channel and never reads it, floods
channel requests, sends extended data towards the server, opens every channel it may with a
huge terminal, and fills the gateway's pre-auth slots with idle TCP connections.

It can also ignore SSH flow control: send past the window the server gave it.

Usage: client.py SCENARIO [options]   (scenarios: decoy, steps, channels, flood, overrun)

Every line it prints on stdout is one JSON object with an "event" key, flushed at once, for
the Rust test to read. Times ("at") are Unix seconds (float) from this machine's clock, which
is also the target's. It exits on its own within --max-seconds, or when its stdin closes.
"""

import argparse
import base64
import errno
import json
import os
import resource
import select
import socket
import sys
import threading
import time

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST


def say(event, **fields):
    fields["event"] = event
    fields.setdefault("at", time.time())
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def b64(data):
    return base64.b64encode(data).decode("ascii")


def stdin_closed_flag():
    """A flag set when stdin reaches EOF: the test's way of saying "stop"."""
    flag = threading.Event()

    def watch():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            flag.set()

    threading.Thread(target=watch, daemon=True).start()
    return flag


class Conn:
    """One SSH connection to the gateway, logged in with a public key.

    The TCP socket is duplicated before paramiko gets it: once paramiko stops (it got a
    disconnect message, or EOF), the duplicate still shows when the *server* closes TCP.
    """

    def __init__(self, args):
        self.sock = socket.create_connection((args.host, args.port), timeout=10)
        self.sock.settimeout(None)
        self.dup = socket.socket(fileno=os.dup(self.sock.fileno()))
        self.transport = paramiko.Transport(self.sock)
        self.transport.start_client(timeout=15)
        key = paramiko.Ed25519Key.from_private_key_file(args.key)
        self.transport.auth_publickey(args.user, key)
        if not self.transport.is_authenticated():
            raise SystemExit("not authenticated")

    def tcp_closed_by_server(self, wait):
        """After paramiko stopped: waits up to `wait` s for the server to close TCP; returns
        the time it did, or None."""
        end = time.time() + wait
        self.dup.setblocking(False)
        while time.time() < end:
            r, _, _ = select.select([self.dup], [], [], 0.02)
            if not r:
                continue
            try:
                if not self.dup.recv(65536):
                    return time.time()
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                    return time.time()
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return time.time()
        return None

    def signal(self, chan, name):
        """A `signal` channel request (RFC 4254 6.9); paramiko has no public API for it."""
        m = paramiko.Message()
        m.add_byte(cMSG_CHANNEL_REQUEST)
        m.add_int(chan.remote_chanid)
        m.add_string("signal")
        m.add_boolean(False)
        m.add_string(name)
        self.transport._send_user_message(m)


def drain(chan, sink, stderr_sink=None):
    """Reads `chan` (stdout and stderr) into bytearrays on a thread until it closes."""

    def run():
        try:
            while True:
                if chan.recv_ready():
                    sink.extend(chan.recv(65536))
                elif chan.recv_stderr_ready():
                    data = chan.recv_stderr(65536)
                    if stderr_sink is not None:
                        stderr_sink.extend(data)
                elif chan.closed or chan.eof_received:
                    return
                else:
                    time.sleep(0.01)
        except Exception:
            return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def tolerate_refusals():
    """paramiko closes a channel when the server answers a request with a failure (even one
    sent without want-reply); a hostile client carries on instead."""

    def failed(self, m):
        self.event_ready = True
        self.event.set()

    paramiko.Channel._request_failed = failed


def scenario_decoy(args):
    """Cut evasion. Channel 1 (a tiny window, a pty) runs $HOSTILE_DECOY, whose output is never
    read; channel 2 runs `sh` and gets `touch MARKER_DIR/after-<ns>` every 200 ms, its output
    drained. Reports when paramiko stopped and when the server closed TCP."""
    decoy = os.environ["HOSTILE_DECOY"]
    c = Conn(args)
    t = c.transport
    # paramiko's smallest window (32 KiB) and packet: the decoy's output fills it at once.
    d = t.open_session(window_size=32768, max_packet_size=4096)
    d.get_pty(term="xterm", width=80, height=24)
    d.exec_command(decoy)
    work = t.open_session()
    work.exec_command("sh")
    out = bytearray()
    drain(work, out)
    say("ready")
    sent = 0
    deadline = time.time() + args.max_seconds
    next_send = time.time()
    while time.time() < deadline:
        if not t.is_active():
            break
        if time.time() >= next_send:
            line = "touch %s/after-$(date +%%s%%N)\n" % args.marker_dir
            try:
                work.sendall(line.encode())
                sent += 1
            except Exception as e:  # the channel or the connection went away
                say("send_failed", error=str(e), sent=sent)
                break
            next_send += 0.2
        time.sleep(0.01)
    # A closed channel is not enough: wait for the connection itself to end.
    while t.is_active() and time.time() < deadline:
        time.sleep(0.01)
    stopped = time.time()
    if t.is_active():
        say("timeout", sent=sent)
        return 1
    tcp = c.tcp_closed_by_server(5)
    say("closed", transport_at=stopped, tcp_at=tcp, sent=sent)
    return 0


def scenario_steps(args):
    """One session channel driven by a JSON list of steps, in order:
    {"pty": [cols, rows]}, {"env": [name, value]}, {"exec": cmd}, {"shell": true},
    {"subsystem": name},
    {"send": text}, {"send_b64": b64}, {"stderr": text}, {"signal": name},
    {"resize_flood": n, "huge": bool} (every other one 10000x10000 when huge), {"env_flood": n}, {"expect": text, "timeout": s}, {"sleep": s},
    {"eof": true}, {"wait_close": s}.
    Prints each expectation met ("expected") and at the end the channel's stdout, stderr
    (base64) and exit status ("done")."""
    steps = json.loads(args.spec)
    c = Conn(args)
    chan = c.transport.open_session()
    out, err = bytearray(), bytearray()
    started = False
    for step in steps:
        if "pty" in step:
            cols, rows = step["pty"]
            chan.get_pty(term="xterm", width=cols, height=rows)
        elif "env" in step:
            chan.set_environment_variable(*step["env"])
        elif "exec" in step:
            chan.exec_command(step["exec"])
        elif "shell" in step:
            chan.invoke_shell()
        elif "subsystem" in step:
            chan.invoke_subsystem(step["subsystem"])
        elif "send" in step or "send_b64" in step:
            data = step["send"].encode() if "send" in step else base64.b64decode(step["send_b64"])
            chan.sendall(data)
        elif "stderr" in step:
            chan.sendall_stderr(step["stderr"].encode())
        elif "signal" in step:
            c.signal(chan, step["signal"])
        elif "resize_flood" in step:
            huge = step.get("huge", False)
            for i in range(step["resize_flood"]):
                if huge and i % 2 == 0:
                    chan.resize_pty(width=10000, height=10000)
                else:
                    chan.resize_pty(width=80 + i % 200, height=24 + i % 50)
            say("flooded", kind="window-change", count=step["resize_flood"])
        elif "env_flood" in step:
            for i in range(step["env_flood"]):
                chan.set_environment_variable("FLOOD_%d" % i, "x" * 64)
            say("flooded", kind="env", count=step["env_flood"])
        elif "expect" in step:
            if not started:
                drain(chan, out, err)
                started = True
            want = step["expect"].encode()
            end = time.time() + step.get("timeout", 10)
            while want not in out and want not in err and time.time() < end:
                time.sleep(0.02)
            if want in out or want in err:
                say("expected", text=step["expect"])
            else:
                say("missing", text=step["expect"], stdout=b64(bytes(out)), stderr=b64(bytes(err)))
                return 1
        elif "sleep" in step:
            time.sleep(step["sleep"])
        elif "eof" in step:
            chan.shutdown_write()
        elif "wait_close" in step:
            if not started:
                drain(chan, out, err)
                started = True
            end = time.time() + step["wait_close"]
            while not chan.closed and not chan.exit_status_ready() and time.time() < end:
                time.sleep(0.02)
        if "expect" not in step and "wait_close" not in step and not started and (
            "exec" in step or "shell" in step or "subsystem" in step
        ):
            drain(chan, out, err)
            started = True
    time.sleep(0.3)
    status = chan.recv_exit_status() if chan.exit_status_ready() else None
    say("done", stdout=b64(bytes(out)), stderr=b64(bytes(err)), exit=status)
    c.transport.close()
    return 0


def scenario_channels(args):
    """Opens --count session channels, each with a --cols x --rows pty and a shell running
    --script (output drained), then one more channel; holds them until stdin closes."""
    stop = stdin_closed_flag()
    c = Conn(args)
    chans = []
    for i in range(args.count + 1):
        try:
            ch = c.transport.open_session(timeout=10)
        except Exception as e:
            say("channel", n=i + 1, ok=False, error=str(e) or type(e).__name__)
            continue
        if i == args.count:
            say("channel", n=i + 1, ok=True)
            chans.append(ch)
            continue
        try:
            ch.get_pty(term="xterm", width=args.cols, height=args.rows)
            ch.invoke_shell()
            sink = bytearray()
            drain(ch, sink)
            ch.sendall((args.script + "\n").encode())
            chans.append(ch)
            say("channel", n=i + 1, ok=True)
        except Exception as e:
            say("channel", n=i + 1, ok=False, error=str(e) or type(e).__name__)
    say("opened", count=len(chans), active=c.transport.is_active())
    end = time.time() + args.max_seconds
    while not stop.is_set() and time.time() < end and c.transport.is_active():
        time.sleep(0.05)
    say("holding_done", active=c.transport.is_active())
    return 0


def scenario_overrun(args):
    """Runs --script on one channel and sends --count MiB to it, ignoring the window the
    server gave (paramiko is patched to never wait for window). Prints "sent" every MiB and
    "closed" (with the MiB sent) when the server ends the connection, or "done" when all was
    sent and the connection still stands after --max-seconds."""

    def greedy(self, size):
        # Never waits and never counts: as much as one packet holds, whatever the window.
        return min(size, self.out_max_packet_size - 64)

    paramiko.Channel._wait_for_send_window = greedy
    c = Conn(args)
    chan = c.transport.open_session()
    chan.exec_command(args.script)
    chunk = b"overrun " * 4096
    sent = 0
    total = args.count * 1024 * 1024
    try:
        while sent < total and c.transport.is_active():
            chan.sendall(chunk)
            sent += len(chunk)
            if sent % (1024 * 1024) == 0:
                say("sent", mib=sent // (1024 * 1024))
    except Exception as e:
        say("send_failed", mib=sent / (1024 * 1024), error=str(e) or type(e).__name__)
    end = time.time() + args.max_seconds
    while c.transport.is_active() and time.time() < end:
        time.sleep(0.05)
    if c.transport.is_active():
        say("done", mib=sent / (1024 * 1024))
    else:
        say("closed", mib=sent / (1024 * 1024), tcp_closed=c.tcp_closed_by_server(5) is not None)
    return 0


def scenario_flood(args):
    """Opens --count TCP connections from --source to the gateway and never sends a byte (not
    even the SSH banner). Reports how many were opened, then every 250 ms how many the server
    has closed, until stdin closes or --max-seconds pass."""
    stop = stdin_closed_flag()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        except (ValueError, OSError):
            pass
    socks, failed = [], 0
    for _ in range(args.count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((args.source, 0))
            s.settimeout(5)
            s.connect((args.host, args.port))
            s.setblocking(False)
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    say("flooded", opened=len(socks), failed=failed)
    open_ = {s.fileno(): s for s in socks}
    closed = 0
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    end = time.time() + args.max_seconds
    last = 0.0
    while not stop.is_set() and time.time() < end:
        for fd, _ in poller.poll(50):
            s = open_.get(fd)
            if s is None:
                continue
            try:
                data = s.recv(4096)  # the server's banner, then EOF when it closes
                gone = not data
            except BlockingIOError:
                gone = False
            except OSError:
                gone = True
            if gone:
                poller.unregister(fd)
                del open_[fd]
                s.close()
                closed += 1
        if time.time() - last >= 0.25:
            last = time.time()
            say("status", closed_by_server=closed, still_open=len(open_))
    for s in open_.values():
        s.close()
    say("done", closed_by_server=closed)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario", choices=["decoy", "steps", "channels", "flood", "overrun"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="")
    p.add_argument("--key", default="")
    p.add_argument("--marker-dir", default="")
    p.add_argument("--spec", default="[]")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--cols", type=int, default=80)
    p.add_argument("--rows", type=int, default=24)
    p.add_argument("--script", default="true")
    p.add_argument("--source", default="127.0.0.2")
    p.add_argument("--max-seconds", type=float, default=40)
    args = p.parse_args()
    tolerate_refusals()
    try:
        rc = {
            "decoy": scenario_decoy,
            "steps": scenario_steps,
            "channels": scenario_channels,
            "flood": scenario_flood,
            "overrun": scenario_overrun,
        }[args.scenario](args)
    except Exception as e:
        say("error", error="%s: %s" % (type(e).__name__, e))
        rc = 2
    sys.stdout.flush()
    os._exit(rc)


if __name__ == "__main__":
    main()
