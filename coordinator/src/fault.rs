//! How the coordinator tells a lost peer from a refused request: [`is_transport_failure`] sorts
//! gRPC statuses, and [`LearnerLost`] is the error that makes the run loop restart (or wait for)
//! the learner and redo the steps after its last checkpoint. A leaf module: collection and the
//! run loop both raise and test these.

use tonic::{Code, Status};

/// Failures that mean the peer is gone (or unreachable), as opposed to a refused request.
pub fn is_transport_failure(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
    )
}

/// The learner failed mid-step: recover and redo from the last checkpoint.
#[derive(Debug)]
pub(crate) struct LearnerLost(pub(crate) String);

impl std::fmt::Display for LearnerLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "learner lost: {}", self.0)
    }
}
impl std::error::Error for LearnerLost {}
