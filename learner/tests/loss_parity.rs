//! Loss parity with verl (issue 3, "Must show" 1). The fixtures under tests/fixtures are written by
//! scripts/gen_loss_fixtures.py, which calls verl 0.5.0's own compute_grpo_outcome_advantage,
//! compute_policy_loss, agg_loss and kl_penalty, plus the LaSeR MSE and mixing written from LASER.md, in
//! float64 torch. Two kinds:
//! - `loss_*` batches with leaf log-prob tensors: every component and the gradients w.r.t. the log-probs;
//! - `loss_tiny_qwen2_end_to_end`: a real forward pass through the tiny Qwen2 fixture model, and the
//!   gradient of one weight matrix, through the `Learner`'s micro-batched gradient accumulation.

use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use laser_config::{LaserConfig, LearnerConfig, Phase};
use laser_learner::loss::{LossContext, LossTargets, PolicyOutputs, StepNormalizers, laser_loss};
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch, batch_advantages};
use serde_json::Value;

const TOL: f64 = 1e-5;

type Inner = laser_model::backend::Cpu;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(name: &str) -> Value {
    let path = fixtures_dir().join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(f64s).collect()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn assert_close(what: &str, actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= TOL,
        "{what}: rust {actual} vs verl reference {expected}"
    );
}

fn assert_all_close(what: &str, actual: &[f64], expected: &[f64]) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= TOL,
            "{what}[{i}]: rust {a} vs verl reference {e}"
        );
    }
}

fn to_vec<const D: usize>(t: Tensor<Inner, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().into_vec::<f64>().unwrap()
}

fn scalar(t: Tensor<TrainBackend, 1>) -> f64 {
    to_vec(t.inner())[0]
}

fn phase_of(fixture: &Value) -> Phase {
    serde_json::from_value(fixture["phase"].clone()).unwrap()
}

fn config_of(fixture: &Value) -> LaserConfig {
    serde_json::from_value(fixture["config"].clone()).unwrap()
}

/// Groups samples by the fixture's `group_ids` (consecutive), in order.
fn group(ids: &[u64], samples: Vec<Sample>) -> TrainingBatch {
    let mut groups: Vec<Group> = Vec::new();
    for (id, sample) in ids.iter().zip(samples) {
        match groups.last_mut() {
            Some(g) if g.prompt_id == *id => g.samples.push(sample),
            _ => groups.push(Group {
                prompt_id: *id,
                samples: vec![sample],
            }),
        }
    }
    TrainingBatch::new(groups).unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

fn optional_rewards(v: &Value) -> Vec<Option<f32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map(|r| r as f32))
        .collect()
}

