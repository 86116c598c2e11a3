//! The Learner service's semantics as plain functions (no network): proto groups become a validated
//! batch, TrainStep runs each step exactly once (a replay returns the recorded result, a gap is
//! refused), Checkpoint is pinned to the current step and idempotent, and packed weights carry the
//! policy version and reproduce the model.

use std::path::{Path, PathBuf};

use laser_config::{LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::checkpoint::RunDir;
use laser_learner::service::{LearnerState, training_batch};
use laser_learner::{Learner, TrainBackend};
use laser_proto::v1::{CheckpointRequest, DataCursor, FinishReason, RolloutGroup, RolloutSample};
use tonic::Code;

fn tiny_qwen2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures/tiny-qwen2")
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("laser-learner-svc-{name}-{}", std::process::id()));
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

fn sample(i: u32, eos: bool, reward: Option<f32>) -> RolloutSample {
    let mut tokens = vec![10 + i, 20 + i, 30];
    if eos {
        tokens.push(2);
    }
    RolloutSample {
        sample_index: i,
        logprobs: vec![-2.0; tokens.len()],
        tokens,
        text: String::new(),
        finish_reason: if eos {
            FinishReason::Eos
        } else {
            FinishReason::Length
        } as i32,
        self_reward: Some(0.3),
        self_reward_logprob: Some(-4.0),
        verifier_reward: reward,
        extracted_answer: String::new(),
    }
}

fn group(id: u64, rewards: [f32; 2]) -> RolloutGroup {
    RolloutGroup {
        group_id: id,
        step: 0,
        policy_version: 0,
        prompt_tokens: vec![1, 40, 41, 42],
        samples: vec![
            sample(0, true, Some(rewards[0])),
            sample(1, false, Some(rewards[1])),
        ],
        task_id: format!("t{id}"),
    }
}

fn state(run: &Path) -> LearnerState {
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
    let learner = Learner::<TrainBackend>::new(model, None, None, config).unwrap();
    LearnerState::new(learner, RunDir::open(run).unwrap())
}

#[test]
fn proto_groups_become_a_validated_batch() {
    let batch = training_batch(&[group(7, [1.0, 0.0]), group(8, [0.0, 0.0])]).unwrap();
    assert_eq!(batch.groups().len(), 2);
    assert_eq!(batch.groups()[0].prompt_id, 7);
    let s: Vec<_> = batch.samples().collect();
    assert_eq!(s.len(), 4);
    assert!(!s[0].truncated && s[0].self_reward == Some(0.3));
    assert_eq!(s[0].verifier_reward, 1.0);
    // No EOS: truncated, so its read-out (if any) is not used.
    assert!(s[1].truncated && s[1].self_reward.is_none());
    assert_eq!(s[0].prompt_tokens, vec![1, 40, 41, 42]);

    let mut ungraded = group(9, [1.0, 0.0]);
    ungraded.samples[1].verifier_reward = None;
    let e = training_batch(&[ungraded]).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("group 9 sample 1"), "{}", e.message());

    let mut single = group(10, [1.0, 0.0]);
    single.samples.truncate(1);
    let e = training_batch(&[single]).unwrap_err();
    assert!(e.message().contains("at least 2"), "{}", e.message());
}

#[test]
fn train_steps_run_once_in_order_and_replay() {
    let scratch = Scratch::new("train");
    let mut st = state(&scratch.0);
    let batch = || training_batch(&[group(0, [1.0, 0.0]), group(1, [0.0, 1.0])]);

    let e = st.train(1, batch()).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "a gap is refused");
    assert!(e.message().contains("at step 0"), "{}", e.message());

    let first = st.train(0, batch()).unwrap();
    assert_eq!(first.step, 0);
    assert_eq!(first.policy_version, 1);
    assert_eq!(st.learner.step(), 1);
    let w1 = st.pack_weights();
    assert_eq!(w1.policy_version, 1);

    // A retried TrainStep 0 (even with another batch) returns the recorded result, no training.
    let again = st
        .train(
            0,
            training_batch(&[group(5, [0.0, 0.0]), group(6, [1.0, 1.0])]),
        )
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(st.learner.step(), 1);
    assert_eq!(
        st.pack_weights().bytes,
        w1.bytes,
        "weights unchanged by a replay"
    );

    let second = st.train(1, batch()).unwrap();
    assert_eq!(second.policy_version, 2);
    assert_ne!(
        st.pack_weights().bytes,
        w1.bytes,
        "a new step changes the weights"
    );
}

#[test]
fn checkpoints_are_pinned_to_the_step_and_idempotent() {
    let scratch = Scratch::new("ckpt");
    let mut st = state(&scratch.0);
    st.train(0, training_batch(&[group(0, [1.0, 0.0])]))
        .unwrap();
    let ask = |step| CheckpointRequest {
        step,
        cursor: Some(DataCursor {
            epoch: 0,
            position: 4,
        }),
        data_parallel: None,
    };
    let e = st.checkpoint(ask(0)).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let c = st.checkpoint(ask(1)).unwrap();
    assert_eq!((c.step, c.policy_version), (1, 1));
    let again = st.checkpoint(ask(1)).unwrap();
    assert_eq!(
        again.path, c.path,
        "a retried Checkpoint reuses the written one"
    );

    // The checkpoint restores the same learner: step, version, cursor and weights.
    let run = RunDir::open(&scratch.0).unwrap();
    let (resumed, _) = Learner::<TrainBackend>::resume(&run, &Default::default(), None).unwrap();
    assert_eq!(resumed.step(), 1);
    assert_eq!(resumed.policy_version(), 1);
    assert_eq!(resumed.data_cursor().position, 4);
    let resumed = LearnerState::new(resumed, run);
    assert_eq!(resumed.pack_weights().bytes, st.pack_weights().bytes);
}
