//! The HTTP client the CLI (and scripts) use to talk to a running bot.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::config::Secret;

use crate::http::error::ErrorBody;
use crate::http::views::{
    ListQuery, NewRequestBody, OfflineApprovalBody, RecordingDownload, RequestList, RequestView,
    ReviewLinkBody, ReviewLinkView, SearchHits, SearchQuery, WhoAmI,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{message} [{code}]")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach the breakglass server at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The stable error code, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// What to do when the server says no token came.
pub const NO_TOKEN: &str = "no API token: set BREAKGLASS_TOKEN, or pass --token-file FILE";

#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: Option<Secret<String>>,
    http: reqwest::Client,
}

impl Client {
    /// # Errors
    /// Building the HTTP client (TLS setup).
    pub fn new(base: &str, token: Option<Secret<String>>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("breakglass-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let bytes = self.send_bytes(req).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Sends with the token; a success's body, or the error body as a [`ClientError`].
    async fn send_bytes(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        };
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            cause: e.without_url().to_string(),
        })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Protocol(e.to_string()))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            // The server names the HTTP header; a person gives the token another way.
            Ok(b) if b.error.code == "missing_token" => Err(ClientError::Api {
                status: status.as_u16(),
                code: b.error.code,
                message: NO_TOKEN.to_owned(),
            }),
            Ok(b) => Err(ClientError::Api {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message,
            }),
            Err(_) => Err(ClientError::Api {
                status: status.as_u16(),
                code: if status == StatusCode::NOT_FOUND {
                    "not_found".into()
                } else {
                    "http_error".into()
                },
                message: format!("HTTP {status}"),
            }),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn path_for(id: &str) -> String {
        // Ids and codes are [0-9a-f-] plus "bg-"; anything else is refused by the server.
        let safe: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        format!("/api/v1/requests/{safe}")
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn create(&self, body: &NewRequestBody) -> Result<RequestView, ClientError> {
        self.send(self.http.post(self.url("/api/v1/requests")).json(body)).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn get(&self, id: &str) -> Result<RequestView, ClientError> {
        self.send(self.http.get(self.url(&Self::path_for(id)))).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn list(&self, q: &ListQuery) -> Result<RequestList, ClientError> {
        self.send(self.http.get(self.url("/api/v1/requests")).query(q)).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn approve(
        &self,
        id: &str,
        offline: Option<&OfflineApprovalBody>,
    ) -> Result<RequestView, ClientError> {
        let url = self.url(&format!("{}/approve", Self::path_for(id)));
        let req = match offline {
            Some(b) => self.http.post(url).json(b),
            None => self.http.post(url),
        };
        self.send(req).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn deny(&self, id: &str) -> Result<RequestView, ClientError> {
        self.post_empty(&format!("{}/deny", Self::path_for(id))).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn revoke(&self, id: &str) -> Result<RequestView, ClientError> {
        self.post_empty(&format!("{}/revoke", Self::path_for(id))).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.send(self.http.get(self.url("/api/v1/whoami"))).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn review_link(&self, request: Option<&str>) -> Result<ReviewLinkView, ClientError> {
        let body = ReviewLinkBody { request: request.map(str::to_owned) };
        self.send(self.http.post(self.url("/api/v1/review-links")).json(&body)).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchHits, ClientError> {
        self.send(self.http.get(self.url("/api/v1/search")).query(q)).await
    }

    /// # Errors
    /// Any [`ClientError`].
    pub async fn recording(&self, id: &str) -> Result<RecordingDownload, ClientError> {
        self.send(self.http.get(self.url(&format!("{}/recording", Self::path_for(id))))).await
    }

    /// The audit bundle's bytes (`.tar.gz`).
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn bundle(&self, id: &str) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("{}/bundle", Self::path_for(id)));
        self.send_bytes(self.http.get(url)).await
    }

    async fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path))).await
    }

    /// Posts any JSON (used by tests of malformed input through the real client stack).
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }
}
