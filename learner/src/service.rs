//! The `Learner` gRPC service, thin over [`Learner`]:
//! - `TrainStep` turns the step's verified `RolloutGroup`s into a [`TrainingBatch`] and runs
//!   [`Learner::train_step`]. Steps arrive in order; a step already applied (a retried call) gets its
//!   recorded result back without training again.
//! - `Checkpoint` stores the coordinator's data cursor and writes [`Learner::save_checkpoint`].
//! - `StreamWeights` serves the current weights as a [`WeightPayload`], packed once per version and
//!   shared by every actor's stream.
//! - With `TrainStepRequest.data_parallel` (N ranks), TrainStep runs in three parts: this rank's
//!   shard gradients on the learner thread, the ring all-reduce on the async runtime (its segments
//!   arrive through `ReduceSegment` into this rank's [`Mailbox`]), then the summed update on the
//!   learner thread ([`crate::data_parallel`]).
//!
//! The learner (its model, optimiser and counters) lives on one dedicated thread; RPC handlers send it
//! closures and await their results, so training never blocks the async runtime and the burn model
//! never crosses threads.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::tensor::backend::AutodiffBackend;
use laser_proto::collective::{
    AllReduceStats, Mailbox, nccl_all_gather, nccl_all_reduce, receive_segment, ring_all_gather,
    ring_all_reduce,
};
use laser_proto::rt::{ClientOptions, InFlight, WorkerStatus};
use laser_proto::v1::learner_server::Learner as LearnerRpc;
use laser_proto::v1::{
    BroadcastWeightsRequest, BroadcastWeightsResponse, CheckpointRequest, CheckpointResponse,
    DataParallel, FinishReason, GradientChunk, ReduceSegmentAck, RestoreRequest, RestoreResponse,
    RolloutGroup, StreamWeightsRequest, TrainStats, TrainStepRequest, TrainStepResponse,
    WeightChunk, WeightPlaneCaps,
};
use laser_proto::weights::{DEFAULT_CHUNK_BYTES, WeightPayload};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::backend::TrainBackend;
use crate::checkpoint::{DataCursor, RunDir};
use crate::data_parallel::{
    ParamGather, ShardGradients, Update, apply_summed, finish_gather, shard_gradients,
};
use crate::{Group, Learner, LearnerError, Sample, StepMetrics, TrainingBatch};

/// Recorded TrainStep results kept for replays; a retry only ever asks for the latest few.
const RECORDED_STEPS: usize = 16;

/// A step's groups as the learner's batch. A sample that did not end with EOS is truncated (no z_c
/// slot, so no self-reward); an ungraded sample is an error naming its group.
pub fn training_batch(groups: &[RolloutGroup]) -> Result<TrainingBatch, Status> {
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let mut samples = Vec::with_capacity(g.samples.len());
        for s in &g.samples {
            let verifier_reward = s.verifier_reward.ok_or_else(|| {
                Status::invalid_argument(format!(
                    "group {} sample {}: `verifier_reward` is missing (the sample was not graded)",
                    g.group_id, s.sample_index
                ))
            })?;
            let truncated = s.finish_reason != FinishReason::Eos as i32;
            samples.push(Sample {
                prompt_tokens: g.prompt_tokens.clone(),
                response_tokens: s.tokens.clone(),
                old_logprobs: s.logprobs.clone(),
                verifier_reward,
                self_reward: if truncated { None } else { s.self_reward },
                truncated,
                policy_version: g.policy_version,
            });
        }
        out.push(Group {
            prompt_id: g.group_id,
            samples,
        });
    }
    TrainingBatch::new(out).map_err(|e| Status::invalid_argument(format!("training batch: {e}")))
}

