//! ZeRO-1 as plain functions (the all-reduces done by hand): two ranks that each keep the AdamW
//! moments of half the parameters end every step with the same bits as two ranks that keep all of
//! them, write a checkpoint whose optimiser state equals the whole-state ranks' one, and resume
//! from it to the same next step.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use laser_config::{LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::checkpoint::RunDir;
use laser_learner::data_parallel::{
    ShardGradients, Update, apply_summed, finish_gather, shard_gradients, zero1_owned,
};
use laser_learner::learner::{LEARNER_CONFIG_FILE, OPTIMIZER_FILE};
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch};
use laser_model::weights::safetensors;

type L = Learner<TrainBackend>;

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/tiny-qwen2")
}

fn learner() -> L {
    let model = laser_model::pretrained::load::<TrainBackend>(&tiny_qwen2(), &Default::default())
        .unwrap()
        .model;
    let config = LearnerConfig {
        optim: OptimConfig {
            lr_schedule: LrSchedule::Constant {
                lr: 1e-3,
                warmup_steps: 0,
            },
            ..Default::default()
        },
        self_reward_token: 500,
        c_ref: -6.0,
        ..Default::default()
    };
    Learner::new(model, None, None, config).unwrap()
}

/// Step `step`'s batch: 4 groups of 3 EOS-ended samples, mixed rewards (the MSE term is on).
fn batch(step: u64) -> TrainingBatch {
    let groups = (0..4u32)
        .map(|g| Group {
            prompt_id: u64::from(g),
            samples: (0..3u32)
                .map(|i| {
                    let len = 3 + ((g + i) % 3) as usize;
                    let response: Vec<u32> = (0..len as u32)
                        .map(|t| 20 + (g * 7 + i * 3 + t) % 40)
                        .chain([2])
                        .collect();
                    Sample {
                        prompt_tokens: vec![1, 30 + g, 31],
                        old_logprobs: vec![-3.0; response.len()],
                        response_tokens: response,
                        verifier_reward: ((g + i + step as u32) % 2) as f32,
                        self_reward: Some(0.2 * i as f32),
                        truncated: false,
                        policy_version: step,
                    }
                })
                .collect(),
        })
        .collect();
    TrainingBatch::new(groups).unwrap()
}

/// Sums the ranks' buffers elementwise in rank order (what the ring computes for two ranks).
fn sum(buffers: &[&[f32]]) -> Vec<f32> {
    let mut out = buffers[0].to_vec();
    for b in &buffers[1..] {
        for (o, v) in out.iter_mut().zip(*b) {
            *o += v;
        }
    }
    out
}

/// One data-parallel step over two ranks, all-reduces by hand; `zero1` shards the optimiser.
fn step_both(ranks: &mut [L; 2], b: &TrainingBatch, zero1: bool) {
    let mut shards: Vec<ShardGradients> = ranks
        .iter()
        .enumerate()
        .map(|(r, l)| shard_gradients(l, b, r, 2).unwrap())
        .collect();
    let summed = sum(&[&shards[0].buffer, &shards[1].buffer]);
    for s in &mut shards {
        s.buffer.clone_from(&summed);
    }
    let mut gathers = Vec::new();
    for (r, (l, s)) in ranks.iter_mut().zip(shards).enumerate() {
        match apply_summed(l, s, b, zero1.then_some((r, 2))).unwrap() {
            Update::Done(m) => assert!(!zero1 || !m.applied, "a ZeRO-1 step is gathered"),
            Update::Gather(g) => gathers.push(g),
        }
    }
    if zero1 {
        // The all-gather: each rank's segment comes from its owner.
        let mut gathered = vec![f32::NAN; gathers[0].buffer.len()];
        for (r, g) in gathers.iter().enumerate() {
            assert_eq!(g.segments, gathers[0].segments, "rank {r}'s segments");
            let own = g.segments[r].clone();
            gathered[own.clone()].copy_from_slice(&g.buffer[own]);
        }
        assert!(
            gathered.iter().all(|v| !v.is_nan()),
            "the segments cover every parameter"
        );
        for (l, mut g) in ranks.iter_mut().zip(gathers) {
            g.buffer.clone_from(&gathered);
            assert!(finish_gather(l, g).applied);
        }
    }
}

fn weights<B: AutodiffBackend, M: Module<B>>(m: &M) -> Vec<Vec<u32>> {
    struct All(Vec<Vec<u32>>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for All {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let d = p.val().into_data().convert::<f32>();
            self.0.push(
                d.as_slice::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect(),
            );
        }
    }
    let mut all = All(Vec::new());
    m.visit(&mut all);
    all.0
}

