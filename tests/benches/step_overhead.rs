//! Runtime overhead per RL step (issue 5, must-show 7b): the same steps run
//! (a) on a local cluster — coordinator, learner, verifiers and actors as separate processes talking
//!     gRPC on loopback — and
//! (b) in one process, calling the library functions the services wrap, in the same order:
//!     `laser_actor::service::rollout_group` per prompt group, `Grader::grade_batch` per group,
//!     `training_batch` + `Learner::train_step`, and the weight apply (`to_weights` →
//!     `Transformer::from_weights`, what an actor does after receiving a version).
//!
//! Both sides use the same tiny model (laser_model::tiny, seed 7), the same cluster.toml (prompts
//! from the seeded task source, group size, response length, sampling seed), so they generate the
//! same tokens and train the same batches: the bench checks that by comparing each step's mean
//! response length and loss.
//!
//! ```sh
//! cargo bench -p laser-integration-tests --bench step_overhead --profile dev
//! ```
//! Environment: `STEP_BENCH_STEPS` (default 10), `STEP_BENCH_LAYOUTS` (default `1x1,2x2`: actors x
//! verifiers of the local cluster), `STEP_BENCH_BATCH` (prompts per step, 8), `STEP_BENCH_GROUP`
//! (samples per prompt, 4), `STEP_BENCH_TOKENS` (max response tokens, 48).

use std::path::Path;
use std::time::{Duration, Instant};

use laser_actor::service::{ActorConfig, Policy, rollout_group};
use laser_config::ClusterConfig;
use laser_coordinator::data::{PromptSource, step_groups};
use laser_coordinator::metrics::rollout_stats;
use laser_integration_tests::{LocalRun, cluster_toml, temp_dir, tiny_model_dir};
use laser_learner::service::training_batch;
use laser_learner::{Learner, TrainBackend};
use laser_model::Transformer;
use laser_model::backend::Cpu;
use laser_proto::v1::SamplingConfig;
use laser_verifier::{Grader, GraderConfig};

/// Seconds of one step, split like the metrics row.
#[derive(Debug, Clone, Copy, Default)]
struct Split {
    generate: f64,
    verify: f64,
    train: f64,
    broadcast: f64,
    step: f64,
}

impl Split {
    fn add(&mut self, o: &Split) {
        self.generate += o.generate;
        self.verify += o.verify;
        self.train += o.train;
        self.broadcast += o.broadcast;
        self.step += o.step;
    }
    fn scale(mut self, k: f64) -> Self {
        self.generate *= k;
        self.verify *= k;
        self.train *= k;
        self.broadcast *= k;
        self.step *= k;
        self
    }
}

/// What a run did per step, to check both sides did the same work.
#[derive(Debug, Clone, Copy)]
struct Work {
    mean_response_len: f64,
    loss: f64,
}

struct Measured {
    label: String,
    /// Per step.
    splits: Vec<Split>,
    work: Vec<Work>,
    /// Start to finish, including start-up (model load; for the cluster: processes, registration,
    /// the final checkpoint and shutdown).
    wall: f64,
}

impl Measured {
    /// Mean over the steps after the first (steady state; step 0 includes first-touch costs).
    fn steady(&self) -> Split {
        let s = &self.splits[1.min(self.splits.len() - 1)..];
        let mut total = Split::default();
        for x in s {
            total.add(x);
        }
        total.scale(1.0 / s.len() as f64)
    }
}

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn overrides(batch: u64, group: u64, tokens: u64, steps: u64) -> Vec<(String, String)> {
    vec![
        ("LASER__ALGORITHM__BATCH_PROMPTS".into(), batch.to_string()),
        ("LASER__ALGORITHM__GROUP_SIZE".into(), group.to_string()),
        (
            "LASER__ALGORITHM__MAX_RESPONSE_TOKENS".into(),
            tokens.to_string(),
        ),
        // One checkpoint, after the last step: per-step times exclude it on both sides.
        ("LASER__RUN__CHECKPOINT_EVERY".into(), steps.to_string()),
        // No held-out evaluation (the job's, around the RL steps): only the steps are compared.
        ("LASER__EVAL__ENABLED".into(), "false".into()),
    ]
}

