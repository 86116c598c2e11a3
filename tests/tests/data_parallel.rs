//! Data-parallel learners as real processes: two `learner serve --rank R` ranks, all-reducing their
//! gradients over `Learner.ReduceSegment`, end every step with bit-identical weights, and those
//! weights match a lone learner's given the same TrainStep batches (to float reassociation). Then
//! the whole local job runs with `cluster.learner_ranks = 2`.

use std::path::Path;
use std::time::Duration;

use laser_integration_tests::{
    LocalRun, Proc, TEST_TOKEN, bin, cluster_toml, spawn_server, temp_dir, tiny_model_dir, wait_for,
};
use laser_proto::rt::{ClientOptions, ClusterToken, request, with_deadline};
use laser_proto::v1::{
    DataParallel, FinishReason, RolloutGroup, RolloutSample, StreamWeightsRequest,
    TrainStepRequest, TrainStepResponse,
};
use laser_proto::weights::{NamedTensor, WeightAssembler};

const D: Duration = Duration::from_secs(120);

/// Group `g` of a synthetic step batch: 4 samples with varied lengths and rewards, EOS-ended
/// (so the self-reward MSE term is on), a fixed "old" log-prob.
fn group(step: u64, g: u64) -> RolloutGroup {
    let samples = (0..4u32)
        .map(|i| {
            let len = 3 + ((g as u32 + i) % 4) as usize;
            let tokens: Vec<u32> = (0..len)
                .map(|t| 20 + ((g as u32 * 7 + i * 3 + t as u32) % 40))
                .collect();
            RolloutSample {
                sample_index: i,
                logprobs: vec![-3.0; tokens.len()],
                tokens,
                text: String::new(),
                finish_reason: FinishReason::Eos as i32,
                self_reward: Some(0.1 * i as f32),
                self_reward_logprob: Some(-6.0),
                verifier_reward: Some(((g as u32 + i + step as u32) % 2) as f32),
                extracted_answer: String::new(),
            }
        })
        .collect();
    RolloutGroup {
        group_id: g,
        step,
        policy_version: step,
        prompt_tokens: vec![1, 30 + g as u32, 31, 32],
        samples,
        task_id: format!("t{g}"),
    }
}

fn start_learner(dir: &Path, model: &Path, tag: &str, rank: Option<u32>) -> (Proc, String) {
    let sub = dir.join(tag);
    std::fs::create_dir_all(&sub).unwrap();
    let cfg = cluster_toml(&sub, model, &sub.join("run"), 3);
    let cfg = cfg.display().to_string();
    let mut args = vec![
        "serve",
        "--cluster",
        cfg.as_str(),
        "--listen",
        "127.0.0.1:0",
    ];
    let rank_arg = rank.map(|r| r.to_string());
    if let Some(r) = &rank_arg {
        args.extend(["--rank", r.as_str()]);
    }
    spawn_server(
        &bin("learner"),
        &args,
        &[
            ("LASER__CLUSTER__LEARNER_RANKS", "2"),
            ("RAYON_NUM_THREADS", "1"),
        ],
        D,
    )
}

async fn try_train(
    client: &ClientOptions,
    addr: &str,
    step: u64,
    dp: Option<DataParallel>,
) -> Result<TrainStepResponse, tonic::Status> {
    let mut learner = client.learner(client.connect(addr).await.expect("connect"));
    let msg = TrainStepRequest {
        step,
        groups: (0..5).map(|g| group(step, g)).collect(),
        data_parallel: dp,
    };
    with_deadline("TrainStep", D, learner.train_step(request(msg, D)))
        .await
        .map(|r| r.into_inner())
}

async fn train(
    client: &ClientOptions,
    addr: &str,
    step: u64,
    dp: Option<DataParallel>,
) -> TrainStepResponse {
    try_train(client, addr, step, dp)
        .await
        .unwrap_or_else(|e| panic!("TrainStep {step} on {addr}: {e:?}"))
}