fn train_stats(m: &StepMetrics) -> TrainStats {
    TrainStats {
        loss: m.total_loss,
        policy_loss: m.policy_loss,
        self_reward_mse: m.self_reward_mse,
        clip_fraction: m.clip_fraction,
        grad_norm: m.grad_norm,
        learning_rate: m.lr,
        skipped: !m.applied,
        mse_on: m.phase.self_reward_mse,
        advantage_mixing_on: m.phase.advantage_mixing,
    }
}

fn learner_status(e: LearnerError) -> Status {
    match e {
        // Bad data from upstream: the caller's fault, named.
        LearnerError::Batch(_) | LearnerError::Model(_) | LearnerError::Loss(_) => {
            Status::invalid_argument(e.to_string())
        }
        // The learner's own state (disk, config): not a transport failure, so no restart loop.
        _ => Status::failed_precondition(e.to_string()),
    }
}

/// Builds the learner a restart would at a checkpoint's step (step 0 without a checkpoint: the
/// start model); returns it with the checkpoint's path ("" for the start model).
pub type Restorer<B> = Box<dyn FnMut(u64) -> Result<(Learner<B>, String), String> + Send>;

/// What the learner thread owns.
pub struct LearnerState<B: AutodiffBackend = TrainBackend> {
    pub learner: Learner<B>,
    pub run_dir: RunDir,
    /// TrainStep results by step, for replays.
    recorded: BTreeMap<u64, TrainStepResponse>,
    /// How `Restore` rebuilds the learner (none: Restore is refused).
    restorer: Option<Restorer<B>>,
}

impl<B: AutodiffBackend> LearnerState<B> {
    pub fn new(learner: Learner<B>, run_dir: RunDir) -> Self {
        Self {
            learner,
            run_dir,
            recorded: BTreeMap::new(),
            restorer: None,
        }
    }

    /// Lets `Restore` roll this learner back with `restorer`.
    pub fn with_restorer(mut self, restorer: Restorer<B>) -> Self {
        self.restorer = Some(restorer);
        self
    }

    /// Restore semantics: the learner becomes what a restart at `step` would load. The recorded
    /// TrainStep results go too, since their step numbers will be trained again on other weights.
    pub fn restore(&mut self, step: u64) -> Result<RestoreResponse, Status> {
        let restorer = self.restorer.as_mut().ok_or_else(|| {
            Status::unimplemented("this learner cannot restore in place; restart it instead")
        })?;
        let (learner, path) = restorer(step).map_err(Status::failed_precondition)?;
        if learner.step() != step {
            return Err(Status::internal(format!(
                "Restore {step}: {path:?} holds step {}",
                learner.step()
            )));
        }
        self.learner = learner;
        self.recorded.clear();
        Ok(RestoreResponse {
            step,
            policy_version: self.learner.policy_version(),
            path,
        })
    }

    /// TrainStep ordering: `Ok(None)` when `step` is the next one to train, the recorded result
    /// of an applied step (a retry), or an error for any other step.
    fn step_order(&self, step: u64) -> Result<Option<TrainStepResponse>, Status> {
        let next = self.learner.step();
        if step < next {
            return self.recorded.get(&step).cloned().map(Some).ok_or_else(|| {
                Status::failed_precondition(format!(
                    "step {step} was applied before this learner's checkpoint (it is at step {next}); \
                     go back to the checkpoint's step"
                ))
            });
        }
        if step > next {
            return Err(Status::failed_precondition(format!(
                "TrainStep {step} out of order: the learner is at step {next}"
            )));
        }
        Ok(None)
    }

    fn record(&mut self, resp: TrainStepResponse) -> TrainStepResponse {
        self.recorded.insert(resp.step, resp);
        while self.recorded.len() > RECORDED_STEPS {
            self.recorded.pop_first();
        }
        resp
    }

