//! The one error type of loading and validating cluster.toml.

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    /// Parse errors, unknown keys and wrong types, as the `config` crate words them (with the key).
    #[error("{file}: {message}")]
    Load { file: String, message: String },
    #[error("{file}: `{key}` {message}")]
    Invalid {
        file: String,
        key: &'static str,
        message: String,
    },
    /// As `Invalid`, for keys built at run time (`rewards.routes[2].pattern`).
    #[error("{file}: {source}")]
    Rewards {
        file: String,
        source: crate::reward::RewardsError,
    },
}
