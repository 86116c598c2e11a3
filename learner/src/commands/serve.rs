//! `learner serve`: the gRPC Learner service of the distributed runtime.

use anyhow::{Context, Result};
use burn::tensor::backend::AutodiffBackend;
use laser_config::ClusterConfig;

use super::inputs::load;
use super::{ModelArgs, TemplateArg};
use crate::Learner;
use crate::checkpoint::RunDir;

/// `learner serve`: the newest complete checkpoint of run.dir, else a fresh learner from
/// model.path; then the gRPC service until SIGTERM.
pub(super) fn serve<B: AutodiffBackend>(
    cfg: &ClusterConfig,
    rank: u32,
    worker: &laser_proto::rt::WorkerArgs,
    device: B::Device,
) -> Result<()>
where
    Learner<B>: Send + 'static,
{
    use crate::service::{LearnerService, LearnerState};
    use laser_proto::rt::{RoleServer, WorkerStatus, run_worker};
    let run = RunDir::open(&cfg.run.dir)?;
    let (learner, _) = learner_at::<B>(cfg, &run, &device, None)?;
    let token = worker.token()?;
    let opts = worker.server_options(&token);
    let status = std::sync::Arc::new(WorkerStatus::default());
    if rank >= cfg.cluster.learner_ranks {
        anyhow::bail!(
            "--rank {rank}: cluster.learner_ranks is {}, so ranks run 0..{}",
            cfg.cluster.learner_ranks,
            cfg.cluster.learner_ranks
        );
    }
    status
        .learner_rank
        .store(rank, std::sync::atomic::Ordering::Relaxed);
    // Restore (a coordinator restarted under this learner) loads what a restart would.
    let restorer = {
        let (cfg, run, device) = (cfg.clone(), RunDir::open(&cfg.run.dir)?, device.clone());
        Box::new(move |step| {
            let restored =
                learner_at::<B>(&cfg, &run, &device, Some(step)).map_err(|e| format!("{e:#}"))?;
            // Rank 0 writes the checkpoints, so it drops the abandoned timeline's.
            if rank == 0 {
                for path in run.discard_after(step).map_err(|e| e.to_string())? {
                    tracing::warn!(path = %path.display(), "restore: discarded a later checkpoint");
                }
            }
            Ok(restored)
        })
    };
    let service = LearnerService::new(
        LearnerState::new(learner, run).with_restorer(restorer),
        status.clone(),
        opts.max_message_bytes,
        worker.client_options(&token),
    )?;
    let server = RoleServer::new(opts.clone()).service(opts.learner(service));
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(run_worker(
        laser_proto::v1::Role::Learner,
        worker,
        &token,
        server,
        1,
        status,
    ))?;
    Ok(())
}

/// The learner a start loads: the complete checkpoint of step `at` (`None`: the newest one), or
/// a fresh learner from model.path when there is none (only at step 0). Returns it with the
/// checkpoint's path ("" for a fresh learner).
fn learner_at<B: AutodiffBackend>(
    cfg: &ClusterConfig,
    run: &RunDir,
    device: &B::Device,
    at: Option<u64>,
) -> Result<(Learner<B>, String)> {
    let checkpoint = match at {
        None => run.latest_complete()?,
        Some(step) => {
            let found = run
                .complete_checkpoints()?
                .into_iter()
                .find(|c| c.step == step);
            if found.is_none() && step > 0 {
                anyhow::bail!(
                    "{}: no complete checkpoint of step {step}",
                    run.checkpoints_dir().display()
                );
            }
            found
        }
    };
    if let Some(checkpoint) = checkpoint {
        // cluster.toml wins over the configuration stored with the checkpoint (e.g. a new
        // alpha, or `--max-steps` stretching the cosine schedule), and every change is logged.
        let stored = crate::stored_config(&checkpoint)
            .with_context(|| format!("resuming from {}", checkpoint.path.display()))?;
        let wanted = cfg.learner_config(stored.self_reward_token, stored.c_ref);
        for change in crate::config_changes(&stored, &wanted) {
            tracing::warn!(%change, "resume: cluster.toml changes the checkpoint's learner configuration");
        }
        let l = Learner::<B>::load_checkpoint(&checkpoint, device, None, Some(wanted))
            .with_context(|| format!("resuming from {}", checkpoint.path.display()))?;
        tracing::info!(
            path = %checkpoint.path.display(),
            step = l.step(),
            version = l.policy_version(),
            "resumed"
        );
        return Ok((l, checkpoint.path.display().to_string()));
    }
    let model_path = cfg.model.path.clone().context("model.path is required")?;
    let args = ModelArgs {
        model: model_path,
        tokenizer: None,
        self_reward_token: cfg.model.self_reward_token.clone(),
        template: TemplateArg::Raw,
    };
    let (pretrained, tokenizer, z_c) = load::<B>(&args, device)?;
    let c_ref = laser_config::CRef::resolve(cfg.algorithm.c_ref, &cfg.run.dir)?;
    tracing::info!(z_c, c_ref, "fresh learner");
    let l = Learner::new(
        pretrained.model,
        Some(tokenizer),
        None,
        cfg.learner_config(z_c, c_ref),
    )?;
    Ok((l, String::new()))
}
