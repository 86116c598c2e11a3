//! The `Actor` gRPC service, thin over laser-model's `generate`:
//! - `Generate` turns each prompt group into a `RolloutGroup` (n samples with token log-probs and
//!   the self-reward read-out) and streams it back as soon as it is done.
//! - `UpdateWeights` pulls a version from the learner's `StreamWeights` (the data plane), checks
//!   it, builds the new model beside the old one and swaps an `Arc`. A generation in progress
//!   keeps the weights it started with, and every rollout is tagged with its `policy_version`.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use laser_model::backend::Cpu;
use laser_model::weights::{HostTensor, WeightMap};
use laser_model::{
    FinishReason, GenerationRequest, ModelConfig, SamplingParams, SelfRewardConfig, Tokenizer,
    Transformer,
};
use laser_proto::rt::worker::draining_status;
use laser_proto::rt::{ClientOptions, InFlight, WorkerStatus, next_within, request, with_deadline};
use laser_proto::v1::actor_server::Actor;
use laser_proto::v1::{
    self as pb, GenerateRequest, GenerateResponse, NcclGroup, PromptGroup, RolloutGroup,
    RolloutSample, SamplingConfig, StreamWeightsRequest, UpdateWeightsByNcclRequest,
    UpdateWeightsRequest, UpdateWeightsResponse, WeightPlaneCaps,
};
use laser_proto::weights::WeightAssembler;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::{ActorError, encode_group_prompt};

/// Settings fixed for the actor's life.
#[derive(Debug, Clone)]
pub struct ActorConfig {
    pub chat: bool,
    pub self_reward: SelfRewardConfig,
    pub eos_token_ids: Vec<u32>,
    pub max_prompt_tokens: usize,
    /// Idle deadline while receiving weights.
    pub weights_idle: Duration,
}

/// The weights in use and their version.
pub struct Policy<B: Backend = Cpu> {
    pub model: Transformer<B>,
    pub version: u64,
    /// The run's weights epoch of `version`: after a learner restore, versions repeat with other
    /// weights, so (version, epoch) is what names the weights.
    pub epoch: u64,
}

/// One group: `n` samples of one prompt with everything the learner needs.
pub fn rollout_group<B: Backend>(
    policy: &Policy<B>,
    tokenizer: &Tokenizer,
    cfg: &ActorConfig,
    group: &PromptGroup,
    sampling: &SamplingConfig,
) -> Result<(RolloutGroup, u64), ActorError> {
    let prompt = encode_group_prompt(tokenizer, group, cfg.chat)?;
    if prompt.len() > cfg.max_prompt_tokens {
        return Err(ActorError::Usage(format!(
            "group {} (task {}): prompt has {} tokens, more than algorithm.max_prompt_tokens = {}",
            group.group_id,
            group.task_id,
            prompt.len(),
            cfg.max_prompt_tokens
        )));
    }
    let req = GenerationRequest {
        prompts: vec![prompt.clone()],
        n: sampling.n as usize,
        params: SamplingParams {
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            top_k: 0,
            max_new_tokens: sampling.max_response_tokens as usize,
            // Seeded by (run seed, group): a re-dispatched group samples the same way.
            seed: sampling.seed ^ group.group_id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            stop_strings: Vec::new(),
        },
        eos_token_ids: cfg.eos_token_ids.clone(),
        self_reward: Some(cfg.self_reward),
    };
    let (samples, stats) = laser_model::generate(&policy.model, Some(tokenizer), &req)?;
    let samples = samples
        .into_iter()
        .map(|s| RolloutSample {
            sample_index: s.sample_index as u32,
            finish_reason: match s.finish_reason {
                FinishReason::Eos => pb::FinishReason::Eos,
                FinishReason::Length => pb::FinishReason::Length,
                FinishReason::Stop => pb::FinishReason::Stop,
            } as i32,
            self_reward: s.self_reward.map(|r| r.score),
            self_reward_logprob: s.self_reward.map(|r| r.logprob),
            tokens: s.tokens,
            logprobs: s.logprobs,
            text: s.text,
            verifier_reward: None,
            extracted_answer: String::new(),
        })
        .collect();
    Ok((
        RolloutGroup {
            group_id: group.group_id,
            step: group.step,
            policy_version: policy.version,
            prompt_tokens: prompt,
            samples,
            task_id: group.task_id.clone(),
        },
        stats.decode_rows as u64,
    ))
}

