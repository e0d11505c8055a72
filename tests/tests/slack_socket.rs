//! Slack in Socket Mode with the real binary: `breakglass up` started with
//! `slack.socket_mode = true`, the app token in `slack.app_token_file` and no signing secret
//! opens the WebSocket through `apps.connections.open` on the configured API base (the local
//! fake), and the whole flow runs over envelopes on that socket: `/breakglass request`, the
//! socket dropped and reopened (with backoff past failed attempts), two approvals clicked,
//! the connect line, a session through the real gateway and sshd, a revoke clicked, and the
//! audit summary posted in the card's thread with the bot token. The HTTP Slack endpoints are
//! off, and start-up refuses Socket Mode without its tokens, naming the key.

use e2e::fake_slack::{FakeSlack, click_payload, command_body, command_payload};
use e2e::gateway::{SLACK_APP_TOKEN, SLACK_CHANNEL, World, WorldOptions};
use serde_json::Value;

/// The ephemeral text of a slash command's acknowledgement.
fn answer(ack: &Value) -> String {
    assert_eq!(ack["payload"]["response_type"], "ephemeral", "{ack}");
    ack["payload"]["text"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn socket_mode_request_reconnect_approve_connect_revoke_and_summary() {
    let rt = e2e::background_runtime();
    let fake = rt.block_on(FakeSlack::start());
    let w = World::with(WorldOptions {
        slack_api: Some(fake.api_url.clone()),
        slack_socket: true,
        ..WorldOptions::default()
    });
    assert!(rt.block_on(fake.socket_connected()), "the bot opened the socket: {}", w.server.log());
    let open = fake.calls_to("apps.connections.open");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0].token.as_deref(), Some(SLACK_APP_TOKEN), "with the app-level token");

    // No signing secret: the HTTP endpoints are off, whatever a request carries.
    let (s, _) = w.slack_post(
        "/slack/commands",
        &command_body("U0ALICE", SLACK_CHANNEL, &format!("request db-1 --as {} http", w.login)),
    );
    assert_eq!(s, 404, "the HTTP slash command endpoint is off in Socket Mode");

    // The request, over the socket.
    let ack = rt.block_on(fake.socket_send(
        "slash_commands",
        command_payload(
            "U0ALICE",
            SLACK_CHANNEL,
            &format!("request db-1 --as {} --for 30m payments down, over the socket", w.login),
        ),
    ));
    let text = answer(&ack);
    assert!(text.starts_with("Requested `bg-"), "{ack}");
    let code = text.split('`').nth(1).expect("the code in the answer").to_owned();
    let card = fake.wait_call("the card", |c| {
        c.method == "chat.postMessage" && c.text().contains(&code) && c.body["thread_ts"].is_null()
    });
    assert_eq!(card.token.as_deref(), Some("xoxb-e2e"), "cards are posted with the bot token");
    let ts = card.ts.clone().expect("card ts");
    let id = w.status(&code)["id"].as_str().expect("id").to_owned();

    // The socket drops: the bot opens a new one, and commands work on it.
    fake.socket_drop();
    assert!(rt.block_on(fake.socket_connected_times(2, 20)), "reconnected: {}", w.server.log());
    let ack = rt.block_on(fake.socket_send(
        "slash_commands",
        command_payload("U0ALICE", SLACK_CHANNEL, &format!("status {code}")),
    ));
    assert!(answer(&ack).contains(&code) && answer(&ack).contains("pending"), "{ack}");

    // Two approvals clicked on the card.
    for who in ["U0BOB", "U0CAROL"] {
        rt.block_on(fake.socket_send(
            "interactive",
            click_payload(who, SLACK_CHANNEL, &ts, "breakglass_approve", &id),
        ));
    }
    let connect = fake.wait_call("the connect line", |c| c.method == "chat.postEphemeral");
    assert_eq!(connect.body["user"], "U0ALICE");
    assert!(connect.text().contains(&format!("{code}@")), "{}", connect.text());

    // The session through the real gateway, revoked from the card.
    let (child, _) = w.printing(&code, "socket-session");
    fake.wait_call("the session-live note", |c| {
        c.body["thread_ts"] == ts.as_str() && c.text().contains("Session live")
    });
    rt.block_on(fake.socket_send(
        "interactive",
        click_payload("U0BOB", SLACK_CHANNEL, &ts, "breakglass_revoke", &id),
    ));
    let out = child.wait_with_output().expect("ssh ends");
    let seen = String::from_utf8_lossy(&out.stderr);
    assert!(seen.contains("revoked by bob"), "{seen}");

    // The summary in the thread, posted by the reaper with the bot token.
    let summary = fake.wait_call("the summary", |c| {
        c.body["thread_ts"] == ts.as_str() && c.text().contains("Session summary")
    });
    assert_eq!(summary.token.as_deref(), Some("xoxb-e2e"));
    for needle in [code.as_str(), "revoked by bob", "echo socket-session; sleep 30", "bob", "carol"]
    {
        assert!(summary.text().contains(needle), "summary lacks {needle}: {}", summary.text());
    }

    // Slack unreachable for two attempts after a drop: the bot backs off and gets back.
    let before = fake.calls_to("apps.connections.open").len();
    fake.fail_next("apps.connections.open", 503, None, 2);
    fake.socket_drop();
    assert!(rt.block_on(fake.socket_connected_times(3, 30)), "reconnected: {}", w.server.log());
    let attempts = fake.calls_to("apps.connections.open");
    assert_eq!(attempts.len() - before, 3, "two refused attempts, then one that worked");
    assert!(attempts.iter().all(|c| c.token.as_deref() == Some(SLACK_APP_TOKEN)));
    let ack = rt.block_on(fake.socket_send(
        "slash_commands",
        command_payload("U0ALICE", SLACK_CHANNEL, &format!("status {code}")),
    ));
    assert!(answer(&ack).contains("revoked"), "{ack}");

    // The app token is a secret: it is in no log line.
    let log = w.server.log();
    assert!(log.contains("Slack Socket Mode connected"), "{log}");
    assert!(!log.contains(SLACK_APP_TOKEN), "the app token was logged: {log}");
}

#[test]
fn socket_mode_needs_its_tokens_and_names_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("breakglass.toml");
    std::fs::write(&config, "[slack]\nsocket_mode = true\n").expect("config");
    let data = dir.path().join("data");
    let args = [
        "bot",
        "--config",
        config.to_str().expect("utf-8"),
        "--data-dir",
        data.to_str().expect("utf-8"),
        "--listen",
        "127.0.0.1:0",
    ];
    // No app token: refused, naming the key and the variable; no signing secret is asked for.
    let out = e2e::cli(&args, &[("BREAKGLASS_SLACK_BOT_TOKEN", "xoxb-e2e")]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("`slack.app_token_file`"), "{}", out.all());
    assert!(out.stderr.contains("BREAKGLASS_SLACK_APP_TOKEN"), "{}", out.all());
    assert!(!out.stderr.contains("signing"), "{}", out.all());
    // An app token but no bot token (cards and the summary need it): refused too.
    let out = e2e::cli(&args, &[("BREAKGLASS_SLACK_APP_TOKEN", SLACK_APP_TOKEN)]);
    assert_ne!(out.code, 0, "{}", out.all());
    assert!(out.stderr.contains("`slack.bot_token_file`"), "{}", out.all());
    assert!(!out.all().contains(SLACK_APP_TOKEN), "{}", out.all());
}
