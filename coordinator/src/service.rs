//! The coordinator's gRPC services: `Coordinator` (membership) and `Monitor` (read-only view).

use std::pin::Pin;
use std::sync::Arc;

use laser_proto::v1::coordinator_server::Coordinator;
use laser_proto::v1::monitor_server::Monitor;
use laser_proto::v1::{
    ClusterStatus, DeregisterRequest, DeregisterResponse, GetStatusRequest, HeartbeatRequest,
    HeartbeatResponse, ListWorkersRequest, ListWorkersResponse, RegisterRequest, RegisterResponse,
    Role, StepMetrics, WatchMetricsRequest,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::registry::Shared;

#[derive(Clone)]
pub struct CoordinatorService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        let role = Role::try_from(r.role).unwrap_or(Role::Unspecified);
        if role == Role::Unspecified {
            return Err(Status::invalid_argument(
                "role: must be actor, verifier or learner",
            ));
        }
        if r.name.is_empty() || r.endpoint.is_empty() {
            return Err(Status::invalid_argument("name and endpoint are required"));
        }
        let (id, replaced) = {
            let mut reg = self.shared.registry();
            let held = reg.held_version(role, r.policy_version, r.weights_epoch);
            reg.register(role, &r.name, &r.endpoint, r.capacity, held)
        };
        let plane = r.weight_plane.unwrap_or_default();
        if let Some(w) = self.shared.registry().get_mut(&id) {
            w.weight_plane = plane.clone();
            w.learner_rank = r.learner_rank;
        }
        if plane.nccl {
            tracing::info!(%id, device = plane.cuda_device, "worker can use NCCL for weights");
        } else if !plane.nccl_unavailable_reason.is_empty() {
            tracing::info!(%id, reason = plane.nccl_unavailable_reason, "worker uses the gRPC weight stream");
        }
        match replaced {
            Some(old) => tracing::warn!(%id, %old, endpoint = r.endpoint, "worker re-registered"),
            None => tracing::info!(%id, endpoint = r.endpoint, "worker registered"),
        }
        self.shared.membership.notify_waiters();
        Ok(Response::new(RegisterResponse {
            worker_id: id,
            heartbeat_interval_ms: self.shared.heartbeat_interval.as_millis() as u32,
            policy_version: self.shared.run_info().policy_version,
        }))
    }

    async fn deregister(
        &self,
        request: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        let r = request.into_inner();
        let known = self.shared.registry().deregister(&r.worker_id);
        if known {
            tracing::info!(
                worker_id = r.worker_id,
                reason = r.reason,
                in_flight = r.in_flight,
                "worker deregistered; re-dispatching its in-flight work"
            );
            // Wakes the scheduler, which takes the worker's groups back.
            self.shared.membership.notify_waiters();
        }
        Ok(Response::new(DeregisterResponse { known }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let known = {
            let mut reg = self.shared.registry();
            let role = reg.get(&r.worker_id).map_or(Role::Unspecified, |w| w.role);
            let held = reg.held_version(role, r.policy_version, r.weights_epoch);
            reg.heartbeat(&r.worker_id, held, r.in_flight)
        };
        Ok(Response::new(HeartbeatResponse {
            known,
            policy_version: self.shared.run_info().policy_version,
        }))
    }
}

#[derive(Clone)]
pub struct MonitorService {
    pub shared: Arc<Shared>,
}

type MetricsStream = Pin<Box<dyn Stream<Item = Result<StepMetrics, Status>> + Send>>;

#[tonic::async_trait]
impl Monitor for MonitorService {
    async fn get_status(
        &self,
        _: Request<GetStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(self.shared.status()))
    }

    async fn list_workers(
        &self,
        _: Request<ListWorkersRequest>,
    ) -> Result<Response<ListWorkersResponse>, Status> {
        Ok(Response::new(ListWorkersResponse {
            workers: self.shared.workers(),
        }))
    }

    type WatchMetricsStream = MetricsStream;

    async fn watch_metrics(
        &self,
        request: Request<WatchMetricsRequest>,
    ) -> Result<Response<Self::WatchMetricsStream>, Status> {
        let from = request.into_inner().from_step;
        // Subscribe before reading the history so no row falls between the two.
        let mut live = self.shared.metrics_tx.subscribe();
        let mut finished = self.shared.finished.subscribe();
        let past: Vec<StepMetrics> = self
            .shared
            .history()
            .iter()
            .filter(|r| r.step >= from)
            .cloned()
            .collect();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            // A row published between subscribing and reading the history is in both: send it once.
            let sent: std::collections::HashSet<(u64, u64)> = past
                .iter()
                .map(|r| (r.step, r.unix_time.to_bits()))
                .collect();
            for row in past {
                if tx.send(Ok(row)).await.is_err() {
                    return;
                }
            }
            let fresh = |row: &StepMetrics| {
                row.step >= from && !sent.contains(&(row.step, row.unix_time.to_bits()))
            };
            loop {
                if *finished.borrow() {
                    while let Ok(row) = live.try_recv() {
                        if fresh(&row) {
                            let _ = tx.send(Ok(row)).await;
                        }
                    }
                    return;
                }
                tokio::select! {
                    r = live.recv() => match r {
                        Ok(row) if fresh(&row) => {
                            if tx.send(Ok(row)).await.is_err() { return; }
                        }
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            let _ = tx.send(Err(Status::data_loss(format!("watcher lagged: {n} rows skipped")))).await;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = finished.changed() => {}
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