    /// TrainStep semantics: exactly the next step trains, an applied one replays, others are refused.
    pub fn train(
        &mut self,
        step: u64,
        batch: Result<TrainingBatch, Status>,
    ) -> Result<TrainStepResponse, Status> {
        if let Some(recorded) = self.step_order(step)? {
            return Ok(recorded);
        }
        let batch = batch?;
        let t = Instant::now();
        let m = self.learner.train_step(&batch).map_err(learner_status)?;
        Ok(self.record(TrainStepResponse {
            step,
            policy_version: self.learner.policy_version(),
            stats: Some(train_stats(&m)),
            train_seconds: t.elapsed().as_secs_f64(),
            allreduce_seconds: 0.0,
            allreduce_bytes: 0,
        }))
    }

    /// Data-parallel TrainStep, first part: this rank's share of the step (same ordering as
    /// [`Self::train`]).
    pub fn shard(
        &mut self,
        step: u64,
        batch: Result<TrainingBatch, Status>,
        dp: &DataParallel,
    ) -> Result<ShardStart, Status> {
        if let Some(recorded) = self.step_order(step)? {
            return Ok(ShardStart::Recorded(recorded));
        }
        let batch = batch?;
        let t = Instant::now();
        let gradients = shard_gradients(&self.learner, &batch, dp.rank as usize, dp.world as usize)
            .map_err(learner_status)?;
        Ok(ShardStart::Ready(PendingShard {
            step,
            gradients,
            batch,
            zero1: (dp.zero_stage >= 1).then_some((dp.rank as usize, dp.world as usize)),
            seconds: t.elapsed().as_secs_f64(),
        }))
    }

    /// Data-parallel TrainStep, last part: the update from the all-reduced `pending` share (with
    /// ZeRO-1, the part before the parameter gather).
    pub fn apply_shard(
        &mut self,
        pending: PendingShard,
        allreduce: AllReduceStats,
    ) -> Result<Applied, Status> {
        if pending.step != self.learner.step() {
            return Err(Status::failed_precondition(format!(
                "all-reduced step {} reached a learner at step {}",
                pending.step,
                self.learner.step()
            )));
        }
        let t = Instant::now();
        let update = apply_summed(
            &mut self.learner,
            pending.gradients,
            &pending.batch,
            pending.zero1,
        )
        .map_err(learner_status)?;
        let seconds = pending.seconds + t.elapsed().as_secs_f64();
        Ok(match update {
            Update::Done(m) => Applied::Done(self.finish(pending.step, &m, seconds, allreduce)),
            Update::Gather(gather) => Applied::Gather(PendingGather {
                step: pending.step,
                gather,
                seconds,
                allreduce,
            }),
        })
    }

    /// ZeRO-1 TrainStep, after the second all-reduce: the other ranks' parameters.
    pub fn finish_gathered(
        &mut self,
        mut pending: PendingGather,
        gathered: AllReduceStats,
    ) -> TrainStepResponse {
        let t = Instant::now();
        let m = finish_gather(&mut self.learner, pending.gather);
        pending.allreduce.seconds += gathered.seconds;
        pending.allreduce.bytes_sent += gathered.bytes_sent;
        let seconds = pending.seconds + t.elapsed().as_secs_f64();
        self.finish(pending.step, &m, seconds, pending.allreduce)
    }

    fn finish(
        &mut self,
        step: u64,
        m: &StepMetrics,
        seconds: f64,
        allreduce: AllReduceStats,
    ) -> TrainStepResponse {
        self.record(TrainStepResponse {
            step,
            policy_version: self.learner.policy_version(),
            stats: Some(train_stats(m)),
            train_seconds: seconds,
            allreduce_seconds: allreduce.seconds,
            allreduce_bytes: allreduce.bytes_sent,
        })
    }