/// The steps in one process.
fn in_process(cfg_path: &Path, env: &[(String, String)], steps: u64) -> Measured {
    let t_wall = Instant::now();
    let cfg = ClusterConfig::load_with_env(cfg_path, env.iter().cloned()).expect("cluster.toml");
    let model_path = cfg.model.path.clone().expect("model.path");
    let a = &cfg.algorithm;

    // Actor side (laser_actor::service, as `actor serve` sets it up).
    let p = laser_actor::load_cpu(&model_path).expect("actor model");
    let tokenizer = p.tokenizer.clone().expect("tokenizer");
    let z_c = laser_model::self_reward::resolve_token(&tokenizer, None).expect("z_c");
    let c_ref = a.c_ref.expect("c_ref is configured");
    let actor_cfg = ActorConfig {
        chat: cfg.model.chat,
        self_reward: laser_model::SelfRewardConfig {
            token_id: z_c,
            beta_v: a.beta_v as f32,
            c_ref: c_ref as f32,
        },
        eos_token_ids: p.eos_token_ids(),
        max_prompt_tokens: a.max_prompt_tokens as usize,
        weights_idle: Duration::from_secs(60),
    };
    let model_config = p.model.config.clone();
    let mut policy = Policy {
        model: p.model,
        version: 0,
        epoch: 0,
    };

    // Verifier side (`verifier serve` defaults).
    let grader = Grader::new(GraderConfig::default());

    // Learner side (`learner serve` without a checkpoint).
    let lp = laser_model::pretrained::load::<TrainBackend>(&model_path, &Default::default())
        .expect("learner model");
    let mut learner = Learner::new(lp.model, lp.tokenizer, None, cfg.learner_config(z_c, c_ref))
        .expect("learner");

    let source = PromptSource::from_config(&cfg).expect("prompt source");
    let sampling = SamplingConfig {
        n: a.group_size,
        temperature: a.temperature as f32,
        top_p: a.top_p as f32,
        max_response_tokens: a.max_response_tokens,
        seed: cfg.run.seed,
    };
    let mut splits = Vec::new();
    let mut work = Vec::new();
    for step in 0..steps {
        let prompts = step_groups(&source, &cfg, step);
        let t0 = Instant::now();
        let mut groups = Vec::with_capacity(prompts.len());
        for g in &prompts {
            let (rg, _tokens) =
                rollout_group(&policy, &tokenizer, &actor_cfg, g, &sampling).expect("generate");
            groups.push(rg);
        }
        let t_gen = t0.elapsed().as_secs_f64();

        let t = Instant::now();
        for (g, prompt) in groups.iter_mut().zip(&prompts) {
            let pairs: Vec<(&str, &str)> = g
                .samples
                .iter()
                .map(|s| (prompt.gold.as_str(), s.text.as_str()))
                .collect();
            let grades = grader.grade_batch(&pairs);
            for (s, r) in g.samples.iter_mut().zip(grades) {
                s.verifier_reward = Some(f32::from(r.reward));
                s.extracted_answer = r.extracted.unwrap_or_default();
            }
        }
        let t_ver = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let batch = training_batch(&groups).expect("training batch");
        let m = learner.train_step(&batch).expect("train step");
        let t_train = t.elapsed().as_secs_f64();

        let t = Instant::now();
        let weights = learner.model().to_weights();
        let model = Transformer::<Cpu>::from_weights(&model_config, weights, &Default::default())
            .expect("apply weights");
        policy = Policy {
            model,
            version: learner.policy_version(),
            epoch: 0,
        };
        let t_bc = t.elapsed().as_secs_f64();

        splits.push(Split {
            generate: t_gen,
            verify: t_ver,
            train: t_train,
            broadcast: t_bc,
            step: t0.elapsed().as_secs_f64(),
        });
        work.push(Work {
            mean_response_len: rollout_stats(&groups, step).mean_response_len,
            loss: m.total_loss,
        });
    }
    Measured {
        label: "one process".into(),
        splits,
        work,
        wall: t_wall.elapsed().as_secs_f64(),
    }
}

