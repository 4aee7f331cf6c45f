//! Request timing for every Weir gRPC server: a layer around the whole server records each
//! request's latency and result by RPC into [`ControlMetrics`]. The gateway serves them with its
//! own `/metrics`; [`serve`] is the policy engine's endpoint (`metrics_listen`, off by default),
//! in the text format of [`crate::metrics`].
//!
//! The result is the gRPC status the answer starts with (`Ok` unless the handler refused the
//! request): enough for unary calls.

use crate::metrics::{ControlMetrics, Exposition, CONTENT_TYPE};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::codegen::http;

/// Times each request of the service it wraps.
#[derive(Clone)]
pub struct Timed<S> {
    inner: S,
    metrics: ControlMetrics,
}

/// The layer for `Server::builder().layer(..)`.
pub fn layer<S>(metrics: ControlMetrics) -> impl tower::Layer<S, Service = Timed<S>> + Clone {
    tower::layer::layer_fn(move |inner| Timed {
        inner,
        metrics: metrics.clone(),
    })
}

impl<S, B, R> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The path is /package.Service/Method: the RPC's full name.
        let rpc = request.uri().path().trim_start_matches('/').to_string();
        let started = Instant::now();
        let answer = self.inner.call(request);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = answer.await;
            let result = match &r {
                Ok(response) => {
                    let code = response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|s| s.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from);
                    format!("{code:?}")
                }
                Err(_) => "TransportError".to_string(),
            };
            metrics.observe(&rpc, &result, started.elapsed().as_secs_f64());
            r
        })
    }
}

/// The exposition of `metrics`.
pub fn render(metrics: &ControlMetrics) -> String {
    let mut e = Exposition::new();
    metrics.render(&mut e, "weir_policy_engine");
    e.finish()
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, metrics: ControlMetrics) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let body = render(&metrics);
            async move { ([(http::header::CONTENT_TYPE, CONTENT_TYPE)], body) }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}
