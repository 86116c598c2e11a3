//! Dialing peers: connect deadlines, keepalives, and typed clients that carry the cluster token
//! and the same size limits as the servers.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::auth::{AttachToken, ClusterToken};
use super::{DEFAULT_MAX_MESSAGE_BYTES, RtError};
use crate::v1;

/// A channel whose every request carries the cluster token.
pub type AuthedChannel = InterceptedService<Channel, AttachToken>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub token: ClusterToken,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    /// PEM of the CA that signed the servers' certificates; `Some` means dial with TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Lazy channels by peer, shared by every clone: one HTTP/2 connection per peer carries all
    /// the calls to it, instead of a new TCP connection and handshake per RPC.
    channels: ChannelCache,
}

type ChannelCache =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<(String, bool, Duration), Channel>>>;

impl ClientOptions {
    pub fn new(token: ClusterToken) -> Self {
        Self {
            token,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: Duration::from_secs(5),
            tls_ca: None,
            channels: ChannelCache::default(),
        }
    }

    fn endpoint(&self, addr: &str) -> Result<Endpoint, RtError> {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let bad = |message: String| RtError::Endpoint {
            endpoint: addr.to_string(),
            message,
        };
        let ep = Endpoint::from_shared(uri)
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(Some(8 << 20))
            .initial_connection_window_size(Some(16 << 20));
        self.apply_tls(ep).map_err(|e| bad(e.to_string()))
    }

    #[cfg(feature = "tls")]
    fn apply_tls(&self, ep: Endpoint) -> Result<Endpoint, RtError> {
        use tonic::transport::{Certificate, ClientTlsConfig};
        match &self.tls_ca {
            None => Ok(ep),
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| RtError::Tls(format!("{}: {e}", ca.display())))?;
                ep.tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                    .map_err(|e| RtError::Tls(e.to_string()))
            }
        }
    }

    #[cfg(not(feature = "tls"))]
    fn apply_tls(&self, ep: Endpoint) -> Result<Endpoint, RtError> {
        match &self.tls_ca {
            None => Ok(ep),
            Some(_) => Err(RtError::Tls(
                "this build has no TLS support; rebuild with `--features tls`".into(),
            )),
        }
    }

    /// Connects now, failing after `connect_timeout`.
    pub async fn connect(&self, addr: &str) -> Result<Channel, RtError> {
        let ep = self.endpoint(addr)?;
        ep.connect().await.map_err(|e| RtError::Endpoint {
            endpoint: addr.to_string(),
            message: format!("connect: {e}"),
        })
    }

    /// A channel that connects on first use (and reconnects after failures). Channels are shared
    /// per peer (and connect settings) across clones of these options; a peer that went away
    /// fails its calls with UNAVAILABLE as before, and one that comes back on the same address is
    /// reconnected.
    pub fn lazy(&self, addr: &str) -> Result<Channel, RtError> {
        let key = (
            addr.to_string(),
            self.tls_ca.is_some(),
            self.connect_timeout,
        );
        let mut cache = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let c = self.endpoint(addr)?.connect_lazy();
        cache.insert(key, c.clone());
        Ok(c)
    }

    fn authed(&self, ch: Channel) -> AuthedChannel {
        InterceptedService::new(ch, AttachToken::new(&self.token))
    }

    pub fn coordinator(
        &self,
        ch: Channel,
    ) -> v1::coordinator_client::CoordinatorClient<AuthedChannel> {
        let n = self.max_message_bytes;
        v1::coordinator_client::CoordinatorClient::new(self.authed(ch))
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn monitor(&self, ch: Channel) -> v1::monitor_client::MonitorClient<AuthedChannel> {
        let n = self.max_message_bytes;
        v1::monitor_client::MonitorClient::new(self.authed(ch))
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn actor(&self, ch: Channel) -> v1::actor_client::ActorClient<AuthedChannel> {
        let n = self.max_message_bytes;
        v1::actor_client::ActorClient::new(self.authed(ch))
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn verifier(&self, ch: Channel) -> v1::verifier_client::VerifierClient<AuthedChannel> {
        let n = self.max_message_bytes;
        v1::verifier_client::VerifierClient::new(self.authed(ch))
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
    pub fn learner(&self, ch: Channel) -> v1::learner_client::LearnerClient<AuthedChannel> {
        let n = self.max_message_bytes;
        v1::learner_client::LearnerClient::new(self.authed(ch))
            .max_decoding_message_size(n)
            .max_encoding_message_size(n)
    }
}