/// The steps on a local cluster of processes.
fn cluster(actors: u64, verifiers: u64, env: &[(String, String)], steps: u64) -> Measured {
    let mut env = env.to_vec();
    env.push(("LASER__CLUSTER__ACTORS".into(), actors.to_string()));
    env.push(("LASER__CLUSTER__VERIFIERS".into(), verifiers.to_string()));
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Build the role binaries first: the wall time counts start-up, not compilation.
    for b in ["coordinator", "learner", "actor", "verifier", "laserctl"] {
        laser_integration_tests::bin(b);
    }
    let t_wall = Instant::now();
    let mut run = LocalRun::start("step-bench", steps, &env_ref);
    run.finish(Duration::from_secs(1800));
    let wall = t_wall.elapsed().as_secs_f64();
    let rows = run.metrics();
    assert_eq!(rows.len() as u64, steps, "one metrics row per step");
    let f = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    Measured {
        label: format!("cluster {actors} actor(s), {verifiers} verifier(s)"),
        splits: rows
            .iter()
            .map(|r| Split {
                generate: f(r, "generate_seconds"),
                verify: f(r, "verify_seconds"),
                train: f(r, "train_seconds"),
                broadcast: f(r, "broadcast_seconds"),
                step: f(r, "step_seconds"),
            })
            .collect(),
        work: rows
            .iter()
            .map(|r| Work {
                mean_response_len: f(r, "mean_response_len"),
                loss: f(r, "loss"),
            })
            .collect(),
        wall,
    }
}

fn main() {
    let steps = env_u64("STEP_BENCH_STEPS", 10).max(2);
    let batch = env_u64("STEP_BENCH_BATCH", 8);
    let group = env_u64("STEP_BENCH_GROUP", 4);
    let tokens = env_u64("STEP_BENCH_TOKENS", 48);
    let layouts: Vec<(u64, u64)> = std::env::var("STEP_BENCH_LAYOUTS")
        .unwrap_or_else(|_| "1x1,2x2".into())
        .split(',')
        .filter_map(|l| {
            let (a, v) = l.trim().split_once('x')?;
            Some((a.parse().ok()?, v.parse().ok()?))
        })
        .collect();
    let env = overrides(batch, group, tokens, steps);
    println!(
        "step overhead: {steps} steps of {batch} prompts x {group} samples, <= {tokens} response tokens, tiny model (hidden 64, 2 layers)"
    );

    // The in-process side's own copy of the model and cluster.toml (same seed, same content).
    let dir = temp_dir("step-bench-inproc");
    let model = tiny_model_dir(&dir);
    let cfg_path = cluster_toml(&dir, &model, &dir.join("run"), steps);

    // Interleave so that load changes on the shared machine hit both sides alike.
    let mut results = vec![in_process(&cfg_path, &env, steps)];
    for (a, v) in &layouts {
        results.push(cluster(*a, *v, &env, steps));
        results.push(in_process(&cfg_path, &env, steps));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let single: Vec<&Measured> = results
        .iter()
        .filter(|m| m.label == "one process")
        .collect();
    let mut base = Split::default();
    for m in &single {
        base.add(&m.steady());
    }
    let base = base.scale(1.0 / single.len() as f64);

    // Same work: every run's per-step mean response length and loss against the first run's.
    let reference = &results[0].work;
    for m in &results {
        for (s, (w, r)) in m.work.iter().zip(reference).enumerate() {
            let same = (w.mean_response_len - r.mean_response_len).abs() < 1e-9
                && (w.loss - r.loss).abs() <= 1e-4 * r.loss.abs().max(1.0);
            if !same {
                println!(
                    "note: {} step {s} differs from the first run: mean response len {:.3} vs {:.3}, loss {:.6} vs {:.6}",
                    m.label, w.mean_response_len, r.mean_response_len, w.loss, r.loss
                );
            }
        }
    }

    println!();
    println!(
        "per step, mean of steps 1..{} (seconds; step 0 excluded as warm-up)",
        steps - 1
    );
    println!(
        "| run | generate | verify | train | broadcast / apply | step | step / one-process | wall (all {steps} steps + start-up) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for m in &results {
        let s = m.steady();
        println!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2}x | {:.1} |",
            m.label,
            s.generate,
            s.verify,
            s.train,
            s.broadcast,
            s.step,
            s.step / base.step,
            m.wall
        );
    }
    println!(
        "| one process (mean of {}) | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | 1.00x | |",
        single.len(),
        base.generate,
        base.verify,
        base.train,
        base.broadcast,
        base.step
    );
    println!();
    for m in results.iter().filter(|m| m.label != "one process") {
        let s = m.steady();
        println!(
            "{}: +{:.3} s per step over one process ({:+.1}%)",
            m.label,
            s.step - base.step,
            100.0 * (s.step / base.step - 1.0)
        );
    }
}
