//! The learner on the tiny Qwen2 fixture model: learning sanity (issue 3, "Must show" 2), exact resume
//! (3), non-finite steps being skipped (5), and checkpoint contents and rotation.

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Param};
use burn::tensor::{Tensor, TensorData};
use laser_config::{LaserConfig, LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::checkpoint::RunDir;
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch};
use laser_model::weights::WeightMap;
use laser_model::{ScoreItem, Transformer, score};

type Inner = laser_model::backend::Cpu;

const EOS: u32 = 2;
const Z_C: u32 = 500;

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/tiny-qwen2")
}

fn load_model() -> Transformer<TrainBackend> {
    laser_model::pretrained::load::<TrainBackend>(&tiny_qwen2(), &Default::default())
        .unwrap()
        .model
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("laser-learner-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random token ids in [3, 480).
fn tokens(seed: u64, len: usize) -> Vec<u32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            3 + ((x >> 33) % 477) as u32
        })
        .collect()
}

/// Per-sequence sums of response log-probs and the z_c log-probs under `model`.
fn loglik(model: &Transformer<TrainBackend>, batch: &TrainingBatch) -> (Vec<f64>, Vec<f64>) {
    let model = model.valid();
    let items: Vec<ScoreItem<'_>> = batch
        .samples()
        .map(|s| ScoreItem {
            prompt: &s.prompt_tokens,
            response: &s.response_tokens,
        })
        .collect();
    let out = score(&model, &items, Z_C).unwrap();
    let sums = out
        .response_logprobs
        .sum_dim(1)
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap();
    let zc = out
        .self_reward_logprob
        .into_data()
        .convert::<f64>()
        .into_vec::<f64>()
        .unwrap();
    (sums, zc)
}

/// Two groups of four, on-policy: old log-probs and rollout self-rewards come from the model itself.
/// `rewards[g][i]` is r_v; one response in the first group is truncated (no EOS).
fn on_policy_batch(model: &Transformer<TrainBackend>, beta_v: f64, c_ref: f64) -> TrainingBatch {
    let rewards = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]];
    let mut groups = Vec::new();
    for (g, group_rewards) in rewards.iter().enumerate() {
        let prompt = tokens(100 + g as u64, 4 + g);
        let samples = group_rewards
            .iter()
            .enumerate()
            .map(|(i, &r_v)| {
                let truncated = g == 0 && i == 3;
                let mut response = tokens(10 * g as u64 + i as u64, 3 + i);
                if !truncated {
                    response.push(EOS);
                }
                Sample {
                    prompt_tokens: prompt.clone(),
                    old_logprobs: vec![0.0; response.len()],
                    response_tokens: response,
                    verifier_reward: r_v,
                    self_reward: (!truncated).then_some(0.0),
                    truncated,
                    policy_version: 0,
                }
            })
            .collect();
        groups.push(Group {
            prompt_id: g as u64,
            samples,
        });
    }
    // Fill in what the actor would have recorded.
    let items: Vec<(Vec<u32>, Vec<u32>)> = groups
        .iter()
        .flat_map(|g| {
            g.samples
                .iter()
                .map(|s| (s.prompt_tokens.clone(), s.response_tokens.clone()))
        })
        .collect();
    let refs: Vec<ScoreItem<'_>> = items
        .iter()
        .map(|(p, r)| ScoreItem {
            prompt: p,
            response: r,
        })
        .collect();
    let out = score(&model.valid(), &refs, Z_C).unwrap();
    let width = out.response_logprobs.dims()[1];
    let lp = out
        .response_logprobs
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    let zc = out
        .self_reward_logprob
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap();
    let mut k = 0;
    for g in &mut groups {
        for s in &mut g.samples {
            s.old_logprobs = lp[k * width..k * width + s.response_tokens.len()].to_vec();
            if !s.truncated {
                s.self_reward = Some((beta_v * (f64::from(zc[k]) - c_ref)) as f32);
            }
            k += 1;
        }
    }
    TrainingBatch::new(groups).unwrap()
}

