//! The `Verifier` gRPC service: a thin shell over [`RewardRegistry::grade_items`], which routes
//! each item by its `data_source` (math, the default, through [`Grader::grade_batch`] as
//! before). Grading is blocking and bounded per answer, so a batch runs on tokio's blocking
//! pool. A failing reward never fails the call: its items come back as GRADE_STATUS_ERROR with
//! `error` filled, one result per item, in request order.

use std::sync::Arc;

use laser_proto::rt::{InFlight, WorkerStatus};
use laser_proto::v1::verifier_server::Verifier;
use laser_proto::v1::{GradeRequest, GradeResponse, GradeResult, GradeStatus};
use tonic::{Request, Response, Status};

use crate::Grader;
use crate::reward::{RewardItem, RewardRegistry, RewardResult, RewardStatus};

pub struct VerifierService {
    rewards: Arc<RewardRegistry>,
    status: Arc<WorkerStatus>,
}

impl VerifierService {
    /// Math for every item (no `[rewards]`).
    pub fn new(grader: Grader, status: Arc<WorkerStatus>) -> Self {
        Self::with_rewards(RewardRegistry::math_only(grader), status)
    }

    pub fn with_rewards(rewards: RewardRegistry, status: Arc<WorkerStatus>) -> Self {
        Self {
            rewards: Arc::new(rewards),
            status,
        }
    }
}

fn wire_status(s: RewardStatus) -> GradeStatus {
    match s {
        RewardStatus::Correct => GradeStatus::Correct,
        RewardStatus::Incorrect => GradeStatus::Incorrect,
        RewardStatus::NoAnswer => GradeStatus::NoAnswer,
        RewardStatus::Unparseable => GradeStatus::Unparseable,
        RewardStatus::Timeout => GradeStatus::Timeout,
        RewardStatus::Error => GradeStatus::Error,
    }
}

fn to_result(id: u64, r: RewardResult) -> GradeResult {
    GradeResult {
        id,
        reward: r.reward,
        status: wire_status(r.status) as i32,
        extracted: r.extracted.unwrap_or_default(),
        error: r.error.unwrap_or_default(),
    }
}

#[tonic::async_trait]
impl Verifier for VerifierService {
    async fn grade(
        &self,
        request: Request<GradeRequest>,
    ) -> Result<Response<GradeResponse>, Status> {
        if self.status.draining() {
            return Err(laser_proto::rt::worker::draining_status("Grade refused"));
        }
        let _busy = InFlight::start(&self.status);
        let items = request.into_inner().items;
        let rewards = Arc::clone(&self.rewards);
        let results = tokio::task::spawn_blocking(move || {
            let batch: Vec<RewardItem<'_>> = items
                .iter()
                .map(|i| RewardItem {
                    data_source: &i.data_source,
                    gold: &i.gold,
                    response: &i.response,
                })
                .collect();
            let results = rewards.grade_items(&batch);
            items
                .iter()
                .zip(results)
                .map(|(i, r)| to_result(i.id, r))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Status::internal(format!("grading task failed: {e}")))?;
        Ok(Response::new(GradeResponse { results }))
    }
}
