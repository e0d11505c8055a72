//! `breakglass approve --key`: the request's bound fields fetched, shown, and signed here
//! with the approver's own key; only the signature is sent.

use std::io::{BufRead as _, Write as _};

use bot::http::views::OfflineApprovalBody;
use shared::core::approval::{ApprovalSigner, public_key_text};
use shared::core::{PrincipalName, Timestamp};

use crate::cli::{EXIT_FAILURE, EXIT_LOCAL, Failure, Global, client, print_view};

/// Signs request `id` with the key in `key_path`, after showing what is signed and (unless
/// `yes`) asking.
///
/// # Errors
/// An unreadable key (5), the server refusing or unreachable (3, 4), a request that does not
/// parse or a "no" at the prompt (1).
pub async fn approve_offline(
    g: &Global,
    id: &str,
    key_path: &std::path::Path,
    yes: bool,
) -> Result<(), Failure> {
    let key = shared::keys::read_signing_key(key_path)
        .map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
    let signer = ApprovalSigner::new(key);
    let c = client(g)?;
    let me = c.whoami().await?;
    let approver =
        PrincipalName::parse(&me.name).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
    let view = c.get(id).await?;
    // Rebuild the request from the fields we show, with the core's own parsers.
    let req = view.to_core().map_err(|e| {
        Failure::new(EXIT_FAILURE, format!("the server sent a request that does not parse: {e}"))
    })?;
    let now = shared::core::Clock::now(&shared::core::SystemClock);
    let ts = |t: Timestamp| t.rfc3339();
    errln!(
        "You are about to approve, signing with key {} ({}):",
        signer.key_id(),
        public_key_text(&signer.verifying_key())
    );
    errln!("  request    {} ({})", req.code, req.id);
    errln!("  requester  {}", req.requester);
    errln!("  scope      {}", req.scope);
    errln!("  host       {}", req.host);
    errln!("  login      {}", req.login);
    errln!("  duration   {}", req.duration);
    errln!("  window     {} -> {}", ts(req.not_before), ts(req.not_after));
    errln!("  reason     {}", req.reason.as_str().escape_debug());
    errln!("  reason sha {}", hex::encode(req.reason.sha256()));
    errln!("  nonce      {}", req.nonce.to_hex());
    errln!("  approver   {approver}");
    if !yes {
        let mut err = std::io::stderr();
        let _ = write!(err, "Sign this approval? [y/N] ");
        let _ = err.flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::new(EXIT_LOCAL, e.to_string()))?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            return Err(Failure::new(EXIT_FAILURE, "not signed"));
        }
    }
    let a = signer.sign(&req, &approver, now);
    let body = OfflineApprovalBody {
        approver: approver.to_string(),
        key_id: a.key_id.to_hex(),
        signed_at: a.signed_at.unix(),
        signature: a.signature.to_hex(),
    };
    let v = c.approve(id, Some(&body)).await?;
    print_view(g, &v, "approved");
    Ok(())
}