fn config(beta_v: f64, c_ref: f64, lr: LrSchedule, micro_batch_size: usize) -> LearnerConfig {
    LearnerConfig {
        laser: LaserConfig {
            beta_v,
            reasoning_warmup_steps: 0,
            self_rewarding_warmup_steps: 0,
            ..Default::default()
        },
        optim: OptimConfig {
            lr_schedule: lr,
            ..Default::default()
        },
        micro_batch_size,
        self_reward_token: Z_C,
        c_ref,
        ..Default::default()
    }
}

#[test]
fn fifty_steps_raise_positive_lower_negative_and_shrink_the_mse_tenfold() {
    let model = load_model();
    // The tiny model's vocabulary has 512 tokens, so log p(z_c) starts near -ln 512 = -6.2: c_ref is that
    // (as calibration would measure it), and beta_v = 0.5 makes r_s = 1 reachable (log p(z_c) = c_ref + 2);
    // with the paper's 0.1 it would need log p(z_c) = c_ref + 10 > 0.
    let (_, zc0) = {
        let b = on_policy_batch(&model, 0.5, 0.0);
        loglik(&model, &b)
    };
    let c_ref = zc0.iter().sum::<f64>() / zc0.len() as f64;
    let batch = on_policy_batch(&model, 0.5, c_ref);
    let mut learner = Learner::new(
        model,
        None,
        None,
        config(
            0.5,
            c_ref,
            LrSchedule::Constant {
                lr: 2e-3,
                warmup_steps: 0,
            },
            3,
        ),
    )
    .unwrap();
    let (before, _) = loglik(learner.model(), &batch);
    let advantages =
        laser_learner::batch_advantages(&batch, &learner.config().laser, learner.phase());

    let mut metrics = Vec::new();
    for _ in 0..50 {
        let m = learner.train_step(&batch).unwrap();
        assert!(m.applied && m.total_loss.is_finite(), "{m:?}");
        metrics.push(m);
    }
    let (after, _) = loglik(learner.model(), &batch);
    for (i, &a) in advantages.iter().enumerate() {
        let delta = after[i] - before[i];
        if a > 0.0 {
            assert!(
                delta > 0.05,
                "sample {i} (A = {a:.3}): log-lik {:.4} -> {:.4} should rise",
                before[i],
                after[i]
            );
        } else if a < 0.0 {
            assert!(
                delta < -0.05,
                "sample {i} (A = {a:.3}): log-lik {:.4} -> {:.4} should fall",
                before[i],
                after[i]
            );
        }
    }
    let (first, last) = (metrics[0].self_reward_mse, metrics[49].self_reward_mse);
    eprintln!("self-reward MSE {first:.5} -> {last:.5}; log-lik before {before:?} after {after:?}");
    assert!(
        last * 10.0 <= first,
        "MSE should fall at least 10x: {first} -> {last}"
    );
    assert_eq!(learner.step(), 50);
    assert_eq!(learner.policy_version(), 50);
}

fn weights(learner: &Learner<TrainBackend>) -> WeightMap {
    learner.model().to_weights()
}