pub struct ActorService<B: Backend = Cpu> {
    policy: Arc<RwLock<Arc<Policy<B>>>>,
    /// Where new weights are built.
    device: B::Device,
    tokenizer: Arc<Tokenizer>,
    model_config: ModelConfig,
    cfg: Arc<ActorConfig>,
    client: ClientOptions,
    status: Arc<WorkerStatus>,
    updating: tokio::sync::Mutex<()>,
    /// What this actor can do on the weight data plane (probed at start, sent with Register).
    plane: WeightPlaneCaps,
}

impl<B: Backend> ActorService<B> {
    pub fn new(
        model: Transformer<B>,
        device: B::Device,
        tokenizer: Tokenizer,
        cfg: ActorConfig,
        client: ClientOptions,
        status: Arc<WorkerStatus>,
    ) -> Self {
        let model_config = model.config.clone();
        status.set_weights(0, 0);
        let plane = status.probe_weight_plane(false);
        Self {
            policy: Arc::new(RwLock::new(Arc::new(Policy {
                model: model.with_decode_weights(),
                version: 0,
                epoch: 0,
            }))),
            device,
            tokenizer: Arc::new(tokenizer),
            model_config,
            cfg: Arc::new(cfg),
            client,
            status,
            updating: tokio::sync::Mutex::new(()),
            plane,
        }
    }

    fn current(&self) -> Arc<Policy<B>> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }
}