async fn weights(client: &ClientOptions, addr: &str) -> Vec<NamedTensor> {
    let mut learner = client.learner(client.connect(addr).await.expect("connect"));
    let ask = StreamWeightsRequest {
        min_policy_version: 0,
        chunk_bytes: 0,
        manifest_only: false,
    };
    let mut stream = with_deadline("StreamWeights", D, learner.stream_weights(request(ask, D)))
        .await
        .expect("StreamWeights")
        .into_inner();
    let mut asm = WeightAssembler::new();
    while let Some(chunk) = stream.message().await.expect("weight chunk") {
        asm.push(chunk).expect("chunk in order");
    }
    asm.finish()
        .expect("whole payload")
        .unpack()
        .expect("unpack")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ranks_hold_identical_weights_equal_to_one_learner() {
    let dir = temp_dir("data-parallel");
    let model = tiny_model_dir(&dir);
    let (_one, one) = start_learner(&dir, &model, "one", None);
    let (_r0, r0) = start_learner(&dir, &model, "rank0", Some(0));
    let (_r1, r1) = start_learner(&dir, &model, "rank1", Some(1));
    // A second pair of ranks with ZeRO-1 (each keeps half the AdamW state, a second ring pass
    // gathers the parameters): the same bits as the whole-state pair.
    let (_z0, z0) = start_learner(&dir, &model, "zero0", Some(0));
    let (_z1, z1) = start_learner(&dir, &model, "zero1", Some(1));
    let client = ClientOptions::new(ClusterToken::new(TEST_TOKEN).unwrap());
    let start = weights(&client, &one).await;
    let dp = |peers: &[&String], rank: u32, zero_stage: u32| DataParallel {
        rank,
        world: 2,
        peers: peers.iter().map(|p| p.to_string()).collect(),
        round_timeout_ms: 60_000,
        zero_stage,
        nccl: None,
    };
    let (plain, zero) = ([&r0, &r1], [&z0, &z1]);
    // An NCCL collective asked of ranks that cannot use NCCL (no `nccl` feature, library or GPU
    // here) is refused as Unavailable at once, naming why, with nothing applied: the coordinator
    // then redoes the step from the checkpoint on the gRPC ring. Step 0 below trains as normal.
    let nccl = |rank: u32| DataParallel {
        nccl: Some(laser_proto::plane::collective_group(&[1; 128], rank, 2)),
        ..dp(&plain, rank, 0)
    };
    let (f0, f1) = tokio::join!(
        try_train(&client, &r0, 0, Some(nccl(0))),
        try_train(&client, &r1, 0, Some(nccl(1))),
    );
    for f in [f0, f1] {
        let s = f.expect_err("no NCCL on this machine");
        assert_eq!(s.code(), tonic::Code::Unavailable, "{s:?}");
        assert!(s.message().contains("NCCL"), "{s:?}");
    }
    for step in 0..3 {
        let (a, b, c, y, z) = tokio::join!(
            train(&client, &one, step, None),
            train(&client, &r0, step, Some(dp(&plain, 0, 0))),
            train(&client, &r1, step, Some(dp(&plain, 1, 0))),
            train(&client, &z0, step, Some(dp(&zero, 0, 1))),
            train(&client, &z1, step, Some(dp(&zero, 1, 1))),
        );
        assert_eq!(
            y.stats, b.stats,
            "step {step}: ZeRO-1 rank 0's loss and norm"
        );
        assert_eq!(
            z.stats, c.stats,
            "step {step}: ZeRO-1 rank 1's loss and norm"
        );
        // The all-reduce, then the all-gather of the parameters, which moves half of what a
        // second all-reduce would: about 1.5 times the bytes of the all-reduce alone.
        let ratio = y.allreduce_bytes as f64 / b.allreduce_bytes as f64;
        assert!(
            (1.3..1.7).contains(&ratio),
            "{} vs {} bytes: {ratio:.3}",
            y.allreduce_bytes,
            b.allreduce_bytes
        );
        assert_eq!(a.policy_version, step + 1);
        assert_eq!((b.policy_version, c.policy_version), (step + 1, step + 1));
        let (sa, sb, sc) = (a.stats.unwrap(), b.stats.unwrap(), c.stats.unwrap());
        assert!(
            !sa.skipped && !sb.skipped && !sc.skipped,
            "step {step} skipped"
        );
        // Every rank reports the same whole-batch loss and norm: the all-reduce carried them.
        assert_eq!(sb.loss.to_bits(), sc.loss.to_bits(), "step {step} loss");
        assert_eq!(
            sb.grad_norm.to_bits(),
            sc.grad_norm.to_bits(),
            "step {step}"
        );
        let rel = |x: f64, y: f64| (x - y).abs() / y.abs().max(1e-6);
        assert!(rel(sb.grad_norm, sa.grad_norm) < 1e-4, "{sb:?} vs {sa:?}");
        assert!(rel(sb.loss, sa.loss) < 1e-3, "{sb:?} vs {sa:?}");
        assert!(b.allreduce_bytes > 0 && b.allreduce_seconds > 0.0, "{b:?}");
        assert_eq!(a.allreduce_bytes, 0);
        // A retried step replays its recorded answer on both ranks (no second all-reduce).
        if step == 1 {
            let (b2, c2) = tokio::join!(
                train(&client, &r0, step, Some(dp(&plain, 0, 0))),
                train(&client, &r1, step, Some(dp(&plain, 1, 0))),
            );
            assert_eq!(b2, b);
            assert_eq!(c2, c);
        }
    }
    let (wa, wb, wc, wy, wz) = tokio::join!(
        weights(&client, &one),
        weights(&client, &r0),
        weights(&client, &r1),
        weights(&client, &z0),
        weights(&client, &z1)
    );
    for (zero_rank, wzero) in [(0, &wy), (1, &wz)] {
        for ((name, _, x), (_, _, w)) in wzero.iter().zip(&wb) {
            assert!(
                x.iter().zip(w).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{name}: ZeRO-1 rank {zero_rank}'s weights differ from the whole-state ranks'"
            );
        }
    }
    assert_eq!(wa.len(), wb.len());
    // Adam divides by sqrt(v): where a gradient is near zero, float reassociation in the sum
    // moves the update by up to lr, so the fair scale is the update itself, not the weights.
    let l2 = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (mut diff, mut update, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for (((na, _, a), (_, _, w0)), ((nb, _, b), (nc, _, c))) in
        wa.iter().zip(&start).zip(wb.iter().zip(&wc))
    {
        assert_eq!((na, na), (nb, nc));
        assert!(
            b.iter().zip(c).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na}: the two ranks' weights differ"
        );
        diff += l2(a, b).powi(2);
        update += l2(a, w0).powi(2);
        norm += a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
    }
    let ratio = diff.sqrt() / update.sqrt();
    let relative = diff.sqrt() / norm.sqrt();
    eprintln!(
        "2 ranks vs 1 learner after 3 steps: |w_2ranks - w_1| = {:.3e}, |w_1 - w_start| = {:.3e}, ratio {ratio:.3e}, relative to |w_1| = {relative:.3e}",
        diff.sqrt(),
        update.sqrt()
    );
    // The bar: the same parameters within 1e-5 relative in f32.
    assert!(
        relative < 1e-5,
        "the data-parallel weights are off by {relative:.3e} of |w|"
    );
    assert!(update > 0.0, "the steps moved no weight");
    assert!(
        ratio < 1e-4,
        "the data-parallel update is off by {ratio:.3e} of the update"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local job with two learner ranks runs to the end; the metrics carry the all-reduce.
#[test]
fn the_local_job_runs_with_two_learner_ranks() {
    let mut run = LocalRun::start(
        "dp-job",
        3,
        &[
            ("LASER__CLUSTER__LEARNER_RANKS", "2"),
            ("LASER__CLUSTER__ACTORS", "1"),
            ("LASER__CLUSTER__VERIFIERS", "1"),
        ],
    );
    run.finish(Duration::from_secs(300));
    let rows = run.metrics();
    assert_eq!(rows.len(), 3, "{}", run.coordinator_log());
    for r in &rows {
        assert_eq!(r["learner_ranks"].as_u64(), Some(2), "{r}");
        assert!(r["allreduce_bytes"].as_u64().unwrap() > 0, "{r}");
    }
    assert_eq!(run.checkpointed_step(), Some(3));
    assert!(
        run.worker_log("learner-1").contains("train step"),
        "{}",
        run.worker_log("learner-1")
    );
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// ZeRO-1 in the whole local job: two ranks that each keep half the AdamW state train, rank 1
/// hands its share to every checkpoint, and rank 0's checkpoints hold the whole optimiser state
/// (every parameter's moments, the same layout as one learner's), with no share left behind.
#[test]
fn the_local_job_runs_with_zero1_ranks_and_whole_checkpoints() {
    let mut run = LocalRun::start(
        "dp-zero1",
        4,
        &[
            ("LASER__CLUSTER__LEARNER_RANKS", "2"),
            ("LASER__CLUSTER__LEARNER_ZERO_STAGE", "1"),
            ("LASER__CLUSTER__ACTORS", "1"),
            ("LASER__CLUSTER__VERIFIERS", "1"),
            ("LASER__RUN__CHECKPOINT_EVERY", "2"),
        ],
    );
    run.finish(Duration::from_secs(300));
    let rows = run.metrics();
    assert_eq!(rows.len(), 4, "{}", run.coordinator_log());
    assert_eq!(run.checkpointed_step(), Some(4));
    let checkpoints = run.run.join("checkpoints");
    let names: Vec<String> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".zero1-")),
        "optimiser shares left behind: {names:?}"
    );
    let last = checkpoints.join("step-000004");
    let learner: serde_json::Value =
        serde_json::from_slice(&std::fs::read(last.join("learner_config.json")).unwrap()).unwrap();
    let times = learner["adam_times"].as_array().unwrap();
    let stepped = times.iter().filter(|t| t.as_u64() == Some(4)).count();
    assert_eq!(
        stepped,
        times.len(),
        "every parameter's moments, 4 steps each, whichever rank kept them: {times:?}"
    );
    let moments =
        laser_model::weights::safetensors::load_file(&last.join("optimizer.safetensors")).unwrap();
    assert_eq!(
        moments.tensors.len(),
        2 * times.len(),
        "moment_1 and moment_2 of each"
    );
    let _ = std::fs::remove_dir_all(&run.dir);
}

/// Issue 26's fault: a rank killed in a step. The coordinator restarts every rank from the last
/// checkpoint and redoes the step on the same groups: each step trains exactly once, and both
/// ranks resume from the step-2 checkpoint that rank 0 wrote.
#[test]
fn a_rank_killed_mid_step_is_redone_from_the_checkpoint_on_every_rank() {
    let mut run = LocalRun::start(
        "dp-rank-loss",
        4,
        &[
            ("LASER__CLUSTER__LEARNER_RANKS", "2"),
            ("LASER__CLUSTER__ACTORS", "1"),
            ("LASER__CLUSTER__VERIFIERS", "1"),
            ("LASER__RUN__CHECKPOINT_EVERY", "2"),
            // Slower steps, so that the kill lands in one.
            ("LASER__ALGORITHM__BATCH_PROMPTS", "8"),
            ("LASER__ALGORITHM__GROUP_SIZE", "4"),
            ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "48"),
        ],
    );
    let step2 = wait_for(
        "step 2's batch after the step-2 checkpoint",
        Duration::from_secs(300),
        || {
            (run.checkpointed_step() == Some(2))
                .then(|| run.data_order().into_iter().find(|r| r["step"] == 2))
                .flatten()
        },
    );
    let pid = run.worker_pid("learner-1").expect("learner-1's pid");
    // SAFETY: kill(2) on a process of this test's run.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    run.finish(Duration::from_secs(600));

    run.assert_rows(4, 8, 32);
    run.assert_data_order(4, 8);
    run.assert_redone_from_checkpoint(2, &step2, &["learner-0", "learner-1"]);
    assert_eq!(run.checkpointed_step(), Some(4));
    let audit = run.assert_audit();
    assert!(audit.contains("restores: 1"), "{audit}");
}