fn leaf_fixture(name: &str) {
    let fx = load(name);
    let inputs = &fx["inputs"];
    let expected = &fx["expected"];
    let config = config_of(&fx);
    let phase = phase_of(&fx);
    let c_ref = fx["c_ref"].as_f64().unwrap();
    let device = Default::default();

    let lengths: Vec<usize> = ids(&inputs["response_lengths"])
        .into_iter()
        .map(|l| l as usize)
        .collect();
    let logprobs = rows(&inputs["logprobs"]);
    let old = rows(&inputs["old_logprobs"]);
    let rewards = f64s(&inputs["verifier_rewards"]);
    let self_rewards = optional_rewards(&inputs["rollout_self_rewards"]);
    let truncated: Vec<bool> = inputs["truncated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect();
    let samples: Vec<Sample> = (0..lengths.len())
        .map(|i| Sample {
            prompt_tokens: vec![1],
            response_tokens: vec![5; lengths[i]],
            old_logprobs: old[i][..lengths[i]].iter().map(|&x| x as f32).collect(),
            verifier_reward: rewards[i] as f32,
            self_reward: self_rewards[i],
            truncated: truncated[i],
            policy_version: 0,
        })
        .collect();
    let batch = group(&ids(&inputs["group_ids"]), samples);

    let advantages = batch_advantages(&batch, &config, phase);
    assert_all_close("advantages", &advantages, &f64s(&expected["advantages"]));

    let sample_refs: Vec<&Sample> = batch.samples().collect();
    let mut targets =
        LossTargets::<TrainBackend>::from_samples(&sample_refs, &advantages, &device).unwrap();
    let (b, l) = (logprobs.len(), logprobs[0].len());
    let matrix = |m: &[Vec<f64>]| {
        let flat: Vec<f32> = m.iter().flatten().map(|&x| x as f32).collect();
        Tensor::<TrainBackend, 2>::from_data(TensorData::new(flat, [b, l]), &device)
    };
    if !inputs["ref_logprobs"].is_null() {
        targets.ref_logprobs = Some(matrix(&rows(&inputs["ref_logprobs"])));
    }
    // The fixture's padding holds junk (log-prob -7.5, entropy 9): the loss must ignore it.
    let logprob_leaf = matrix(&logprobs).require_grad();
    let srl: Vec<f32> = f64s(&inputs["self_reward_logprobs"])
        .iter()
        .map(|&x| x as f32)
        .collect();
    let srl_leaf =
        Tensor::<TrainBackend, 1>::from_data(TensorData::new(srl, [b]), &device).require_grad();
    let entropy_leaf =
        (!inputs["entropy"].is_null()).then(|| matrix(&rows(&inputs["entropy"])).require_grad());
    let outputs = PolicyOutputs {
        response_logprobs: logprob_leaf.clone(),
        self_reward_logprob: srl_leaf.clone(),
        entropy: entropy_leaf.clone(),
    };
    let context = LossContext {
        normalizers: StepNormalizers::from_batch(&batch),
        c_ref,
        phase,
    };
    let out = laser_loss(&outputs, &targets, &context, &config).unwrap();

    assert_close(
        "policy_loss",
        scalar(out.policy.loss.clone()),
        expected["policy_loss"].as_f64().unwrap(),
    );
    assert_close(
        "clip_fraction",
        scalar(out.policy.clip_fraction.clone()),
        expected["clip_fraction"].as_f64().unwrap(),
    );
    assert_close(
        "clip_fraction_lower",
        scalar(out.policy.clip_fraction_lower.clone()),
        expected["clip_fraction_lower"].as_f64().unwrap(),
    );
    assert_close(
        "ppo_kl",
        scalar(out.policy.ppo_kl.clone()),
        expected["ppo_kl"].as_f64().unwrap(),
    );
    assert_close(
        "self_reward_mse",
        scalar(out.self_reward_mse.clone()),
        expected["self_reward_mse"].as_f64().unwrap(),
    );
    match (&out.kl_loss, expected["kl_loss"].as_f64()) {
        (Some(kl), Some(e)) => assert_close("kl_loss", scalar(kl.clone()), e),
        (None, None) => {}
        (a, e) => panic!(
            "kl_loss presence differs: rust {:?} vs reference {e:?}",
            a.is_some()
        ),
    }
    match (&out.entropy_loss, expected["entropy_loss"].as_f64()) {
        (Some(en), Some(e)) => assert_close("entropy_loss", scalar(en.clone()), e),
        (None, None) => {}
        (a, e) => panic!(
            "entropy_loss presence differs: rust {:?} vs reference {e:?}",
            a.is_some()
        ),
    }
    assert_close(
        "total",
        scalar(out.total.clone()),
        expected["total"].as_f64().unwrap(),
    );

    let grads = out.total.backward();
    let grad_lp = logprob_leaf
        .grad(&grads)
        .map(to_vec)
        .unwrap_or_else(|| vec![0.0; b * l]);
    let expected_lp: Vec<f64> = rows(&expected["grad_logprobs"])
        .into_iter()
        .flatten()
        .collect();
    assert_all_close("d total / d logprobs", &grad_lp, &expected_lp);
    let grad_srl = srl_leaf
        .grad(&grads)
        .map(to_vec)
        .unwrap_or_else(|| vec![0.0; b]);
    assert_all_close(
        "d total / d self_reward_logprob",
        &grad_srl,
        &f64s(&expected["grad_self_reward_logprobs"]),
    );
    if let Some(entropy) = entropy_leaf {
        let grad_en = entropy.grad(&grads).map(to_vec).unwrap();
        let expected_en: Vec<f64> = rows(&expected["grad_entropy"])
            .into_iter()
            .flatten()
            .collect();
        assert_all_close("d total / d entropy", &grad_en, &expected_en);
    }
}

#[test]
fn token_mean_with_mixing_truncation_equal_rewards_and_std_fallback() {
    leaf_fixture("loss_token_mean_mixed");
}

#[test]
fn only_incorrect_class_seq_mean_token_sum_with_k1_kl() {
    leaf_fixture("loss_one_class_seq_mean_token_sum_k1");
}

#[test]
fn only_correct_class_seq_mean_token_mean_with_k3_kl_and_entropy() {
    leaf_fixture("loss_seq_mean_token_mean_k3_entropy");
}

#[test]
fn plain_grpo_phase_leaves_mse_out_of_the_total() {
    leaf_fixture("loss_grpo_phase");
}

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/tiny-qwen2")
}

