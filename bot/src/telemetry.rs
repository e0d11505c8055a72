//! Prometheus metrics and health checks for operators.
//!
//! The process installs one Prometheus recorder ([`install`]); everything recorded through
//! the `metrics` facade in this process (the bot's requests and chat calls, the gateway's
//! sessions and recordings when it runs in the same process) is rendered by `GET /metrics`.
//! The names are [`shared::telemetry`]'s. `/metrics` is served on the bot's HTTP listener,
//! and for a standalone gateway on its own small listener ([`health_router`], with `/healthz`
//! and `/readyz`), so a gateway with no HTTP API can still be probed and scraped.
//!
//! # Security
//! The metrics hold counts and timings with bounded labels only (no host, user, reason or
//! grant code: `shared::telemetry`), so `/metrics` needs no token, like `/healthz`.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shared::ports::Requests;
use shared::telemetry;

/// The media type of Prometheus's text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs this process's Prometheus recorder (once; later calls return the same handle),
/// with real histograms (buckets) for the `_seconds` metrics, so dashboards can take
/// quantiles across replicas.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_seconds".to_owned()),
                &telemetry::SECONDS_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder already installed (a test harness of its own): render an empty
        // registry rather than fail to start.
        if metrics::set_global_recorder(recorder).is_ok() {
            telemetry::describe();
        }
        handle
    })
}

/// `GET /metrics`: every metric of this process in Prometheus's text format, with the
/// database pool's use read at the moment of the scrape.
pub async fn metrics(State(store): State<Arc<dyn Requests>>) -> impl IntoResponse {
    render(store.as_ref())
}

/// The Prometheus text of this process, the pool gauges read from `store` first.
pub fn render(store: &dyn Requests) -> impl IntoResponse + use<> {
    pool_gauges(store);
    let body = install().render();
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], body)
}

/// Sets the database pool gauges from `store`, when it has a pool.
#[allow(clippy::cast_precision_loss)]
pub fn pool_gauges(store: &dyn Requests) {
    if let Some(pool) = store.pool_use() {
        let in_use = pool.open.saturating_sub(pool.idle);
        metrics::gauge!(telemetry::DB_POOL, "state" => "idle").set(f64::from(pool.idle));
        metrics::gauge!(telemetry::DB_POOL, "state" => "in_use").set(f64::from(in_use));
        metrics::gauge!(telemetry::DB_POOL_MAX).set(f64::from(pool.max));
    }
}

/// `/healthz` (the process answers), `/readyz` (the database answers) and `/metrics`, over
/// `store`: a standalone gateway's health listener.
pub fn health_router(store: Arc<dyn Requests>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(store)
}

async fn ready(State(store): State<Arc<dyn Requests>>) -> (StatusCode, &'static str) {
    readiness(store.as_ref()).await
}

/// Ready when the database answers: 200 `ready`, or 503 `database unavailable`.
pub async fn readiness(store: &dyn Requests) -> (StatusCode, &'static str) {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