    /// Checkpoint semantics: only the current step; a checkpoint already written for it is reused.
    pub fn checkpoint(&mut self, r: CheckpointRequest) -> Result<CheckpointResponse, Status> {
        let step = self.learner.step();
        if r.step != step {
            return Err(Status::failed_precondition(format!(
                "Checkpoint at step {}: the learner is at step {step}",
                r.step
            )));
        }
        if let Some(c) = r.cursor {
            self.learner.set_data_cursor(DataCursor {
                epoch: c.epoch,
                position: c.position,
            });
        }
        // ZeRO-1: ranks other than 0 only hand over their share of the optimiser state.
        let zero1 = r.data_parallel.filter(|dp| dp.zero_stage >= 1);
        if let Some(dp) = zero1.as_ref().filter(|dp| dp.rank != 0) {
            let dir = self
                .learner
                .write_optimizer_share(&self.run_dir, dp.rank)
                .map_err(learner_status)?;
            return Ok(CheckpointResponse {
                path: dir.display().to_string(),
                step,
                policy_version: self.learner.policy_version(),
            });
        }
        let existing = self
            .run_dir
            .latest_complete()
            .map_err(|e| learner_status(e.into()))?
            .filter(|c| c.step == step);
        let path = match existing {
            Some(c) => c.path,
            None => {
                let world = zero1.map_or(1, |dp| dp.world);
                self.learner
                    .save_checkpoint_merging(&self.run_dir, world)
                    .map_err(learner_status)?
                    .path
            }
        };
        Ok(CheckpointResponse {
            path: path.display().to_string(),
            step,
            policy_version: self.learner.policy_version(),
        })
    }

    /// The current weights, packed for the data plane.
    pub fn pack_weights(&self) -> WeightPayload {
        let weights = self.learner.model().to_weights();
        WeightPayload::pack(
            self.learner.policy_version(),
            weights
                .tensors
                .iter()
                .map(|(name, t)| (name.as_str(), t.shape.as_slice(), t.data.as_slice())),
        )
    }
}

/// A data-parallel step between its shard gradients and its update.
pub struct PendingShard {
    step: u64,
    gradients: ShardGradients,
    batch: TrainingBatch,
    /// ZeRO-1 (rank, world), or `None`: every rank updates every parameter.
    zero1: Option<(usize, usize)>,
    /// Compute time of the shard so far.
    seconds: f64,
}

/// A ZeRO-1 step between the update of this rank's parameters and the gather of the others'.
pub struct PendingGather {
    step: u64,
    pub gather: ParamGather,
    seconds: f64,
    allreduce: AllReduceStats,
}

pub enum Applied {
    Done(TrainStepResponse),
    Gather(PendingGather),
}

pub enum ShardStart {
    /// The step was applied already (a retry): its recorded result.
    Recorded(TrainStepResponse),
    Ready(PendingShard),
}

type Job<B> = Box<dyn FnOnce(&mut LearnerState<B>) + Send>;

/// Runs closures on the thread that owns the learner, one at a time, in arrival order.
pub struct LearnerThread<B: AutodiffBackend = TrainBackend> {
    jobs: std::sync::mpsc::Sender<Job<B>>,
}

impl<B: AutodiffBackend> Clone for LearnerThread<B> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
        }
    }
}

impl<B: AutodiffBackend> LearnerThread<B> {
    /// Moves `state` onto a new thread. A panic there ends the process: local mode restarts the
    /// learner from its checkpoint, and an external supervisor does the same.
    pub fn spawn(state: LearnerState<B>) -> std::io::Result<Self>
    where
        LearnerState<B>: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel::<Job<B>>();
        std::thread::Builder::new()
            .name("learner".into())
            .spawn(move || {
                let mut state = state;
                for job in rx {
                    let r =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut state)));
                    if r.is_err() {
                        tracing::error!("the learner thread panicked; exiting");
                        std::process::exit(70);
                    }
                }
            })?;
        Ok(Self { jobs: tx })
    }

    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LearnerState<B>) -> R + Send + 'static,
    ) -> Result<R, Status> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |s| {
                let _ = tx.send(f(s));
            }))
            .map_err(|_| Status::internal("the learner thread has stopped"))?;
        rx.await
            .map_err(|_| Status::internal("the learner thread dropped the call"))
    }
}

