//! The `Verifier` gRPC service: a thin shell over [`Grader::grade_batch`]. Grading is blocking
//! and bounded per answer, so a batch runs on tokio's blocking pool.

use std::sync::Arc;

use laser_proto::rt::{InFlight, WorkerStatus};
use laser_proto::v1::verifier_server::Verifier;
use laser_proto::v1::{GradeRequest, GradeResponse, GradeResult, GradeStatus};
use tonic::{Request, Response, Status};

use crate::{Grade, Grader, Status as GradeVerdict};

pub struct VerifierService {
    grader: Arc<Grader>,
    status: Arc<WorkerStatus>,
}

impl VerifierService {
    pub fn new(grader: Grader, status: Arc<WorkerStatus>) -> Self {
        Self {
            grader: Arc::new(grader),
            status,
        }
    }
}

fn wire_status(s: GradeVerdict) -> GradeStatus {
    match s {
        GradeVerdict::Correct => GradeStatus::Correct,
        GradeVerdict::Incorrect => GradeStatus::Incorrect,
        GradeVerdict::NoAnswer => GradeStatus::NoAnswer,
        GradeVerdict::Unparseable => GradeStatus::Unparseable,
        GradeVerdict::Timeout => GradeStatus::Timeout,
    }
}

fn to_result(id: u64, g: Grade) -> GradeResult {
    GradeResult {
        id,
        reward: f32::from(g.reward),
        status: wire_status(g.status) as i32,
        extracted: g.extracted.unwrap_or_default(),
        error: String::new(),
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
        let grader = Arc::clone(&self.grader);
        let results = tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> = items
                .iter()
                .map(|i| (i.gold.as_str(), i.response.as_str()))
                .collect();
            let grades = grader.grade_batch(&pairs);
            items
                .iter()
                .zip(grades)
                .map(|(i, g)| to_result(i.id, g))
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Status::internal(format!("grading task failed: {e}")))?;
        Ok(Response::new(GradeResponse { results }))
    }
}