type RolloutStream = Pin<Box<dyn Stream<Item = Result<GenerateResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<B: Backend> Actor for ActorService<B> {
    type GenerateStream = RolloutStream;

    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        if self.status.draining() {
            return Err(draining_status("Generate refused"));
        }
        let r = request.into_inner();
        let sampling = r
            .sampling
            .ok_or_else(|| Status::invalid_argument("sampling: required"))?;
        if sampling.n < 1 {
            return Err(Status::invalid_argument("sampling.n: must be at least 1"));
        }
        let version = self.current().version;
        if version < r.min_policy_version {
            return Err(Status::failed_precondition(format!(
                "holding policy version {version}, request needs at least {}",
                r.min_policy_version
            )));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let policy = Arc::clone(&self.policy);
        let tokenizer = Arc::clone(&self.tokenizer);
        let cfg = Arc::clone(&self.cfg);
        let busy = InFlight::start(&self.status);
        let status = Arc::clone(&self.status);
        tokio::spawn(async move {
            let _busy = busy;
            // SIGTERM: end the stream; the groups not yet streamed go back to the coordinator.
            let drained = status.drained();
            tokio::pin!(drained);
            let total = r.groups.len();
            for (done, group) in r.groups.into_iter().enumerate() {
                let hand_back = |done: usize| {
                    tracing::info!(
                        streamed = done,
                        handed_back = total - done,
                        "draining: ending a Generate stream"
                    );
                    draining_status(&format!("{} of {total} groups", total - done))
                };
                if status.handing_back() {
                    let _ = tx.send(Err(hand_back(done))).await;
                    return;
                }
                // The swap point: each group starts on the newest weights, atomically.
                let snapshot = Arc::clone(&policy.read().unwrap_or_else(|p| p.into_inner()));
                let (tok, cfg) = (Arc::clone(&tokenizer), Arc::clone(&cfg));
                let t = Instant::now();
                let job = tokio::task::spawn_blocking(move || {
                    rollout_group(&snapshot, &tok, &cfg, &group, &sampling)
                });
                let out = tokio::select! {
                    out = job => out,
                    _ = &mut drained => {
                        let _ = tx.send(Err(hand_back(done))).await;
                        return;
                    }
                };
                let msg = match out {
                    Ok(Ok((group, tokens))) => Ok(GenerateResponse {
                        group: Some(group),
                        generated_tokens: tokens,
                        generate_seconds: t.elapsed().as_secs_f64(),
                    }),
                    Ok(Err(e)) => Err(Status::invalid_argument(e.to_string())),
                    Err(e) => Err(Status::internal(format!("generation task: {e}"))),
                };
                let failed = msg.is_err();
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn update_weights(
        &self,
        req: Request<UpdateWeightsRequest>,
    ) -> Result<Response<UpdateWeightsResponse>, Status> {
        let r = req.into_inner();
        self.update(r.policy_version, r.weights_epoch, &r.source_endpoint, None)
            .await
            .map(Response::new)
    }

    async fn update_weights_by_nccl(
        &self,
        req: Request<UpdateWeightsByNcclRequest>,
    ) -> Result<Response<UpdateWeightsResponse>, Status> {
        let r = req.into_inner();
        let group = r
            .group
            .ok_or_else(|| Status::invalid_argument("group: required"))?;
        if !self.plane.nccl {
            return Err(Status::failed_precondition(format!(
                "this actor cannot receive weights by NCCL: {}",
                self.plane.nccl_unavailable_reason
            )));
        }
        self.update(
            r.policy_version,
            r.weights_epoch,
            &r.source_endpoint,
            Some(group),
        )
        .await
        .map(Response::new)
    }
}

impl<B: Backend> ActorService<B> {
    /// Receives `version` from the learner at `source` (the gRPC stream, or the manifest over gRPC
    /// and the bytes by NCCL broadcast in `nccl`), builds the model and swaps it in.
    async fn update(
        &self,
        policy_version: u64,
        epoch: u64,
        source: &str,
        nccl: Option<NcclGroup>,
    ) -> Result<UpdateWeightsResponse, Status> {
        if self.status.draining() {
            return Err(draining_status("UpdateWeights refused"));
        }
        let _one_at_a_time = self.updating.lock().await;
        let held = self.current();
        if (held.version, held.epoch) == (policy_version, epoch) && nccl.is_none() {
            return Ok(UpdateWeightsResponse {
                policy_version,
                transport: "none".into(),
                ..Default::default()
            });
        }
        let t = Instant::now();
        let idle = self.cfg.weights_idle;
        let channel = self
            .client
            .connect(source)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let mut learner = self.client.learner(channel);
        let transport = if nccl.is_some() { "nccl" } else { "grpc" };
        let ask = StreamWeightsRequest {
            min_policy_version: policy_version,
            chunk_bytes: 0,
            // NCCL: only the manifest over gRPC, the bytes by broadcast from the learner (rank 0).
            manifest_only: nccl.is_some(),
        };
        let mut stream = with_deadline(
            "Learner.StreamWeights",
            idle,
            learner.stream_weights(request(ask, idle)),
        )
        .await?
        .into_inner();
        let mut asm = WeightAssembler::new();
        while let Some(chunk) = next_within("Learner.StreamWeights", idle, &mut stream).await? {
            asm.push(chunk)
                .map_err(|e| Status::data_loss(e.to_string()))?;
        }
        if let Some(group) = nccl {
            let len = asm
                .manifest()
                .map(|m| m.total_bytes as usize)
                .ok_or_else(|| Status::data_loss("StreamWeights sent no manifest"))?;
            let device = self.plane.cuda_device;
            let bytes = tokio::task::spawn_blocking(move || {
                laser_proto::plane::broadcast_recv(&group, device, len)
            })
            .await
            .map_err(|e| Status::internal(format!("NCCL receive task: {e}")))?
            .map_err(Status::failed_precondition)?;
            asm.push_payload(bytes)
                .map_err(|e| Status::data_loss(e.to_string()))?;
        }
        let payload = asm.finish().map_err(|e| Status::data_loss(e.to_string()))?;
        let transfer_seconds = t.elapsed().as_secs_f64();
        let bytes = payload.bytes.len() as u64;
        let version = payload.policy_version;
        let config = self.model_config.clone();
        let device = self.device.clone();
        let t = Instant::now();
        let model = tokio::task::spawn_blocking(move || -> Result<Transformer<B>, String> {
            let mut map = WeightMap::new(format!("<policy version {version}>"));
            for (name, shape, data) in payload.unpack().map_err(|e| e.to_string())? {
                map.insert(name, HostTensor::new(shape, data));
            }
            Transformer::from_weights(&config, map, &device)
                .map(Transformer::with_decode_weights)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| Status::internal(format!("building the model: {e}")))?
        .map_err(|e| Status::data_loss(format!("policy version {version}: {e}")))?;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(Policy {
            model,
            version,
            epoch,
        });
        self.status.set_weights(version, epoch);
        tracing::info!(
            version,
            bytes,
            transfer_seconds,
            transport,
            "weights swapped"
        );
        Ok(UpdateWeightsResponse {
            policy_version: version,
            bytes,
            transfer_seconds,
            swap_seconds: t.elapsed().as_secs_f64(),
            transport: transport.into(),
        })
    }
}