pub struct LearnerService<B: AutodiffBackend = TrainBackend> {
    thread: LearnerThread<B>,
    status: Arc<WorkerStatus>,
    /// The payload of the newest version asked for; packing happens once per version.
    weights: tokio::sync::Mutex<Option<Arc<WeightPayload>>>,
    max_chunk_bytes: usize,
    /// What this learner can do on the weight data plane (probed at start, sent with Register).
    plane: WeightPlaneCaps,
    /// Gradient segments from the previous data-parallel rank.
    mailbox: Arc<Mailbox>,
    /// How this rank dials the next rank.
    client: ClientOptions,
}

impl<B: AutodiffBackend> LearnerService<B>
where
    LearnerState<B>: Send + 'static,
{
    /// `max_message_bytes` caps weight chunks (with room for the message framing); `client` dials
    /// the next data-parallel rank.
    pub fn new(
        state: LearnerState<B>,
        status: Arc<WorkerStatus>,
        max_message_bytes: usize,
        client: ClientOptions,
    ) -> std::io::Result<Self> {
        status
            .policy_version
            .store(state.learner.policy_version(), Ordering::Relaxed);
        // Rank 0 of an NCCL weight group makes its unique id; the coordinator hands it out.
        let plane = status.probe_weight_plane(true);
        Ok(Self {
            thread: LearnerThread::spawn(state)?,
            status,
            weights: tokio::sync::Mutex::new(None),
            max_chunk_bytes: max_message_bytes.saturating_sub(64 << 10).max(1 << 10),
            plane,
            mailbox: Mailbox::new(),
            client,
        })
    }

    /// A data-parallel TrainStep (see the module docs).
    async fn train_data_parallel(
        &self,
        step: u64,
        batch: Result<TrainingBatch, Status>,
        dp: DataParallel,
    ) -> Result<TrainStepResponse, Status> {
        let task = dp.clone();
        let mut pending = match self
            .thread
            .call(move |s| s.shard(step, batch, &task))
            .await??
        {
            ShardStart::Recorded(resp) => return Ok(resp),
            ShardStart::Ready(p) => p,
        };
        let stats = self
            .collective(&mut pending.gradients.buffer, None, step, &dp)
            .await?;
        let mut gather = match self
            .thread
            .call(move |s| s.apply_shard(pending, stats))
            .await??
        {
            Applied::Done(resp) => return Ok(resp),
            Applied::Gather(g) => g,
        };
        // ZeRO-1: every rank's updated parameters go to every other rank.
        let segments = gather.gather.segments.clone();
        let gathered = self
            .collective(&mut gather.gather.buffer, Some(segments), step, &dp)
            .await?;
        self.thread
            .call(move |s| s.finish_gathered(gather, gathered))
            .await
    }

    /// The step's collective on `buffer`: the gradient all-reduce (`segments = None`), or
    /// ZeRO-1's all-gather of each rank's `segments`, over NCCL when `dp.nccl` is set (blocking,
    /// so off the async runtime), else over the gRPC ring. Failures are `Unavailable`: the
    /// coordinator redoes the step from the checkpoint, an NCCL one on the gRPC ring.
    async fn collective(
        &self,
        buffer: &mut Vec<f32>,
        segments: Option<Vec<std::ops::Range<usize>>>,
        step: u64,
        dp: &DataParallel,
    ) -> Result<AllReduceStats, Status> {
        if dp.nccl.is_none() {
            let ring = match &segments {
                None => ring_all_reduce(buffer, step, dp, &self.mailbox, &self.client).await,
                Some(s) => {
                    ring_all_gather(buffer, s, step, 1, dp, &self.mailbox, &self.client).await
                }
            };
            return ring.map_err(|e| Status::unavailable(e.to_string()));
        }
        if !self.plane.nccl {
            return Err(Status::unavailable(format!(
                "NCCL collective asked for, but this learner cannot use NCCL: {}",
                self.plane.nccl_unavailable_reason
            )));
        }
        let (device, dp) = (self.plane.cuda_device, dp.clone());
        let mut owned = std::mem::take(buffer);
        let (owned, stats) = tokio::task::spawn_blocking(move || {
            let stats = match &segments {
                None => nccl_all_reduce(&mut owned, &dp, device),
                Some(s) => nccl_all_gather(&mut owned, s, &dp, device),
            };
            stats.map(|stats| (owned, stats))
        })
        .await
        .map_err(|e| Status::unavailable(format!("NCCL collective task: {e}")))?
        .map_err(Status::unavailable)?;
        *buffer = owned;
        Ok(stats)
    }

    async fn current_payload(&self) -> Result<Arc<WeightPayload>, Status> {
        let mut cached = self.weights.lock().await;
        let version = self.status.policy_version.load(Ordering::Relaxed);
        if let Some(p) = cached.as_ref().filter(|p| p.policy_version == version) {
            return Ok(Arc::clone(p));
        }
        let t = Instant::now();
        let payload = Arc::new(self.thread.call(|s| s.pack_weights()).await?);
        tracing::info!(
            version = payload.policy_version,
            bytes = payload.bytes.len(),
            seconds = t.elapsed().as_secs_f64(),
            "packed weights"
        );
        *cached = Some(Arc::clone(&payload));
        Ok(payload)
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<WeightChunk, Status>> + Send>>;

#[tonic::async_trait]
impl<B: AutodiffBackend> LearnerRpc for LearnerService<B>
where
    LearnerState<B>: Send + 'static,
{
    async fn train_step(
        &self,
        request: Request<TrainStepRequest>,
    ) -> Result<Response<TrainStepResponse>, Status> {
        if self.status.draining() {
            return Err(laser_proto::rt::worker::draining_status(
                "TrainStep refused",
            ));
        }
        let _busy = InFlight::start(&self.status);
        let r = request.into_inner();
        let step = r.step;
        let batch = training_batch(&r.groups);
        let resp = match r.data_parallel {
            Some(dp) if dp.world > 1 => self.train_data_parallel(step, batch, dp).await?,
            _ => self.thread.call(move |s| s.train(step, batch)).await??,
        };
        self.status
            .policy_version
            .fetch_max(resp.policy_version, Ordering::Relaxed);
        let stats = resp.stats.unwrap_or_default();
        tracing::info!(
            step,
            version = resp.policy_version,
            loss = stats.loss,
            grad_norm = stats.grad_norm,
            skipped = stats.skipped,
            seconds = resp.train_seconds,
            allreduce_seconds = resp.allreduce_seconds,
            "train step"
        );
        Ok(Response::new(resp))
    }

    async fn reduce_segment(
        &self,
        request: Request<Streaming<GradientChunk>>,
    ) -> Result<Response<ReduceSegmentAck>, Status> {
        let elements = receive_segment(request.into_inner(), &self.mailbox).await?;
        Ok(Response::new(ReduceSegmentAck { elements }))
    }

    async fn checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        let _busy = InFlight::start(&self.status);
        let r = request.into_inner();
        let resp = self.thread.call(move |s| s.checkpoint(r)).await??;
        tracing::info!(step = resp.step, path = resp.path, "checkpoint");
        Ok(Response::new(resp))
    }

    async fn restore(
        &self,
        request: Request<RestoreRequest>,
    ) -> Result<Response<RestoreResponse>, Status> {
        let _busy = InFlight::start(&self.status);
        let step = request.into_inner().step;
        // Held across the swap: no stream packs the abandoned weights under a version number
        // that the restored learner will reach again with other weights.
        let mut cached = self.weights.lock().await;
        let resp = self.thread.call(move |s| s.restore(step)).await??;
        *cached = None;
        self.mailbox.clear();
        self.status
            .policy_version
            .store(resp.policy_version, Ordering::SeqCst);
        drop(cached);
        tracing::warn!(
            step,
            version = resp.policy_version,
            path = resp.path,
            "restored: training again from this checkpoint"
        );
        Ok(Response::new(resp))
    }

    type StreamWeightsStream = ChunkStream;

    async fn stream_weights(
        &self,
        request: Request<StreamWeightsRequest>,
    ) -> Result<Response<Self::StreamWeightsStream>, Status> {
        let r = request.into_inner();
        let payload = self.current_payload().await?;
        if payload.policy_version < r.min_policy_version {
            return Err(Status::failed_precondition(format!(
                "the learner holds policy version {}, the request needs at least {}",
                payload.policy_version, r.min_policy_version
            )));
        }
        let chunk_bytes = match r.chunk_bytes as usize {
            0 => DEFAULT_CHUNK_BYTES,
            n => n,
        }
        .min(self.max_chunk_bytes);
        // The manifest comes first; NCCL receivers take only it (the bytes come by broadcast).
        let take = if r.manifest_only { 1 } else { usize::MAX };
        let chunks = payload.chunks(chunk_bytes).take(take).map(Ok);
        if let Some(pause) = crate::failpoint::pause(crate::failpoint::WEIGHTS_STREAM) {
            // The manifest, a pause (where the fault test kills the learner), then the rest.
            use tokio_stream::StreamExt as _;
            let mut chunks = chunks.collect::<Vec<_>>().into_iter();
            let manifest = tokio_stream::iter(chunks.next());
            let hold = tokio_stream::once(())
                .then(move |()| tokio::time::sleep(pause))
                .filter_map(|()| None::<Result<WeightChunk, Status>>);
            let rest = tokio_stream::iter(chunks);
            return Ok(Response::new(Box::pin(manifest.chain(hold).chain(rest))));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn broadcast_weights(
        &self,
        request: Request<BroadcastWeightsRequest>,
    ) -> Result<Response<BroadcastWeightsResponse>, Status> {
        let r = request.into_inner();
        let group = r
            .group
            .ok_or_else(|| Status::invalid_argument("group: required"))?;
        if !self.plane.nccl {
            return Err(Status::failed_precondition(format!(
                "this learner cannot broadcast by NCCL: {}",
                self.plane.nccl_unavailable_reason
            )));
        }
        if group.rank != 0 {
            return Err(Status::invalid_argument(format!(
                "the learner is rank 0 of the weight group, not {}",
                group.rank
            )));
        }
        let _busy = InFlight::start(&self.status);
        let payload = self.current_payload().await?;
        if payload.policy_version != r.policy_version {
            return Err(Status::failed_precondition(format!(
                "the learner holds policy version {}, the broadcast is for {}",
                payload.policy_version, r.policy_version
            )));
        }
        let device = self.plane.cuda_device;
        let t = Instant::now();
        let bytes = payload.bytes.clone();
        tokio::task::spawn_blocking(move || {
            laser_proto::plane::broadcast_send(&group, device, &bytes)
        })
        .await
        .map_err(|e| Status::internal(format!("NCCL broadcast task: {e}")))?
        .map_err(Status::failed_precondition)?;
        let seconds = t.elapsed().as_secs_f64();
        tracing::info!(
            version = payload.policy_version,
            bytes = payload.bytes.len(),
            seconds,
            "weights broadcast by NCCL"
        );
        // The next generation's communicator needs a new id.
        let next_unique_id = laser_proto::plane::new_unique_id().unwrap_or_else(|e| {
            tracing::warn!("no NCCL unique id for the next group: {e}");
            Vec::new()
        });
        Ok(Response::new(BroadcastWeightsResponse {
            policy_version: payload.policy_version,
            bytes: payload.bytes.len() as u64,
            seconds,
            next_unique_id,
        }))
    }
}