/// Bit-equality of two models' parameters, naming the first tensor that differs.
fn assert_same(got: &[Vec<u32>], want: &[Vec<u32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: tensor count");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        let n = got[i].iter().zip(&want[i]).filter(|(a, b)| a != b).count();
        panic!(
            "{what}: parameter {i} differs in {n} of {} elements",
            want[i].len()
        );
    }
}

fn moments(dir: &Path) -> Vec<(String, Vec<u32>)> {
    safetensors::load_file(&dir.join(OPTIMIZER_FILE))
        .unwrap()
        .tensors
        .into_iter()
        .map(|(k, t)| (k, t.data.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

fn adam_times(dir: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(LEARNER_CONFIG_FILE)).unwrap()).unwrap();
    v["adam_times"].clone()
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("laser-zero1-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn zero1_ranks_match_whole_state_ranks_and_checkpoint_the_whole_optimiser() {
    let mut plain = [learner(), learner()];
    let mut zero = [learner(), learner()];
    let owned: Vec<Vec<bool>> = (0..2).map(|r| zero1_owned(zero[0].model(), r, 2)).collect();
    // The two shares partition the parameters, each a real part of the model.
    assert!(owned[0].iter().zip(&owned[1]).all(|(a, b)| a != b));
    let n = owned[0].len();
    let mine = owned[1].iter().filter(|&&o| o).count();
    assert!(mine > 0 && mine < n, "rank 1 owns {mine} of {n} tensors");

    for step in 0..3 {
        let b = batch(step);
        step_both(&mut plain, &b, false);
        step_both(&mut zero, &b, true);
        let w = weights(plain[0].model());
        assert_eq!(
            weights(plain[1].model()),
            w,
            "step {step}: plain ranks differ"
        );
        assert_eq!(
            weights(zero[0].model()),
            w,
            "step {step}: ZeRO-1 rank 0 differs"
        );
        assert_eq!(
            weights(zero[1].model()),
            w,
            "step {step}: ZeRO-1 rank 1 differs"
        );
        assert_eq!(zero[1].owned_state(), Some(owned[1].as_slice()));
    }

    // Checkpoint: rank 1 hands over its share, rank 0 merges; the result is the whole state.
    let (run_plain, run_zero) = (scratch("plain"), scratch("zero"));
    let (dir_plain, dir_zero) = (
        RunDir::open(&run_plain).unwrap(),
        RunDir::open(&run_zero).unwrap(),
    );
    let whole = plain[0].save_checkpoint(&dir_plain).unwrap();
    let shares = zero[1].write_optimizer_share(&dir_zero, 1).unwrap();
    let share = safetensors::load_file(&shares.join("rank-1.safetensors")).unwrap();
    let share_elems: usize = share.tensors.values().map(|t| t.data.len()).sum();
    let whole_elems: usize = safetensors::load_file(&whole.path.join(OPTIMIZER_FILE))
        .unwrap()
        .tensors
        .values()
        .map(|t| t.data.len())
        .sum();
    let fraction = share_elems as f64 / whole_elems as f64;
    eprintln!("rank 1 keeps {share_elems} of {whole_elems} AdamW moment elements ({fraction:.3})");
    assert!(
        (0.3..0.7).contains(&fraction),
        "rank 1's share is {fraction:.3} of the state"
    );
    // Rank 0 alone cannot make a whole checkpoint without rank 1's share.
    std::fs::remove_file(shares.join("rank-1.json")).unwrap();
    let e = zero[0]
        .save_checkpoint_merging(&dir_zero, 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank 1's share"), "{e}");
    let shares = zero[1].write_optimizer_share(&dir_zero, 1).unwrap();
    let merged = zero[0].save_checkpoint_merging(&dir_zero, 2).unwrap();
    assert!(
        moments(&merged.path) == moments(&whole.path),
        "the merged AdamW moments differ from the whole-state rank's"
    );
    assert_eq!(adam_times(&merged.path), adam_times(&whole.path));
    assert!(!shares.exists(), "the merged shares are removed");

    // Both ZeRO-1 ranks resume from the whole checkpoint and take the same next step.
    let resumed = |dir: &RunDir| L::resume(dir, &Default::default(), None).unwrap().0;
    let mut zero = [resumed(&dir_zero), resumed(&dir_zero)];
    let b = batch(3);
    step_both(&mut plain, &b, false);
    step_both(&mut zero, &b, true);
    let w = weights(plain[0].model());
    assert_same(&weights(zero[0].model()), &w, "resumed ZeRO-1 rank 0");
    assert_same(&weights(zero[1].model()), &w, "resumed ZeRO-1 rank 1");
    for d in [run_plain, run_zero] {
        let _ = std::fs::remove_dir_all(d);
    }
}
