#!/usr/bin/env python3
"""Writes the checked-in seed corpus of every fuzz target into fuzz/corpus/NAME/.

The seeds are real inputs: the Slack and Discord bodies the test builders send
(tests/src/fake_slack.rs, tests/src/fake_discord.rs), approvals signed over the canonical
bytes of docs/approval-format.md, the example configs, the captured scp and SFTP
conversations of format/tests/fixtures/transfer/, and a recorded shell session.
Stream targets read frames: tag byte, little-endian u16 length, bytes
(format/src/fuzzing.rs). Run from anywhere: python3 fuzz/seeds.py
"""
import hashlib
import json
import os
import struct
import urllib.parse

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frames(chunks):
    out = b""
    for tag, data in chunks:
        while True:
            piece, data = data[:65535], data[65535:]
            out += bytes([tag]) + struct.pack("<H", len(piece)) + piece
            if not data:
                break
    return out


# --- slash command text and Slack forms (fake_slack::command_body / click_body).
TEXTS = {
    "request": "request db-1 --as postgres --for 30m replica lag, need --as to kill",
    "request_short": "request db-1 disk full",
    "status": "status bg-7f3a2c",
    "status_mine": "status",
    "list": "list",
    "revoke": "revoke bg-7f3a2c",
    "review": "review bg-7f3a2c",
    "help": "help",
    "unicode": "request db-1 --scope prod-db r\u00e9sum\u00e9 \u202e bidi",
}
for name, text in TEXTS.items():
    put("slash_command", name, text)
    put("slack_command", name, urllib.parse.urlencode([
        ("token", "deprecated-verification-token"), ("team_id", "T0TEAM"),
        ("team_domain", "example"), ("channel_id", "C0INCIDENT"), ("channel_name", "incident"),
        ("user_id", "U0ALICE"), ("user_name", "someone"), ("command", "/breakglass"),
        ("text", text), ("api_app_id", "A0APP"), ("is_enterprise_install", "false"),
        ("response_url", "https://hooks.slack.com/commands/T0TEAM/1/abc"),
        ("trigger_id", "1.2.abc")]))

for action, ref in [("breakglass_approve", "bg-7f3a2c"), ("breakglass_deny", "bg-7f3a2c"),
                    ("breakglass_revoke", "0b6f3c1e-8d4a-4c59-9a53-1c2f4e7d9b10")]:
    payload = {
        "type": "block_actions",
        "team": {"id": "T0TEAM", "domain": "example"},
        "user": {"id": "U0BOB", "username": "someone", "team_id": "T0TEAM"},
        "api_app_id": "A0APP", "token": "deprecated-verification-token",
        "container": {"type": "message", "message_ts": "1795400000.000100",
                      "channel_id": "C0INCIDENT", "is_ephemeral": False},
        "trigger_id": "1.2.abc",
        "channel": {"id": "C0INCIDENT", "name": "incident"},
        "message": {"ts": "1795400000.000100", "type": "message", "text": "card"},
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/abc",
        "actions": [{"type": "button", "action_id": action, "block_id": "b1",
                     "text": {"type": "plain_text", "text": "Approve"},
                     "value": ref, "action_ts": "1795400000.000001"}],
    }
    put("slack_interaction", action, urllib.parse.urlencode([("payload", json.dumps(payload))]))
put("slack_interaction", "view_submission", urllib.parse.urlencode(
    [("payload", json.dumps({"type": "view_submission", "team": {"id": "T0TEAM"}}))]))

# --- Discord interactions (fake_discord::ping / command / autocomplete / component).
APP, GUILD, CHANNEL = "1180000000000000001", "1100000000000000001", "1200000000000000001"


def base(kind, iid, user_id):
    return {
        "id": str(iid), "application_id": APP, "type": kind, "token": f"interaction-token-{iid}",
        "version": 1, "guild_id": GUILD, "channel_id": CHANNEL,
        "channel": {"id": CHANNEL, "type": 0, "name": "incident", "guild_id": GUILD,
                    "permissions": "0"},
        "member": {"user": {"id": user_id, "username": "someone", "discriminator": "0",
                            "global_name": None, "avatar": None},
                   "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00",
                   "deaf": False, "mute": False, "flags": 0, "permissions": "0",
                   "pending": False},
        "app_permissions": "0", "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD}, "context": 0,
        "attachment_size_limit": 26214400,
    }