#[test]
fn resuming_from_a_checkpoint_continues_bit_for_bit() {
    let k = 3;
    let lr = LrSchedule::Cosine {
        lr: 1e-3,
        warmup_steps: 2,
        total_steps: 10,
        min_lr_ratio: 0.1,
    };
    let mut cfg = config(0.5, -6.0, lr, 3);
    // Phases change inside the run: GRPO at step 0, MSE from 1, mixing from 3.
    cfg.laser.reasoning_warmup_steps = 1;
    cfg.laser.self_rewarding_warmup_steps = 2;
    let model = load_model();
    let batch = on_policy_batch(&model, 0.5, -6.0);

    let mut straight = Learner::new(model, None, None, cfg.clone()).unwrap();
    for _ in 0..2 * k {
        straight.train_step(&batch).unwrap();
    }

    let scratch = Scratch::new("resume");
    let run = RunDir::open(&scratch.0).unwrap();
    {
        let mut first = Learner::new(load_model(), None, None, cfg.clone()).unwrap();
        for _ in 0..k {
            first.train_step(&batch).unwrap();
        }
        first.set_data_cursor(laser_learner::checkpoint::DataCursor {
            epoch: 1,
            position: 17,
        });
        use rand_chacha::rand_core::RngCore;
        first.rng_mut().next_u64();
        first.save_checkpoint(&run).unwrap();
    }
    let (mut resumed, checkpoint) =
        Learner::<TrainBackend>::resume(&run, &Default::default(), None).unwrap();
    assert_eq!(checkpoint.step, k as u64);
    assert_eq!(resumed.step(), k as u64);
    assert_eq!(
        resumed.data_cursor(),
        laser_learner::checkpoint::DataCursor {
            epoch: 1,
            position: 17
        }
    );
    for _ in 0..k {
        resumed.train_step(&batch).unwrap();
    }
    let (a, b) = (weights(&straight), weights(&resumed));
    assert_eq!(
        a.tensors.keys().collect::<Vec<_>>(),
        b.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &a.tensors {
        let u = &b.tensors[name];
        let same = t
            .data
            .iter()
            .zip(&u.data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs after resume");
    }
    // And the weights did move, so the comparison means something.
    let initial = load_model().to_weights();
    assert_ne!(
        initial.tensors["lm_head.weight"].data,
        a.tensors["lm_head.weight"].data
    );
}

/// Resuming with another configuration (cluster.toml edited, or `--max-steps` on `--resume`)
/// applies it, names every changed field, and refuses a different z_c.
#[test]
fn resume_applies_a_changed_configuration_and_names_the_changes() {
    let lr = LrSchedule::Constant {
        lr: 1e-3,
        warmup_steps: 0,
    };
    let cfg = config(0.5, -6.0, lr, 3);
    let model = load_model();
    let batch = on_policy_batch(&model, 0.5, -6.0);
    let scratch = Scratch::new("reconfig");
    let run = RunDir::open(&scratch.0).unwrap();
    {
        let mut first = Learner::new(model, None, None, cfg.clone()).unwrap();
        first.train_step(&batch).unwrap();
        first.save_checkpoint(&run).unwrap();
    }
    let checkpoint = run.latest_complete().unwrap().unwrap();
    let stored = laser_learner::stored_config(&checkpoint).unwrap();
    assert_eq!(stored, cfg);
    assert!(laser_learner::config_changes(&stored, &cfg).is_empty());

    let mut changed = cfg.clone();
    changed.laser.alpha *= 10.0;
    changed.optim.weight_decay = 0.1;
    let changes = laser_learner::config_changes(&stored, &changed);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].starts_with("laser.alpha: "), "{changes:?}");
    assert!(
        changes[1].starts_with("optim.weight_decay: "),
        "{changes:?}"
    );

    let device = Default::default();
    let mut kept =
        Learner::<TrainBackend>::load_checkpoint(&checkpoint, &device, None, None).unwrap();
    let mut resumed =
        Learner::<TrainBackend>::load_checkpoint(&checkpoint, &device, None, Some(changed.clone()))
            .unwrap();
    assert_eq!(kept.config(), &cfg);
    assert_eq!(resumed.config().laser.alpha, changed.laser.alpha);
    assert_eq!(
        resumed.step(),
        1,
        "the training state still comes from the checkpoint"
    );
    // The new alpha weighs the same MSE ten times as much in the loss of the next step.
    let (a, b) = (
        kept.train_step(&batch).unwrap(),
        resumed.train_step(&batch).unwrap(),
    );
    assert!(a.self_reward_mse > 0.0);
    assert!(
        (b.total_loss - a.total_loss).abs() > 1e-6,
        "the changed alpha did not reach the loss: {} vs {}",
        a.total_loss,
        b.total_loss
    );

    let mut other_token = cfg.clone();
    other_token.self_reward_token += 1;
    let err =
        Learner::<TrainBackend>::load_checkpoint(&checkpoint, &device, None, Some(other_token))
            .err()
            .expect("a different z_c must be refused");
    assert!(err.to_string().contains("z_c cannot change"), "{err}");
}

