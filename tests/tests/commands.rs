//! The command index end to end, however the shell was started (issue 18): `ssh -tt gw bash -i`,
//! `ssh -tt gw su -` with a nested shell inside, `ssh gw bash < script`, and a shell that
//! prints OSC 133 marks. Each request is made and approved in Slack (the local fake), so each
//! test checks the three places a reviewer finds commands: `breakglass replay --commands`,
//! `breakglass search`, and the summary in the request's thread; and that a password typed at
//! `read -s` is in none of them.

use e2e::fake_slack::{FakeSlack, click_body, command_body};
use e2e::gateway::{SLACK_CHANNEL, World, WorldOptions};
use e2e::wait_for;

/// Typed at `read -s`: never indexed anywhere.
const SECRET: &str = "hunter2-never-indexed";

/// A gateway world with Slack on, and its fake Slack.
struct Chat {
    w: World,
    fake: FakeSlack,
    _rt: tokio::runtime::Runtime,
}

impl Chat {
    fn start() -> Self {
        let rt = e2e::background_runtime();
        let fake = rt.block_on(FakeSlack::start());
        let w = World::with(WorldOptions {
            slack_api: Some(fake.api_url.clone()),
            ..WorldOptions::default()
        });
        Self { w, fake, _rt: rt }
    }

    /// A request made in the channel and approved on its card: the grant code and the card's
    /// thread.
    fn granted(&self, why: &str) -> (String, String) {
        let (s, v) = self.w.slack_post(
            "/slack/commands",
            &command_body(
                "U0ALICE",
                SLACK_CHANNEL,
                &format!("request db-1 --as {} --for 30m {why}", self.w.login),
            ),
        );
        assert_eq!(s, 200, "{v}");
        let text = v["text"].as_str().unwrap_or_default().to_owned();
        let code = text.split('`').nth(1).expect("the code in the answer").to_owned();
        let card = self.fake.wait_call("the card", |c| {
            c.method == "chat.postMessage"
                && c.text().contains(&code)
                && c.body["thread_ts"].is_null()
        });
        let ts = card.ts.clone().expect("card ts");
        let id = self.w.status(&code)["id"].as_str().expect("id").to_owned();
        for who in ["U0BOB", "U0CAROL"] {
            let (s, _) = self.w.slack_post(
                "/slack/interactions",
                &click_body(who, SLACK_CHANNEL, &ts, "breakglass_approve", &id),
            );
            assert_eq!(s, 200);
        }
        self.w.wait_status(&code, "approved", 10);
        (code, ts)
    }

    /// The summary posted in the thread `ts`.
    fn summary(&self, ts: &str) -> String {
        self.fake
            .wait_call("the summary", |c| {
                c.body["thread_ts"] == ts && c.text().contains("Session summary")
            })
            .text()
    }

    /// `breakglass replay CODE --commands`, as the reviewer.
    fn replay_commands(&self, code: &str) -> String {
        let r = self.w.cli_as("erin", &["replay", code, "--commands"]);
        assert_eq!(r.code, 0, "{}", r.all());
        r.stdout
    }

    /// `breakglass search TEXT`, as the reviewer.
    fn search(&self, text: &str) -> String {
        let r = self.w.cli_as("erin", &["search", text]);
        assert_eq!(r.code, 0, "{}", r.all());
        r.stdout
    }

    /// Every `typed` command is in the index, in the replay's list, in search (as a hit of
    /// `code`) and in the summary; the secret is in none of them nor in any marker.
    #[track_caller]
    fn assert_everywhere(&self, code: &str, ts: &str, typed: &[&str]) {
        self.w.wait_status(code, "closed", 10);
        let indexed = self.w.commands(code);
        let replay = self.replay_commands(code);
        let summary = self.summary(ts);
        for cmd in typed {
            assert!(indexed.iter().any(|c| c == cmd), "{cmd} indexed: {indexed:?}");
            assert!(replay.contains(cmd), "{cmd} in replay --commands:\n{replay}");
            let found = self.search(cmd);
            assert!(found.contains(code) && found.contains(cmd), "{cmd} found: {found}");
            assert!(summary.contains(cmd), "{cmd} in the summary: {summary}");
        }
        assert!(!indexed.iter().any(|c| c.contains(SECRET)), "{indexed:?}");
        assert!(!replay.contains(SECRET), "{replay}");
        assert!(!summary.contains(SECRET), "{summary}");
        assert!(!self.search(SECRET).contains(code), "the secret is not searchable");
        let rec = self.w.recording_of(code, 10);
        let cast = format::cast::parse(&std::fs::read_to_string(&rec).expect("recording"))
            .expect("parses");
        assert!(
            !cast.events.iter().any(|e| e.code == "m" && e.data.contains(SECRET)),
            "no marker holds the secret"
        );
    }
}