def command(iid, sub, options, focused=None):
    v = base(4 if focused else 2, iid, "1300000000000000001")
    opts = [{"name": n, "type": 3, "value": val} for n, val in options]
    if focused:
        opts[0]["focused"] = True
    v["data"] = {"id": "1400000000000000000", "name": "breakglass", "type": 1, "guild_id": GUILD,
                 "options": [{"name": sub, "type": 1, "options": opts}]}
    return v


put("discord_interaction", "ping", json.dumps(
    {"id": "1500000000000000001", "application_id": APP, "type": 1, "token": "ping-token",
     "version": 1}))
put("discord_interaction", "request", json.dumps(command(
    1500000000000000002, "request",
    [("host", "db-1"), ("reason", "disk full"), ("login", "postgres"), ("duration", "30m")])))
put("discord_interaction", "status", json.dumps(command(1500000000000000003, "status",
                                                        [("id", "bg-7f3a2c")])))
put("discord_interaction", "revoke", json.dumps(command(1500000000000000004, "revoke",
                                                        [("id", "bg-7f3a2c")])))
put("discord_interaction", "autocomplete", json.dumps(command(
    1500000000000000005, "request", [("host", "db")], focused=True)))
click = base(3, 1500000000000000006, "1300000000000000002")
click["data"] = {"custom_id": "breakglass_approve:bg-7f3a2c", "component_type": 2}
click["message"] = {"id": "1600000000000000001", "channel_id": CHANNEL, "type": 0,
                    "content": "", "embeds": [], "components": [], "attachments": [],
                    "mentions": [], "mention_roles": [], "pinned": False,
                    "mention_everyone": False, "tts": False,
                    "timestamp": "2026-01-01T00:00:00.000000+00:00", "edited_timestamp": None,
                    "flags": 0, "author": {"id": APP, "username": "breakglass",
                                           "discriminator": "0", "avatar": None, "bot": True}}
put("discord_interaction", "component", json.dumps(click))

# --- approvals: the fixture of shared/src/fuzzing.rs, signed over the canonical bytes.
REQ_ID, NONCE = bytes([7] * 16), bytes([9] * 32)
NOT_BEFORE, NOT_AFTER, AT = 1_700_000_000, 1_700_003_600, 1_700_000_060


def canonical(approver, signed_at):
    out = b"breakglass-approval-v1\0"
    fields = [REQ_ID, b"alice", b"prod-db", b"db-1", b"root", struct.pack(">Q", 1800),
              struct.pack(">q", NOT_BEFORE), struct.pack(">q", NOT_AFTER), NONCE,
              hashlib.sha256(b"disk full on db-1").digest(), approver.encode(),
              struct.pack(">q", signed_at)]
    for tag, value in enumerate(fields, start=1):
        out += bytes([tag]) + struct.pack(">H", len(value)) + value
    return out


for kind, seed, approver, sel in [("bot", 1, "bob", 0), ("personal", 2, "carol", 1)]:
    key = Ed25519PrivateKey.from_private_bytes(bytes([seed] * 32))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sig = key.sign(canonical(approver, AT))
    key_id = hashlib.sha256(public).hexdigest()[:16]
    put("approval", f"{kind}.json", json.dumps({"approver": approver, "key_id": key_id,
                                                "signed_at": AT, "signature": sig.hex()}))
    put("approval", f"{kind}.raw", sig + struct.pack(">q", AT) + bytes([sel]) + approver.encode())
    put("approval", f"{kind}.pub", "ed25519:" + public.hex())

# --- config: the documented example and the demo's.
for name, path in [("example", "deploy/breakglass.example.toml"),
                   ("demo", "deploy/demo/breakglass.toml")]:
    with open(os.path.join(ROOT, path), "rb") as f:
        put("config", name, f.read())

# --- scp and SFTP: the captured real conversations (records: tag, u32 BE length, bytes).
CAPTURES = os.path.join(ROOT, "format", "tests", "fixtures", "transfer")
for fname in sorted(os.listdir(CAPTURES)):
    if not fname.endswith(".bin"):
        continue
    with open(os.path.join(CAPTURES, fname), "rb") as f:
        raw = f.read()
    command_line, chunks, i = b"", [], 0
    while i < len(raw):
        tag, n = raw[i:i + 1], struct.unpack(">I", raw[i + 1:i + 5])[0]
        data, i = raw[i + 5:i + 5 + n], i + 5 + n
        if tag == b"x":
            command_line = data
        else:
            chunks.append((0 if tag == b"c" else 1, data))
    name = fname[:-4]
    if fname.startswith("sftp"):
        put("sftp", name, frames(chunks))
    else:
        put("scp", name, command_line + b"\n" + frames(chunks))

