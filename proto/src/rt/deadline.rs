//! Per-RPC deadlines. The client sends `grpc-timeout` (so the server cancels the handler) and also
//! stops waiting itself, so a peer that never answers cannot hang the caller.

use std::future::Future;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Status};

/// A request carrying `deadline` as its `grpc-timeout`.
pub fn request<T>(message: T, deadline: Duration) -> Request<T> {
    let mut r = Request::new(message);
    r.set_timeout(deadline);
    r
}

/// Awaits `call`, failing with DEADLINE_EXCEEDED (naming `rpc`) after `deadline`.
pub async fn with_deadline<T>(
    rpc: &str,
    deadline: Duration,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{rpc}: no answer within {deadline:?}"
        ))),
    }
}

/// The next message of a server stream, waiting at most `idle` for it. `Ok(None)`: the stream ended.
pub async fn next_within<T, S>(
    rpc: &str,
    idle: Duration,
    stream: &mut S,
) -> Result<Option<T>, Status>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    match tokio::time::timeout(idle, stream.next()).await {
        Ok(Some(Ok(m))) => Ok(Some(m)),
        Ok(Some(Err(s))) => Err(s),
        Ok(None) => Ok(None),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{rpc}: stream idle for {idle:?}"
        ))),
    }
}