#[test]
fn checkpoints_are_hf_loadable_complete_and_rotated() {
    let scratch = Scratch::new("rotate");
    let run = RunDir::open(&scratch.0).unwrap();
    let model = load_model();
    let batch = on_policy_batch(&model, 0.1, -23.0);
    let mut cfg = config(
        0.1,
        -23.0,
        LrSchedule::Constant {
            lr: 1e-4,
            warmup_steps: 0,
        },
        4,
    );
    cfg.keep_last_checkpoints = 2;
    let mut learner = Learner::new(model, None, None, cfg).unwrap();
    for _ in 0..4 {
        learner.train_step(&batch).unwrap();
        learner.save_checkpoint(&run).unwrap();
    }
    let kept: Vec<u64> = run
        .complete_checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.step)
        .collect();
    assert_eq!(kept, vec![3, 4]);
    let latest = run.latest_complete().unwrap().unwrap();
    for file in [
        "model.safetensors",
        "config.json",
        "optimizer.safetensors",
        "learner_config.json",
        "trainer_state.json",
        "COMPLETE",
    ] {
        assert!(latest.path.join(file).is_file(), "{file} missing");
    }
    let state = latest.trainer_state().unwrap();
    assert_eq!((state.step, state.c_ref), (4, -23.0));
    // The saved model is a plain HF directory our loader (and transformers, see
    // scripts/check_checkpoint_roundtrip.py) reads back with the same weights.
    let reloaded = laser_model::pretrained::load::<Inner>(&latest.path, &Default::default())
        .unwrap()
        .model;
    assert_eq!(
        reloaded.to_weights().tensors,
        learner.model().to_weights().tensors
    );
    // Saving the same step twice is refused: checkpoints are immutable.
    assert!(learner.save_checkpoint(&run).is_err());
    // keep_last = 0 still keeps the newest complete checkpoint.
    run.rotate(0).unwrap();
    assert_eq!(run.complete_checkpoints().unwrap().len(), 1);
}

/// Sets one lm_head weight to +inf: every logit row that uses it becomes inf, log-softmax NaN.
fn poison(model: Transformer<TrainBackend>) -> Transformer<TrainBackend> {
    let mut model = model;
    let head = model.lm_head.as_mut().unwrap();
    let w = head.weight.val();
    let dims = w.dims();
    let mut data = w.into_data().convert::<f32>().into_vec::<f32>().unwrap();
    data[Z_C as usize * dims[1]] = f32::INFINITY;
    head.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(data, dims),
        &Default::default(),
    ));
    model
}

#[test]
fn a_non_finite_loss_skips_the_step_counts_it_and_changes_nothing() {
    let model = load_model();
    let batch = on_policy_batch(&model, 0.1, -6.0);
    let mut learner = Learner::new(
        poison(model),
        None,
        None,
        config(
            0.1,
            -6.0,
            LrSchedule::Constant {
                lr: 1e-3,
                warmup_steps: 0,
            },
            4,
        ),
    )
    .unwrap();
    let before = weights(&learner);
    let m = learner.train_step(&batch).unwrap();
    assert!(!m.applied, "{m:?}");
    assert!(!m.total_loss.is_finite());
    assert_eq!(m.skipped_steps, 1);
    assert_eq!(learner.skipped_steps(), 1);
    assert_eq!(learner.step(), 1, "the schedule's clock still advances");
    assert_eq!(
        learner.policy_version(),
        0,
        "no new policy version without an update"
    );
    let after = weights(&learner);
    for (name, t) in &before.tensors {
        let same = t
            .data
            .iter()
            .zip(&after.tensors[name].data)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} changed in a skipped step");
    }
}