# --- a shell session as the gateway sees it: for the command tracker, the cast reader
# and the replay sanitizer.
PROMPT = b"\x1b]0;root@db-1: ~\x07\x1b[01;32mroot@db-1\x1b[00m:\x1b[01;34m~\x1b[00m# "
session = [(0, PROMPT)]
for typed, echo, output in [
        (b"ls -la\r", b"ls -la\r\n", b"total 8\r\ndrwx------ 2 root root 4096 .\r\n"),
        (b"echo hi\x7f\x7fhello\r", b"echo hi\x08 \x08\x08 \x08hello\r\n", b"hello\r\n"),
        (b"cat /etc/os-rel\t", b"cat /etc/os-release ", b""),
        (b"\r", b"\r\n", b"PRETTY_NAME=\"Debian\"\r\n"),
        (b"\x1b[A\x1b[D\x1b[C\x01\x05\r", b"cat /etc/os-release\r\n", b""),
        (b"\x1b[200~rm -rf /tmp/x\x1b[201~\r", b"rm -rf /tmp/x\r\n", b""),
        (b"exit\r", b"exit\r\n", b"logout\r\n")]:
    session += [(1, typed), (0, echo + output + PROMPT)]
session.insert(3, (2, bytes([40, 120])))
put("commands", "shell", bytes([24, 80]) + frames(session))
put("commands", "vim", bytes([24, 80]) + frames(
    [(0, PROMPT), (1, b"vim x\r"), (0, b"vim x\r\n\x1b[?1049h\x1b[?1h\x1b=\x1b[1;24r\x1b[H\x1b[2J~\r\n~"),
     (1, b"ihello\x1b:wq\r"), (0, b"\x1b[?1049l\x1b[?1l\x1b>" + PROMPT)]))
# Quiet spells (tag 3: the screen sleeps) inside the prompt's escape codes and inside a cursor
# move, where a screen woken without the unfinished sequence drew the rest as text.
put("commands", "asleep", bytes([24, 80]) + frames(
    [(0, PROMPT[:5]), (3, b""), (0, PROMPT[5:]), (1, b"ls\r"), (3, b""), (0, b"ls\r\n\x1b[1"),
     (3, b""), (0, b"3Cx\r\n" + PROMPT)]))


def cast_line(t, code, data):
    return json.dumps([t, code, data]) + "\n"


header = {"version": 2, "width": 80, "height": 24, "timestamp": 1700000000,
          "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"}, "title": "break-glass db-1",
          "breakglass": {"grant": "bg-7f3a2c", "host": "db-1", "login": "root"}}
lines, t = [json.dumps(header) + "\n"], 0.0
for tag, data in session:
    t += 0.25
    if tag == 2:
        lines.append(cast_line(round(t, 6), "r", "120x40"))
    else:
        text = data.decode("utf-8", "replace")
        lines.append(cast_line(round(t, 6), "o" if tag == 0 else "i", text))
    if tag == 1 and data.endswith(b"\r"):
        lines.append(cast_line(round(t, 6), "m", data[:-1].decode("utf-8", "replace")))
lines.append(cast_line(round(t + 0.1, 6), "b", "o:/w=="))
lines.append(cast_line(round(t + 0.1, 6), "o", "\u00ff"))
lines.append(cast_line(round(t + 0.2, 6), "m", "session ended"))
put("cast", "shell.cast", "".join(lines))
put("cast", "truncated.cast", "".join(lines)[:-7])
put("cast", "header_only.cast", json.dumps({"version": 2, "width": 80, "height": 24}) + "\n")

# The sanitizer: the first byte picks the split point.
put("sanitizer", "shell", b"\x80" + b"".join(d for tag, d in session if tag == 0))
put("sanitizer", "hostile", b"\x40" + (
    b"\x1b]52;c;cm0gLXJmIC8=\x07\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    b"\x1bP$q\"p\x1b\\\x1b[6n\x1b[21t\x1b[3J\x1b[2J\x1b[H\x1b[5b\x1b[65535b"
    b"\x1b[?1049h\x1b[?2004h\x1b[31;1mred\x1b[0m\x1b_apc\x1b\\\x1b^pm\x1b\\"
    b"\xc2\x9b31m\xc2\x9d0;t\x07\x1bc\x1b%G\x1b(0qq\x1b(B\x1b#8\x1b[1;1;1;1;1$x"))
