//! Checkpoint round trip (issue 3, "Must show" 4): a checkpoint the learner writes after training is a
//! Hugging Face model directory that transformers loads with the same logits. The committed fixture holds
//! transformers' logits for this exact checkpoint (scripts/check_checkpoint_roundtrip.py); set
//! LASER_CHECKPOINT_OUT=DIR to keep the checkpoint and our logits for that script.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use laser_config::{LaserConfig, LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::checkpoint::RunDir;
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch};
use laser_model::transformer::ForwardBatch;

type Inner = laser_model::backend::Cpu;

fn sample(prompt: &[u32], response: &[u32], r_v: f32) -> Sample {
    Sample {
        prompt_tokens: prompt.to_vec(),
        response_tokens: response.to_vec(),
        old_logprobs: vec![-6.0; response.len()],
        verifier_reward: r_v,
        self_reward: Some(0.2),
        truncated: false,
        policy_version: 0,
    }
}

#[test]
fn a_trained_checkpoint_loads_in_transformers_with_equal_logits() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let device = Default::default();
    let model = laser_model::pretrained::load::<TrainBackend>(
        &root.join("../model/tests/fixtures/tiny-qwen2"),
        &device,
    )
    .unwrap()
    .model;
    let config = LearnerConfig {
        laser: LaserConfig {
            reasoning_warmup_steps: 0,
            self_rewarding_warmup_steps: 0,
            ..Default::default()
        },
        // A large step so the trained weights are clearly not the fixture's.
        optim: OptimConfig {
            lr_schedule: LrSchedule::Constant {
                lr: 1e-2,
                warmup_steps: 0,
            },
            ..Default::default()
        },
        micro_batch_size: 4,
        self_reward_token: 500,
        c_ref: -6.0,
        ..Default::default()
    };
    let batch = TrainingBatch::new(vec![
        Group {
            prompt_id: 0,
            samples: vec![
                sample(&[5, 6, 7], &[8, 9, 2], 1.0),
                sample(&[5, 6, 7], &[10, 2], 0.0),
            ],
        },
        Group {
            prompt_id: 1,
            samples: vec![
                sample(&[11, 12], &[13, 14, 15, 2], 0.0),
                sample(&[11, 12], &[16, 2], 1.0),
            ],
        },
    ])
    .unwrap();
    let mut learner = Learner::new(model, None, None, config).unwrap();
    for _ in 0..2 {
        assert!(learner.train_step(&batch).unwrap().applied);
    }

    let keep = std::env::var_os("LASER_CHECKPOINT_OUT").map(PathBuf::from);
    let out = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("laser-ckpt-rt-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&out);
    let run = RunDir::open(&out).unwrap();
    let checkpoint = learner.save_checkpoint(&run).unwrap();

    // Our logits from the checkpoint as reloaded from disk.
    let reloaded = laser_model::pretrained::load::<Inner>(&checkpoint.path, &device)
        .unwrap()
        .model;
    let tokens: Vec<u32> = vec![1, 5, 6, 7, 8, 9, 2, 40, 300, 511, 17, 3];
    let fwd = ForwardBatch {
        batch: 1,
        seq: tokens.len(),
        tokens: tokens.clone(),
        positions: (0..tokens.len()).collect(),
        left_pad: vec![0],
    };
    let hidden = reloaded.hidden_states(&fwd, None);
    let h = reloaded.config.hidden_size;
    let logits: Vec<f32> = reloaded
        .logits(hidden.reshape([tokens.len(), h]))
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    // The live model gives the same logits: nothing was lost in writing.
    let live = learner.model().valid();
    let live_logits: Vec<f32> = live
        .logits(live.hidden_states(&fwd, None).reshape([tokens.len(), h]))
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    assert_eq!(logits, live_logits);

    if keep.is_some() {
        let rel = checkpoint
            .path
            .strip_prefix(&out)
            .unwrap()
            .display()
            .to_string();
        let json = serde_json::json!({"checkpoint": rel, "step": checkpoint.step, "tokens": tokens, "logits": logits});
        std::fs::write(out.join("rust_logits.json"), json.to_string()).unwrap();
    } else {
        let _ = std::fs::remove_dir_all(&out);
    }

    let fixture: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/checkpoint_roundtrip.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(fixture["tokens"], serde_json::json!(tokens));
    let reference: Vec<f64> = fixture["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(reference.len(), logits.len());
    let max_diff = reference
        .iter()
        .zip(&logits)
        .map(|(r, &o)| (r - f64::from(o)).abs())
        .fold(0.0, f64::max);
    assert!(
        max_diff < 1e-4,
        "logits differ from transformers' on the same checkpoint by {max_diff}"
    );
    // And training moved the model away from the untrained fixture, so the comparison is not vacuous.
    let untrained = laser_model::pretrained::load::<Inner>(
        &root.join("../model/tests/fixtures/tiny-qwen2"),
        &device,
    )
    .unwrap()
    .model;
    let base: Vec<f32> = untrained
        .logits(
            untrained
                .hidden_states(&fwd, None)
                .reshape([tokens.len(), h]),
        )
        .into_data()
        .convert::<f32>()
        .into_vec()
        .unwrap();
    let moved = base
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(moved > 1e-2, "training barely changed the logits ({moved})");
}
