//! A gateway peer for the tests of what a policy engine pushes: it records every RAR it is sent
//! and answers DIAMETER_SUCCESS, and refuses every other call as unimplemented. Served on
//! loopback, plaintext or over TLS, by a runtime of its own that stops when dropped.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir::proto::v1 as pb;

#[derive(Clone, Default)]
pub struct RecordingGateway {
    pub rars: Arc<Mutex<Vec<pb::ReAuthRequest>>>,
}

#[tonic::async_trait]
impl pb::gateway_server::Gateway for RecordingGateway {
    async fn re_auth(
        &self,
        request: tonic::Request<pb::ReAuthRequest>,
    ) -> Result<tonic::Response<pb::ReAuthAnswer>, tonic::Status> {
        let r = request.into_inner();
        let answer = pb::ReAuthAnswer {
            session_id: r.session_id.clone(),
            result_code: pb::ResultCode::DiameterSuccess as i32,
            ..Default::default()
        };
        self.rars.lock().unwrap().push(r);
        Ok(tonic::Response::new(answer))
    }
    async fn abort_session(
        &self,
        _: tonic::Request<pb::AbortSessionRequest>,
    ) -> Result<tonic::Response<pb::AbortSessionAnswer>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn credit_re_auth(
        &self,
        _: tonic::Request<pb::CreditReAuthRequest>,
    ) -> Result<tonic::Response<pb::CreditReAuthAnswer>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn report_bearer_event(
        &self,
        _: tonic::Request<pb::BearerEventReport>,
    ) -> Result<tonic::Response<pb::BearerEventAnswer>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn create_session(
        &self,
        _: tonic::Request<pb::GatewayCreateSessionRequest>,
    ) -> Result<tonic::Response<pb::GatewaySession>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn delete_session(
        &self,
        _: tonic::Request<pb::GatewayDeleteSessionRequest>,
    ) -> Result<tonic::Response<pb::GatewayDeleteSessionResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn get_session(
        &self,
        _: tonic::Request<pb::GatewayGetSessionRequest>,
    ) -> Result<tonic::Response<pb::GatewaySession>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn list_sessions(
        &self,
        _: tonic::Request<pb::GatewayListSessionsRequest>,
    ) -> Result<tonic::Response<pb::GatewayListSessionsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    async fn get_stats(
        &self,
        _: tonic::Request<pb::GetStatsRequest>,
    ) -> Result<tonic::Response<pb::GatewayStats>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
    type WatchEventsStream =
        tonic::codegen::tokio_stream::Empty<Result<pb::GatewayEvent, tonic::Status>>;
    async fn watch_events(
        &self,
        _: tonic::Request<pb::WatchEventsRequest>,
    ) -> Result<tonic::Response<Self::WatchEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "a recording gateway answers RARs only",
        ))
    }
}

/// Serves a recording gateway on `addr` (`127.0.0.1:0` for any free port): the gateway, the
/// address it listens on, and the runtime serving it.
pub fn serve(addr: &str) -> (RecordingGateway, String, tokio::runtime::Runtime) {
    serve_with(addr, None)
}

/// The same over TLS.
pub fn serve_tls(
    addr: &str,
    tls: tonic::transport::ServerTlsConfig,
) -> (RecordingGateway, String, tokio::runtime::Runtime) {
    serve_with(addr, Some(tls))
}

fn serve_with(
    addr: &str,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> (RecordingGateway, String, tokio::runtime::Runtime) {
    let gw = RecordingGateway::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = pb::gateway_server::GatewayServer::new(gw.clone());
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls).unwrap();
    }
    let router = server.add_service(svc);
    rt.spawn(async move {
        router
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (gw, addr.to_string(), rt)
}

pub fn wait_for_rars(gw: &RecordingGateway, n: usize, limit: Duration) -> Vec<pb::ReAuthRequest> {
    let deadline = Instant::now() + limit;
    loop {
        let rars = gw.rars.lock().unwrap().clone();
        if rars.len() >= n || Instant::now() > deadline {
            return rars;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
