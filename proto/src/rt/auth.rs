//! The cluster token: loaded from an environment variable or a file, compared in constant time,
//! never printed (its `Debug` is redacted and no error message contains it).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use super::RtError;

use laser_config::TokenSource;

/// The shared secret of one cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterToken(Arc<str>);

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterToken(<redacted>)")
    }
}

/// Shortest token accepted: a guessable token is no token.
pub const MIN_TOKEN_LEN: usize = 16;

impl ClusterToken {
    pub fn new(token: &str) -> Result<Self, RtError> {
        let t = token.trim();
        if t.len() < MIN_TOKEN_LEN {
            return Err(RtError::Token(format!(
                "must be at least {MIN_TOKEN_LEN} characters (got {})",
                t.len()
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(RtError::Token(
                "must be printable ASCII without spaces".into(),
            ));
        }
        Ok(Self(t.into()))
    }

    pub fn load(source: &TokenSource) -> Result<Self, RtError> {
        match source {
            TokenSource::Env(var) => {
                let v = std::env::var(var).map_err(|_| {
                    RtError::Token(format!("environment variable {var} is not set"))
                })?;
                Self::new(&v)
                    .map_err(|e| RtError::Token(format!("environment variable {var}: {e}")))
            }
            TokenSource::File(path) => Self::from_file(path),
        }
    }

    pub fn from_file(path: &Path) -> Result<Self, RtError> {
        let v = std::fs::read_to_string(path)
            .map_err(|e| RtError::Token(format!("{}: {e}", path.display())))?;
        Self::new(&v).map_err(|e| RtError::Token(format!("{}: {e}", path.display())))
    }

    /// A fresh random token (local mode makes one per run when none is configured).
    pub fn generate() -> Self {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};
        let mut s = String::with_capacity(48);
        for i in 0..3u64 {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0),
            );
            h.write_u32(std::process::id());
            s.push_str(&format!("{:016x}", h.finish()));
        }
        Self(s.into())
    }

    /// The secret itself, for passing to a child process's environment. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn bearer(&self) -> MetadataValue<Ascii> {
        // ClusterToken::new guarantees printable ASCII, so this cannot fail.
        MetadataValue::try_from(format!("Bearer {}", self.0)).expect("token is printable ASCII")
    }
}

/// Compares two byte strings in time that depends only on their lengths, not their contents.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = a.len() ^ b.len();
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Server side: rejects any request without `authorization: Bearer <cluster token>`.
#[derive(Clone)]
pub struct RequireToken {
    expected: Arc<[u8]>,
}

impl RequireToken {
    pub fn new(token: &ClusterToken) -> Self {
        Self {
            expected: format!("Bearer {}", token.0).into_bytes().into(),
        }
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match req.metadata().get("authorization") {
            None => Err(Status::unauthenticated(
                "missing authorization: Bearer <cluster token>",
            )),
            Some(v) if constant_time_eq(v.as_bytes(), &self.expected) => Ok(req),
            Some(_) => Err(Status::unauthenticated("invalid cluster token")),
        }
    }
}

/// Client side: adds `authorization: Bearer <cluster token>` to every request.
#[derive(Clone)]
pub struct AttachToken {
    header: MetadataValue<Ascii>,
}

impl AttachToken {
    pub fn new(token: &ClusterToken) -> Self {
        Self {
            header: token.bearer(),
        }
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"a", b""),
            (b"abc", b"abc"),
            (b"abc", b"abd"),
            (b"abc", b"abcd"),
            (b"\0", b""),
        ];
        for (a, b) in cases {
            assert_eq!(constant_time_eq(a, b), a == b, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn token_debug_is_redacted_and_short_tokens_are_refused() {
        let t = ClusterToken::new("0123456789abcdef-secret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
        let err = ClusterToken::new("short").unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        assert!(
            !err.contains("short"),
            "error must not echo the token: {err}"
        );
    }

    #[test]
    fn interceptor_accepts_only_the_exact_bearer() {
        let t = ClusterToken::new("0123456789abcdef").unwrap();
        let mut check = RequireToken::new(&t);
        let mut attach = AttachToken::new(&t);
        let ok = attach.call(Request::new(())).unwrap();
        assert!(check.call(ok).is_ok());
        assert_eq!(
            check.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let other = ClusterToken::new("0123456789abcdeX").unwrap();
        let bad = AttachToken::new(&other).call(Request::new(())).unwrap();
        assert_eq!(
            check.call(bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let a = ClusterToken::generate();
        let b = ClusterToken::generate();
        assert!(ClusterToken::new(a.expose()).is_ok());
        assert_ne!(a, b);
    }
}
