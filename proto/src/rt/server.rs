//! Serving a role: its services behind the token check and size limits, plus tonic-health (no
//! token, so probes and load balancers work) and tonic-reflection (token required, so
//! `grpcurl -H 'authorization: Bearer …'` can list and call everything).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use laser_config::TlsFiles;

use super::auth::{ClusterToken, RequireToken};
use super::{DEFAULT_MAX_MESSAGE_BYTES, RtError};
use crate::v1;

/// What every role server is configured with.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub token: ClusterToken,
    pub max_message_bytes: usize,
    pub tls: Option<TlsFiles>,
}

impl ServerOptions {
    pub fn new(token: ClusterToken) -> Self {
        Self {
            token,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls: None,
        }
    }

    // One constructor per generated server, so every role gets the same size limits.
    pub fn coordinator<T: v1::coordinator_server::Coordinator>(
        &self,
        svc: T,
    ) -> v1::coordinator_server::CoordinatorServer<T> {
        let n = self.max_message_bytes;
        v1::coordinator_server::CoordinatorServer::new(svc)
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn monitor<T: v1::monitor_server::Monitor>(
        &self,
        svc: T,
    ) -> v1::monitor_server::MonitorServer<T> {
        let n = self.max_message_bytes;
        v1::monitor_server::MonitorServer::new(svc)
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn actor<T: v1::actor_server::Actor>(&self, svc: T) -> v1::actor_server::ActorServer<T> {
        let n = self.max_message_bytes;
        v1::actor_server::ActorServer::new(svc)
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn verifier<T: v1::verifier_server::Verifier>(
        &self,
        svc: T,
    ) -> v1::verifier_server::VerifierServer<T> {
        let n = self.max_message_bytes;
        v1::verifier_server::VerifierServer::new(svc)
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn learner<T: v1::learner_server::Learner>(
        &self,
        svc: T,
    ) -> v1::learner_server::LearnerServer<T> {
        let n = self.max_message_bytes;
        v1::learner_server::LearnerServer::new(svc)
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
}

/// A role's gRPC server under construction.
pub struct RoleServer {
    opts: ServerOptions,
    routes: Option<Routes>,
    names: Vec<&'static str>,
}

impl RoleServer {
    pub fn new(opts: ServerOptions) -> Self {
        Self {
            opts,
            routes: None,
            names: Vec::new(),
        }
    }

    /// Adds a service (built with the matching [`ServerOptions`] constructor) behind the token check.
    pub fn service<S>(mut self, svc: S) -> Self
    where
        S: tonic::codegen::Service<
                http::Request<Body>,
                Response = http::Response<Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        let guarded = InterceptedService::new(svc, RequireToken::new(&self.opts.token));
        self.routes = Some(match self.routes.take() {
            None => Routes::new(guarded),
            Some(r) => r.add_service(guarded),
        });
        self
    }

    /// Serves until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RtError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        for name in &self.names {
            reporter
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| RtError::Serve(format!("reflection: {e}")))?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(|e| RtError::Serve(format!("reflection: {e}")))?;
        let auth = RequireToken::new(&self.opts.token);
        let mut routes = self
            .routes
            .unwrap_or_else(|| Routes::new(health.clone()))
            .add_service(health)
            .add_service(InterceptedService::new(reflection, auth.clone()))
            .add_service(InterceptedService::new(reflection_alpha, auth));
        routes = routes.prepare();

        let mut builder = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(10)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // Large windows and frames: the weight stream is bulk data on loopback or a LAN.
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20))
            .max_frame_size(Some((1 << 20) - 1));
        if let Some(tls) = &self.opts.tls {
            builder = apply_tls(builder, tls)?;
        }
        builder
            .add_routes(routes)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
            .map_err(|e| RtError::Serve(e.to_string()))
    }
}

#[cfg(feature = "tls")]
fn apply_tls(builder: Server, tls: &TlsFiles) -> Result<Server, RtError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| RtError::Tls(format!("{}: {e}", p.display())));
    let identity = Identity::from_pem(read(&tls.cert)?, read(&tls.key)?);
    let mut cfg = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.ca {
        cfg = cfg.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    builder
        .tls_config(cfg)
        .map_err(|e| RtError::Tls(e.to_string()))
}

#[cfg(not(feature = "tls"))]
fn apply_tls(_builder: Server, _tls: &TlsFiles) -> Result<Server, RtError> {
    Err(RtError::Tls(
        "this build has no TLS support; rebuild with `--features tls`".into(),
    ))
}
