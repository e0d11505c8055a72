//! The reviewer pages' HTML. `maud` escapes every interpolated value, so names, reasons and
//! commands from requests and recordings always render as text.

use maud::{DOCTYPE, Markup, html};
use shared::core::{PrincipalName, SessionEventKind, Timestamp};

use super::{ListFilters, SessionPage, SessionRow};
use crate::recordings::{Integrity, SearchHit};

fn layout(title: &str, who: Option<&PrincipalName>, body: &Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                link rel="icon" href="data:,";
                title { (title) " · breakglass review" }
                link rel="stylesheet" href="/review/assets/asciinema-player.css";
                link rel="stylesheet" href="/review/assets/review.css";
            }
            body {
                header.top {
                    a.brand href="/review" { "breakglass review" }
                    @if let Some(w) = who {
                        span.me { "signed in as " strong { (w) } }
                    }
                }
                (body)
            }
        }
    }
}

/// An error page: the message and its stable code.
pub fn error(code: &str, message: &str) -> Markup {
    layout(
        "error",
        None,
        &html! {
            main #error data-code=(code) {
                h1 { "Not shown" }
                p.message { (message) }
                p.code { "code: " code { (code) } }
            }
        },
    )
}

fn when(t: Timestamp) -> String {
    let s = t.rfc3339();
    // 2026-11-23T03:44:10Z -> 2026-11-23 03:44:10 UTC
    s.trim_end_matches('Z').replacen('T', " ", 1) + " UTC"
}

fn offset(t: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // offsets are small, >= 0
    let s = t.max(0.0) as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn integrity_cell(i: &Integrity, live: bool) -> Markup {
    match (i, live) {
        (_, true) => html! { td.verified data-ok="live" { "live" } },
        (Integrity::Verified { key_id }, _) => {
            html! { td.verified data-ok="true" title={ "signed by recording key " (key_id) } { "✔ verified" } }
        }
        (Integrity::Failed(why), _) => {
            html! { td.verified data-ok="false" title=(why) { "✘ NOT verified" } }
        }
        (Integrity::Missing, _) => html! { td.verified data-ok="false" { "no recording" } },
    }
}

fn ended(row: &SessionRow) -> String {
    match &row.rec {
        Some(r) => match r.exit_status {
            Some(code) => format!("{} (exit {code})", r.end_reason),
            None => r.end_reason.to_string(),
        },
        None => "live now".into(),
    }
}

/// The session list, with filters and, when searching, the hits.
pub fn list(
    who: &PrincipalName,
    f: &ListFilters,
    rows: &[SessionRow],
    hits: Option<&[SearchHit]>,
    now: Timestamp,
) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    let body = html! {
        main #list {
            h1 { "Sessions" }
            form #filters method="get" action="/review" {
                label { "command contains " input type="search" name="q" value=(v(&f.q)) placeholder="kubectl delete"; }
                label { "who " input type="text" name="who" value=(v(&f.who)); }
                label { "host " input type="text" name="host" value=(v(&f.host)); }
                label { "from " input type="date" name="from" value=(v(&f.from)); }
                label { "to " input type="date" name="to" value=(v(&f.to)); }
                button type="submit" { "Filter" }
                a.reset href="/review" { "clear" }
            }
            @if let Some(hits) = hits {
                section #search {
                    h2 { (hits.len()) " command(s) matching " q { (v(&f.q)) } }
                    @if hits.is_empty() {
                        p.empty { "No command matches." }
                    } @else {
                        ol #hits {
                            @for h in hits {
                                li.hit data-code=(h.code) {
                                    a href=(h.url) {
                                        code.command { (h.command) }
                                    }
                                    " "
                                    span.meta { (h.code) " · " (h.requester) "@" (h.host) " · " (when(Timestamp::from_unix(h.at))) " · +" (offset(h.t)) }
                                }
                            }
                        }
                    }
                }
            }
            @if rows.is_empty() {
                p.empty { "No sessions match." }
            } @else {
                table #sessions {
                    thead { tr { th { "session" } th { "who" } th { "host" } th { "approvers" } th { "when" } th { "how it ended" } th { "recording" } } }
                    tbody {
                        @for r in rows {
                            tr.session data-code=(r.req.code) {
                                td.code { a href={ "/review/s/" (r.req.code) } { (r.req.code) } }
                                td.who { (r.req.requester) }
                                td.host { (r.req.login) "@" (r.req.host) }
                                td.approvers {
                                    @for (i, a) in r.req.approvals.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        (a.approver)
                                    }
                                }
                                td.when { (when(r.started())) }
                                td.ended { (ended(r)) }
                                (integrity_cell(&r.integrity, r.live()))
                            }
                        }
                    }
                }
            }
            p.note { "Shown at " (when(now)) ". Every view is recorded in the audit log." }
        }
    };
    layout("sessions", Some(who), &body)
}

