//! Learner benchmark (a bench binary, not a test): forward+backward tokens/s of the GRPO + LaSeR
//! gradient computation (`Learner::gradients`: scoring pass over [prompt, response] with the z_c slot,
//! loss, backward, micro-batch accumulation) and of a full `train_step` (plus global-norm clipping and
//! AdamW), for the tiny fixture config and SmolLM2-135M (when scripts/fetch_smollm2.sh has fetched it).
//!
//!   cargo bench -p laser-learner --bench train_step [-- --quick]
//!
//! Fixed batch: 8 sequences (2 groups of 4), prompt 64 tokens, response 64 tokens (EOS-terminated),
//! micro-batch 4. Tokens counted = sequences x (prompt + response). Median of several runs.
//! scripts/bench_learner_torch.py runs the same step in PyTorch on the same CPU.

use std::path::{Path, PathBuf};
use std::time::Instant;

use laser_config::{LaserConfig, LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch};
use laser_model::Transformer;

const SEQS: usize = 8;
const PROMPT: usize = 64;
const RESPONSE: usize = 64;
const MICRO_BATCH: usize = 4;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn batch(vocab: usize, eos: u32) -> TrainingBatch {
    let tok = |s: usize, t: usize| ((s * 7919 + t * 104_729 + 3) % (vocab - 3) + 3) as u32;
    let groups = (0..SEQS / 4)
        .map(|g| Group {
            prompt_id: g as u64,
            samples: (0..4)
                .map(|i| {
                    let s = g * 4 + i;
                    let mut response: Vec<u32> =
                        (0..RESPONSE - 1).map(|t| tok(s + 100, t)).collect();
                    response.push(eos);
                    Sample {
                        prompt_tokens: (0..PROMPT).map(|t| tok(g, t)).collect(),
                        old_logprobs: vec![-(vocab as f32).ln(); RESPONSE],
                        response_tokens: response,
                        verifier_reward: (i % 2) as f32,
                        self_reward: Some(0.1 * i as f32),
                        truncated: false,
                        policy_version: 0,
                    }
                })
                .collect(),
        })
        .collect();
    TrainingBatch::new(groups).expect("valid batch")
}

fn bench(name: &str, model: Transformer<TrainBackend>, reps: usize) {
    let vocab = model.config.vocab_size;
    let eos = model.config.eos_token_ids.first().copied().unwrap_or(2);
    let config = LearnerConfig {
        laser: LaserConfig {
            reasoning_warmup_steps: 0,
            self_rewarding_warmup_steps: 0,
            ..Default::default()
        },
        optim: OptimConfig {
            lr_schedule: LrSchedule::Constant {
                lr: 1e-6,
                warmup_steps: 0,
            },
            ..Default::default()
        },
        micro_batch_size: MICRO_BATCH,
        self_reward_token: (vocab - 1) as u32,
        c_ref: -20.0,
        ..Default::default()
    };
    let mut learner = Learner::new(model, None, None, config).expect("learner");
    let batch = batch(vocab, eos);
    let tokens = (SEQS * (PROMPT + RESPONSE)) as f64;
    // Warm-up (allocations, thread pool).
    let _ = learner.gradients(&batch).expect("gradients");
    let grads = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                let (g, loss) = learner.gradients(&batch).expect("gradients");
                std::hint::black_box((g, loss));
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let steps = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                let m = learner.train_step(&batch).expect("step");
                assert!(m.applied);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    println!(
        "| {name} | fwd+bwd (gradients) | {:.0} tok/s | {:.3} s |",
        tokens / grads,
        grads
    );
    println!(
        "| {name} | full train_step (fwd+bwd+clip+AdamW) | {:.0} tok/s | {:.3} s |",
        tokens / steps,
        steps
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 2 } else { 5 };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!(
        "batch: {SEQS} sequences x ({PROMPT} prompt + {RESPONSE} response) tokens, micro-batch {MICRO_BATCH}, \
         threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| model | what | throughput | median time |");
    println!("|---|---|---|---|");
    let device = Default::default();
    let tiny = laser_model::pretrained::load::<TrainBackend>(
        &root.join("model/tests/fixtures/tiny-qwen2"),
        &device,
    )
    .expect("tiny-qwen2 fixture")
    .model;
    bench("tiny-qwen2 (2 layers, h 64, vocab 512)", tiny, reps);
    let smol = std::env::var_os("SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/laser/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if smol.exists() {
        let model = laser_model::pretrained::load::<TrainBackend>(&smol, &device)
            .expect("SmolLM2 GGUF")
            .model;
        bench(
            "SmolLM2-135M (f32, dequantised from Q4_1)",
            model,
            reps.min(3),
        );
    } else {
        eprintln!(
            "SmolLM2 not found at {} (scripts/fetch_smollm2.sh): skipped",
            smol.display()
        );
    }
}