/// Types `read -s` with a prompt, the secret, then shows the shell got it.
fn type_secret(out: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>, send: &mut impl FnMut(&str)) {
    send("read -s -p 'Password: ' pw\r");
    wait_for(out, "Password: ", 1, "the silent read");
    send(&format!("{SECRET}\r"));
    send("echo got-${#pw}\r");
    wait_for(out, &format!("got-{}", SECRET.len()), 1, "the secret was read");
}

#[test]
fn an_exec_shell_with_a_terminal_is_indexed_in_replay_search_and_the_summary() {
    let c = Chat::start();
    let (code, ts) = c.granted("bash by exec");
    let (mut child, out, mut send) = c.w.typing(&code, &["bash", "--norc", "-i"]);
    send("echo exec-$((6*7))\r");
    wait_for(&out, "exec-42", 1, "the command ran");
    type_secret(&out, &mut send);
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    c.assert_everywhere(
        &code,
        &ts,
        &["echo exec-$((6*7))", "read -s -p 'Password: ' pw", "echo got-${#pw}"],
    );
}

/// `ssh -tt gw su -`: a login shell with its own profile, and inside it a prompt with colours
/// and a window-title sequence (Debian's), then a nested shell with yet another prompt.
#[test]
fn su_login_shell_and_a_nested_shell_are_indexed_in_replay_search_and_the_summary() {
    let c = Chat::start();
    let (code, ts) = c.granted("su login shell");
    let (mut child, out, mut send) = c.w.typing(&code, &["su", "-"]);
    send("echo su-$((6*7))\r");
    wait_for(&out, "su-42", 1, "the command ran in su's shell");
    send(
        r"PS1='\[\e]0;\u@\h: \w\a\]\[\e[01;32m\]\u@\h\[\e[00m\]:\[\e[01;34m\]\w\[\e[00m\]\$ '"
            .trim_end(),
    );
    send("\r");
    send("echo colour-$((6*7))\r");
    wait_for(&out, "colour-42", 1, "the command ran at the coloured prompt");
    send("PS1='inner% ' bash --norc -i\r");
    wait_for(&out, "inner% ", 1, "the nested prompt");
    send("echo nested-$((6*7))\r");
    wait_for(&out, "nested-42", 1, "the command ran in the nested shell");
    type_secret(&out, &mut send);
    send("exit\r");
    send("echo back-$((6*7))\r");
    wait_for(&out, "back-42", 1, "back in su's shell");
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    c.assert_everywhere(
        &code,
        &ts,
        &[
            "echo su-$((6*7))",
            "echo colour-$((6*7))",
            "PS1='inner% ' bash --norc -i",
            "echo nested-$((6*7))",
            "read -s -p 'Password: ' pw",
            "echo got-${#pw}",
            "echo back-$((6*7))",
        ],
    );
}

#[test]
fn a_script_fed_on_stdin_is_indexed_in_replay_search_and_the_summary() {
    let c = Chat::start();
    let (code, ts) = c.granted("script on stdin");
    let script = c.w.dir.path().join("script.sh");
    std::fs::write(&script, "echo fed-$((6*7))\nuname -s\nexit 0\n").expect("script");
    let out =
        c.w.ssh_cmd("alice", &code, &["bash"])
            .stdin(std::fs::File::open(&script).expect("script"))
            .output()
            .expect("ssh runs");
    assert!(String::from_utf8_lossy(&out.stdout).contains("fed-42"));
    c.assert_everywhere(&code, &ts, &["echo fed-$((6*7))", "uname -s", "exit 0"]);
}

/// A bash that prints OSC 133 marks (A and B from PS1, C from PS0): commands are what lies
/// between B and C, even one accepted by a key the screen heuristic does not know (Ctrl-T
/// bound to accept-line), and a password read after a C mark is never one.
#[test]
fn osc_133_marks_bound_the_commands_of_a_shell_that_prints_them() {
    let c = Chat::start();
    let (code, ts) = c.granted("shell integration");
    let (mut child, out, mut send) = c.w.typing(&code, &["bash", "--norc", "-i"]);
    send(r"PS1='\[\e]133;D;$?\a\e]133;A\a\]osc\$ \[\e]133;B\a\]'; PS0='\e]133;C\a'");
    send("\r");
    // The new prompt (root's `\$` is `#`; the echo of the line that set it shows `osc\$`).
    wait_for(&out, "osc# ", 1, "the prompt with its marks");
    send("bind '\"\\C-t\": accept-line'\r");
    wait_for(&out, "osc# ", 2, "the prompt after `bind`");
    send("echo osc-$((6*7))\x14");
    wait_for(&out, "osc-42", 1, "the line accepted by Ctrl-T ran");
    type_secret(&out, &mut send);
    send("exit\r");
    assert!(child.wait().expect("ssh exits").success());
    c.assert_everywhere(
        &code,
        &ts,
        &["echo osc-$((6*7))", "read -s -p 'Password: ' pw", "echo got-${#pw}"],
    );
}