#[test]
fn bad_configs_are_named() {
    let err = Learner::new(
        load_model(),
        None,
        None,
        LearnerConfig {
            self_reward_token: 512,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("self_reward_token") && err.contains("512"),
        "{err}"
    );
    let err = Learner::new(
        load_model(),
        None,
        None,
        LearnerConfig {
            micro_batch_size: 0,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("micro_batch_size"), "{err}");
    let laser = LaserConfig {
        kl_penalty: Some(laser_config::KlPenalty {
            estimator: laser_config::KlEstimator::K3,
            coef: 0.1,
        }),
        ..Default::default()
    };
    let err = Learner::new(
        load_model(),
        None,
        None,
        LearnerConfig {
            laser,
            ..Default::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("reference model"), "{err}");
}

#[test]
fn a_batch_with_out_of_vocabulary_tokens_is_an_error_not_a_panic() {
    let model = load_model();
    let mut batch_groups = on_policy_batch(&model, 0.1, -6.0).groups().to_vec();
    batch_groups[1].samples[2].response_tokens[0] = 9999;
    let batch = TrainingBatch::new(batch_groups).unwrap();
    let mut learner = Learner::new(
        model,
        None,
        None,
        LearnerConfig {
            self_reward_token: Z_C,
            ..Default::default()
        },
    )
    .unwrap();
    let err = learner.train_step(&batch).unwrap_err().to_string();
    assert!(err.contains("9999"), "{err}");
    assert_eq!(learner.step(), 0);
}

/// Data parallelism in one process: two ranks' shard gradients, summed as the all-reduce sums
/// them, and applied on both ranks give the one-rank update over 3 steps (through every LaSeR
/// phase), and both ranks hold bit-identical weights.
#[test]
fn two_data_parallel_shards_summed_give_the_one_rank_update() {
    use laser_learner::data_parallel::{Update, apply_summed, shard_gradients};
    let lr = LrSchedule::Constant {
        lr: 1e-3,
        warmup_steps: 0,
    };
    let mut cfg = config(0.5, -6.0, lr, 2);
    cfg.laser.reasoning_warmup_steps = 1;
    cfg.laser.self_rewarding_warmup_steps = 1;
    let model = load_model();
    let batch = on_policy_batch(&model, 0.5, -6.0);
    assert!(batch.groups().len() >= 2, "the batch must split");
    let mut one = Learner::new(load_model(), None, None, cfg.clone()).unwrap();
    let mut ranks = [
        Learner::new(load_model(), None, None, cfg.clone()).unwrap(),
        Learner::new(load_model(), None, None, cfg).unwrap(),
    ];
    for step in 0..3 {
        let m1 = one.train_step(&batch).unwrap();
        let shares: Vec<_> = ranks
            .iter()
            .enumerate()
            .map(|(r, l)| shard_gradients(l, &batch, r, 2).unwrap())
            .collect();
        let summed: Vec<f32> = shares[0]
            .buffer
            .iter()
            .zip(&shares[1].buffer)
            .map(|(a, b)| a + b)
            .collect();
        let mut metrics = Vec::new();
        for (l, mut own) in ranks.iter_mut().zip(shares) {
            own.buffer.copy_from_slice(&summed);
            match apply_summed(l, own, &batch, None).unwrap() {
                Update::Done(m) => metrics.push(m),
                Update::Gather(_) => panic!("whole-state ranks have nothing to gather"),
            }
        }
        assert!(
            m1.applied && metrics.iter().all(|m| m.applied),
            "step {step}"
        );
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-6);
        assert!(
            rel(metrics[0].total_loss, m1.total_loss) < 1e-4,
            "step {step} loss"
        );
        assert!(
            rel(metrics[0].grad_norm, m1.grad_norm) < 1e-4,
            "step {step} norm"
        );
    }
    let (a, b0, b1) = (weights(&one), weights(&ranks[0]), weights(&ranks[1]));
    let mut worst = 0.0f64;
    for (name, t) in &a.tensors {
        let (u, v) = (&b0.tensors[name], &b1.tensors[name]);
        assert!(
            u.data
                .iter()
                .zip(&v.data)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name}: the ranks' weights differ"
        );
        let norm = t
            .data
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        let diff = t
            .data
            .iter()
            .zip(&u.data)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        worst = worst.max(diff / norm.max(1e-12));
    }
    eprintln!("data parallel vs one rank after 3 steps: worst relative L2 difference {worst:.3e}");
    assert!(worst < 1e-5, "relative difference {worst:.3e}");
}