/// The end-to-end fixture's batch and a learner over the tiny model.
fn end_to_end_learner(micro_batch_size: usize) -> (Value, TrainingBatch, Learner<TrainBackend>) {
    let fx = load("loss_tiny_qwen2_end_to_end");
    let inputs = &fx["inputs"];
    let prompts = inputs["prompts"].as_array().unwrap();
    let responses = inputs["responses"].as_array().unwrap();
    let old = rows(&inputs["old_logprobs"]);
    let rewards = f64s(&inputs["verifier_rewards"]);
    let self_rewards = optional_rewards(&inputs["rollout_self_rewards"]);
    let truncated: Vec<bool> = inputs["truncated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_bool().unwrap())
        .collect();
    let samples: Vec<Sample> = (0..prompts.len())
        .map(|i| Sample {
            prompt_tokens: u32s(&prompts[i]),
            response_tokens: u32s(&responses[i]),
            old_logprobs: old[i].iter().map(|&x| x as f32).collect(),
            verifier_reward: rewards[i] as f32,
            self_reward: self_rewards[i],
            truncated: truncated[i],
            policy_version: 0,
        })
        .collect();
    let batch = group(&ids(&inputs["group_ids"]), samples);
    let phase = phase_of(&fx);
    assert_eq!(phase, Phase::FULL);
    let config = LearnerConfig {
        laser: LaserConfig {
            reasoning_warmup_steps: 0,
            self_rewarding_warmup_steps: 0,
            ..config_of(&fx)
        },
        micro_batch_size,
        self_reward_token: fx["self_reward_token"].as_u64().unwrap() as u32,
        c_ref: fx["c_ref"].as_f64().unwrap(),
        ..LearnerConfig::default()
    };
    let device = Default::default();
    let model = laser_model::pretrained::load::<TrainBackend>(&tiny_qwen2(), &device)
        .unwrap()
        .model;
    let learner = Learner::new(model, None, None, config).unwrap();
    (fx, batch, learner)
}

fn q_proj_grad(learner: &Learner<TrainBackend>, grads: &burn::optim::GradientsParams) -> Vec<f64> {
    let id = learner.model().layers[0].self_attn.q_proj.weight.id;
    to_vec(grads.get::<Inner, 2>(id).expect("q_proj has a gradient"))
}

#[test]
fn end_to_end_through_tiny_qwen2_matches_verl_including_a_weight_gradient() {
    // Micro-batches of 3 over 10 sequences: groups straddle micro-batches, and the last one is short.
    let (fx, batch, learner) = end_to_end_learner(3);
    let expected = &fx["expected"];

    // The scoring pass itself: response log-probs and z_c log-probs against transformers.
    let items: Vec<laser_model::ScoreItem<'_>> = batch
        .samples()
        .map(|s| laser_model::ScoreItem {
            prompt: &s.prompt_tokens,
            response: &s.response_tokens,
        })
        .collect();
    let scored =
        laser_model::score(learner.model(), &items, learner.config().self_reward_token).unwrap();
    let lp = to_vec(scored.response_logprobs.inner());
    let width = lp.len() / items.len();
    for (i, row) in rows(&expected["logprobs"]).iter().enumerate() {
        assert_all_close(
            &format!("logprobs row {i}"),
            &lp[i * width..i * width + row.len()],
            row,
        );
    }
    assert_all_close(
        "self_reward_logprobs",
        &to_vec(scored.self_reward_logprob.inner()),
        &f64s(&expected["self_reward_logprobs"]),
    );

    let (grads, loss) = learner.gradients(&batch).unwrap();
    assert_eq!(loss.micro_batches, 4);
    assert_close(
        "policy_loss",
        loss.policy,
        expected["policy_loss"].as_f64().unwrap(),
    );
    assert_close(
        "clip_fraction",
        loss.clip_fraction,
        expected["clip_fraction"].as_f64().unwrap(),
    );
    assert_close(
        "clip_fraction_lower",
        loss.clip_fraction_lower,
        expected["clip_fraction_lower"].as_f64().unwrap(),
    );
    assert_close(
        "self_reward_mse",
        loss.self_reward_mse,
        expected["self_reward_mse"].as_f64().unwrap(),
    );
    assert_close("total", loss.total, expected["total"].as_f64().unwrap());
    assert!(
        loss.clip_fraction > 0.0,
        "the fixture is meant to exercise clipping"
    );

    let grad = &expected["grad_weight"];
    assert_eq!(grad["name"], "model.layers.0.self_attn.q_proj.weight");
    let reference = f64s(&grad["values"]);
    let ours = q_proj_grad(&learner, &grads);
    assert_all_close("d total / d q_proj", &ours, &reference);
    let norm = reference.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        norm > 1e-3,
        "the reference gradient is not trivially small ({norm})"
    );
}

#[test]
fn micro_batch_accumulation_equals_one_big_batch() {
    let (_, batch, whole) = end_to_end_learner(64);
    let (grads_whole, loss_whole) = whole.gradients(&batch).unwrap();
    assert_eq!(loss_whole.micro_batches, 1);
    let g_whole = q_proj_grad(&whole, &grads_whole);
    for mb in [1, 4] {
        let (_, _, split) = end_to_end_learner(mb);
        let (grads, loss) = split.gradients(&batch).unwrap();
        assert_eq!(loss.micro_batches, batch.num_samples().div_ceil(mb));
        assert!(
            (loss.total - loss_whole.total).abs() < 1e-6,
            "mb {mb}: {} vs {}",
            loss.total,
            loss_whole.total
        );
        assert!((loss.clip_fraction - loss_whole.clip_fraction).abs() < 1e-6);
        let g = q_proj_grad(&split, &grads);
        for (a, b) in g.iter().zip(&g_whole) {
            assert!((a - b).abs() < 1e-6, "mb {mb}: gradient {a} vs {b}");
        }
    }
}