/// One session: request, approvals, player, command index, downloads.
pub fn session(who: &PrincipalName, p: &SessionPage) -> Markup {
    let req = &p.row.req;
    let code = req.code.to_string();
    let live = p.row.live();
    let cast_url = format!("/review/s/{code}/cast");
    let live_url = live.then(|| format!("/review/s/{code}/live"));
    let body = html! {
        main #session data-code=(code) data-cast-url=(cast_url) data-live-url=[live_url] {
            h1 { "Session " (code) " — " (req.requester) " on " (req.login) "@" (req.host) }
            div.layout {
                div.stage {
                    div #player {}
                    noscript { p { "The player needs JavaScript; download the .cast file below instead." } }
                    p.downloads {
                        @if live {
                            span.live { "● live: downloads appear when the session ends" }
                        } @else {
                            a #download href=(cast_url) download { "Download .cast" }
                            " "
                            a #bundle href={ "/review/s/" (code) "/bundle" } download { "Download audit bundle (.tar.gz)" }
                        }
                    }
                }
                aside.index {
                    h2 { "Commands" }
                    @let cmds: Vec<_> = p.events.iter().filter(|e| e.kind.is_command() || matches!(e.kind, SessionEventKind::Subsystem | SessionEventKind::Transfer)).collect();
                    @if cmds.is_empty() {
                        p.empty { "No commands were seen." }
                    }
                    ol #commands {
                        @for e in cmds {
                            @let t = {
                                #[allow(clippy::cast_precision_loss)]
                                let t = e.offset_ms as f64 / 1000.0;
                                t
                            };
                            @let text = e.detail["command"].as_str().map(str::to_owned).unwrap_or_else(|| describe(e));
                            li data-kind=(e.kind) {
                                a.cmd href={ "#t=" (format!("{t:.3}")) } data-t=(format!("{t:.3}")) {
                                    span.t { (offset(t)) }
                                    " "
                                    code { (text) }
                                }
                            }
                        }
                    }
                }
            }
            section #request {
                h2 { "Request" }
                dl {
                    dt { "code" } dd { (code) " (" (req.id) ")" }
                    dt { "requester" } dd { (req.requester) }
                    dt { "target" } dd { (req.login) "@" (req.host) " (scope " (req.scope) ")" }
                    dt { "duration" } dd { (req.duration) }
                    dt { "reason" } dd.reason { (req.reason.as_str()) }
                    dt { "window" } dd { (when(req.not_before)) " → " (when(req.not_after)) }
                    dt { "status" } dd { (req.status.as_str()) @if let Some(by) = &req.closed_by { " by " (by) } }
                    dt { "origin" } dd { (origin(&req.origin)) }
                    @if let Some(r) = &p.row.rec {
                        dt { "session" } dd { (when(r.started_at)) " → " (when(r.ended_at)) ", " (ended(&p.row)) }
                        dt { "traffic" } dd { (r.bytes_in) " bytes in, " (r.bytes_out) " bytes out, " (r.commands) " command(s)" }
                        dt { "recording" } dd {
                            code { (r.file) } " sha256 " code { (hex::encode(r.sha256)) }
                            table.integrity { tr { (integrity_cell(&p.row.integrity, false)) } }
                        }
                    }
                }
            }
            section #approvals {
                h2 { "Approvals (" (p.approvals.len()) " of " (p.quorum) ")" }
                ul {
                    @for (a, ok) in &p.approvals {
                        li.approval data-ok=(if ok.is_ok() { "true" } else { "false" }) {
                            strong { (a.approver) } " at " (when(a.signed_at)) ", key " code { (a.key_id) } ": "
                            @match ok {
                                Ok(kind) => span.ok { "✔ signature verifies (" (kind) " key)" },
                                Err(why) => span.bad { "✘ signature does NOT verify: " (why) },
                            }
                        }
                    }
                }
            }
        }
        script src="/review/assets/asciinema-player.min.js" {}
        script src="/review/assets/review.js" {}
    };
    layout(&format!("session {code}"), Some(who), &body)
}

fn describe(e: &shared::ports::SessionEvent) -> String {
    let d = &e.detail;
    let get = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
    match e.kind {
        SessionEventKind::Subsystem => format!("subsystem {}", get("name")),
        SessionEventKind::Transfer => {
            let what = if d["direction"].is_string() { get("direction") } else { get("op") };
            format!("{what} {}", get("path")).trim().to_owned()
        }
        _ => e.detail.to_string(),
    }
}

fn origin(o: &shared::core::Origin) -> String {
    use shared::core::Origin as O;
    match o {
        O::Api => "API".into(),
        O::Slack { channel } => format!("Slack channel {channel}"),
        O::Discord { channel } => format!("Discord channel {channel}"),
    }
}
