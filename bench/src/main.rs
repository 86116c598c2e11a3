//! Our side of the side-by-side benchmark (`bench/run.sh`, issue 8). A long-lived worker: the
//! driver (`bench/run.py`) sends one JSON command per line on stdin and reads one JSON result per
//! line on stdout, alternating with the Python reference worker (`bench/reference.py`), which
//! answers the same commands with transformers / TRL / PyTorch. Models load once, on first use,
//! so a repetition times only the work. Logs go to stderr.
//!
//! Just over 800 lines: one match arm per benchmark command, each short, kept in one table.
//!
//! ```sh
//! laser-bench write-tiny DIR                      # the tiny default model as a HF directory
//! laser-bench serve --tiny DIR --smollm2 FILE.gguf
//! ```
//!
//! Commands (`op`): `hello`, `tasks`, `generate` (a), `rl_step` (b), `readout` (c), `fwdbwd` (d).
//! Every token count and shape comes from the command, so both workers do the same work.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use burn::module::AutodiffModule;
use laser_config::{LaserConfig, LearnerConfig, LrSchedule, OptimConfig};
use laser_learner::{Group, Learner, Sample, TrainBackend, TrainingBatch};
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::tiny::{self, TinyDims};
use laser_model::{
    FinishReason, GenerationRequest, SamplingParams, SelfRewardConfig, Tokenizer, Transformer,
    generate, pretrained,
};
use laser_verifier::tasks::synthetic::{SyntheticConfig, SyntheticTasks};
use laser_verifier::{Grader, GraderConfig};
use serde_json::{Value, json};

/// The paper's prompt suffix, appended to every synthetic question.
const SUFFIX: &str = " Please reason step by step, and put your final answer within \\boxed{}.";

struct Loaded {
    /// Inference copy for `generate`/`readout` (a).
    model: Transformer<Cpu>,
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    /// z_c: `<|verify|>` for the tiny model, the last vocabulary id otherwise.
    z_c: u32,
    /// The learner of `rl_step` (b): it trains, so its weights move from rep to rep (as TRL's do).
    rl: Option<Learner<TrainBackend>>,
    /// The learner of `fwdbwd` (d): gradients only, never applied.
    fwdbwd: Option<Learner<TrainBackend>>,
    /// EOS set that makes free sampling stop after ~`target_len` tokens, per target (c).
    readout_eos: HashMap<usize, Vec<u32>>,
}

struct Worker {
    paths: HashMap<String, PathBuf>,
    models: HashMap<String, Loaded>,
    grader: Grader,
}

fn learner_config(z_c: u32, micro_batch_size: usize) -> LearnerConfig {
    LearnerConfig {
        laser: LaserConfig {
            // Full LaSeR from the first step: MSE on r_s and advantage mixing both on.
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
        micro_batch_size,
        self_reward_token: z_c,
        c_ref: -20.0,
        ..Default::default()
    }
}

fn synthetic_ids(batch: usize, len: usize, vocab: usize, salt: usize) -> Vec<Vec<u32>> {
    // Ids 0..4 are special tokens in the tiny vocabulary; keep clear of them.
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|t| (((b + salt) * 7919 + t * 104_729 + 3) % (vocab - 4) + 4) as u32)
                .collect()
        })
        .collect()
}

fn get<'a>(cmd: &'a Value, key: &str) -> Result<&'a Value> {
    cmd.get(key).ok_or_else(|| anyhow!("command lacks `{key}`"))
}

fn get_usize(cmd: &Value, key: &str) -> Result<usize> {
    get(cmd, key)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| anyhow!("`{key}` must be a non-negative integer"))
}

impl Worker {
    fn model(&mut self, name: &str) -> Result<&mut Loaded> {
        if !self.models.contains_key(name) {
            let path = self
                .paths
                .get(name)
                .ok_or_else(|| anyhow!("unknown model {name:?} (start with --{name} PATH)"))?;
            let t = Instant::now();
            let device = CpuDevice::default();
            let p = pretrained::load::<Cpu>(path, &device)
                .with_context(|| format!("loading {}", path.display()))?;
            let eos = p.eos_token_ids();
            let tokenizer = p
                .tokenizer
                .ok_or_else(|| anyhow!("{} has no tokenizer", path.display()))?;
            let z_c = tokenizer
                .token_to_id(tiny::VERIFY_TOKEN)
                .unwrap_or(p.model.config.vocab_size as u32 - 1);
            eprintln!(
                "laser-bench: loaded {name} from {} in {:.1} s",
                path.display(),
                t.elapsed().as_secs_f64()
            );
            self.models.insert(
                name.to_string(),
                Loaded {
                    // An actor's policy: with the decode weights (as `laser-actor` installs it).
                    model: p.model.with_decode_weights(),
                    tokenizer,
                    eos,
                    z_c,
                    rl: None,
                    fwdbwd: None,
                    readout_eos: HashMap::new(),
                },
            );
        }
        Ok(self.models.get_mut(name).expect("inserted above"))
    }

    fn handle(&mut self, cmd: &Value) -> Result<Value> {
        let op = get(cmd, "op")?.as_str().unwrap_or_default();
        match op {
            "hello" => Ok(json!({
                "impl": "laser (burn-flex)",
                "threads": std::thread::available_parallelism().map_or(1, |n| n.get()),
            })),
            "tasks" => {
                let count = get_usize(cmd, "count")?;
                let seed = get_usize(cmd, "seed")? as u64;
                let src = SyntheticTasks::new(SyntheticConfig::default(), seed)?;
                let tasks: Vec<Value> = (0..count as u64)
                    .map(|i| {
                        let t = src.task(i);
                        json!({"prompt": format!("{}{SUFFIX}", t.question), "gold": t.gold})
                    })
                    .collect();
                Ok(json!({ "tasks": tasks }))
            }
            "load" => {
                let m = self.model(get(cmd, "model")?.as_str().unwrap_or_default())?;
                Ok(
                    json!({"vocab": m.model.config.vocab_size, "layers": m.model.config.num_hidden_layers}),
                )
            }
            "generate" => self.generate(cmd),
            "rl_step" => self.rl_step(cmd),
            "readout" => self.readout(cmd),
            "fwdbwd" => self.fwdbwd(cmd),
            other => bail!("unknown op {other:?}"),
        }
    }

    /// (a) Fixed-length sampling: `batch` prompts of `prompt_len` ids, `new_tokens` each, no EOS.
    fn generate(&mut self, cmd: &Value) -> Result<Value> {
        let name = get(cmd, "model")?.as_str().unwrap_or_default().to_string();
        let batch = get_usize(cmd, "batch")?;
        let prompt_len = get_usize(cmd, "prompt_len")?;
        let new_tokens = get_usize(cmd, "new_tokens")?;
        let seed = get_usize(cmd, "seed")? as u64;
        let m = self.model(&name)?;
        let req = GenerationRequest {
            prompts: synthetic_ids(batch, prompt_len, m.model.config.vocab_size, 0),
            n: 1,
            params: SamplingParams {
                temperature: 1.0,
                max_new_tokens: new_tokens,
                seed,
                ..SamplingParams::default()
            },
            eos_token_ids: vec![],
            self_reward: None,
        };
        let t = Instant::now();
        let (samples, stats) = generate(&m.model, None, &req)?;
        let seconds = t.elapsed().as_secs_f64();
        let tokens: usize = samples.iter().map(|s| s.tokens.len()).sum();
        Ok(json!({
            "seconds": seconds,
            "tokens": tokens,
            "prefill_seconds": stats.prefill_seconds,
        }))
    }

    /// (b) One RL step on 8 prompts x n samples: rollout (with the self-reward read-out armed),
    /// grading by laser-verifier, then one GRPO + LaSeR update.
    fn rl_step(&mut self, cmd: &Value) -> Result<Value> {
        let name = get(cmd, "model")?.as_str().unwrap_or_default().to_string();
        let n = get_usize(cmd, "n")?;
        let new_tokens = get_usize(cmd, "new_tokens")?;
        let micro = get_usize(cmd, "micro_batch")?;
        let seed = get_usize(cmd, "seed")? as u64;
        let fixed_length = get(cmd, "fixed_length")?.as_bool().unwrap_or(true);
        let tasks = get(cmd, "tasks")?
            .as_array()
            .ok_or_else(|| anyhow!("`tasks` must be a list"))?;
        let prompts: Vec<String> = tasks
            .iter()
            .map(|t| t["prompt"].as_str().unwrap_or_default().to_string())
            .collect();
        let golds: Vec<String> = tasks
            .iter()
            .map(|t| t["gold"].as_str().unwrap_or_default().to_string())
            .collect();
        self.model(&name)?;
        let grader = &self.grader;
        let m = self.models.get_mut(&name).expect("loaded above");
        if m.rl.is_none() {
            let model = m.model.clone();
            let device = Default::default();
            let train_model: Transformer<TrainBackend> =
                Transformer::from_weights(&model.config, model.to_weights(), &device)?;
            m.rl = Some(Learner::new(
                train_model,
                None,
                None,
                learner_config(m.z_c, micro),
            )?);
        }
        let learner = m.rl.as_mut().expect("set above");
        let sr = SelfRewardConfig {
            token_id: m.z_c,
            beta_v: 0.1,
            c_ref: -20.0,
        };

        let started = Instant::now();
        let prompt_ids = prompts
            .iter()
            .map(|p| m.tokenizer.encode(p, true))
            .collect::<laser_model::Result<Vec<_>>>()?;
        // The actor's copy of the policy: the learner's weights, without autodiff, plus the decode
        // weights an actor builds when it installs a policy version (timed: part of the step).
        let policy = learner.model().valid().with_decode_weights();
        let req = GenerationRequest {
            prompts: prompt_ids.clone(),
            n,
            params: SamplingParams {
                temperature: 1.0,
                max_new_tokens: new_tokens,
                seed,
                ..SamplingParams::default()
            },
            eos_token_ids: if fixed_length { vec![] } else { m.eos.clone() },
            self_reward: Some(sr),
        };
        let (samples, _) = generate(&policy, Some(&m.tokenizer), &req)?;
        let generated = Instant::now();
        let pairs: Vec<(&str, &str)> = samples
            .iter()
            .map(|s| (golds[s.prompt_index].as_str(), s.text.as_str()))
            .collect();
        let grades = grader.grade_batch(&pairs);
        let graded = Instant::now();
        let mut groups: Vec<Group> = (0..prompt_ids.len())
            .map(|p| Group {
                prompt_id: p as u64,
                samples: Vec::with_capacity(n),
            })
            .collect();
        let mut response_tokens = 0;
        for (s, g) in samples.into_iter().zip(&grades) {
            response_tokens += s.tokens.len();
            let truncated = s.finish_reason != FinishReason::Eos;
            groups[s.prompt_index].samples.push(Sample {
                prompt_tokens: prompt_ids[s.prompt_index].clone(),
                response_tokens: s.tokens,
                old_logprobs: s.logprobs,
                verifier_reward: g.reward as f32,
                self_reward: if truncated {
                    None
                } else {
                    s.self_reward.map(|r| r.score)
                },
                truncated,
                policy_version: learner.policy_version(),
            });
        }
        let batch = TrainingBatch::new(groups)?;
        let metrics = learner.train_step(&batch)?;
        let done = Instant::now();
        Ok(json!({
            "seconds": (done - started).as_secs_f64(),
            "generate_s": (generated - started).as_secs_f64(),
            "reward_s": (graded - generated).as_secs_f64(),
            "train_s": (done - graded).as_secs_f64(),
            "prompt_tokens": prompt_ids.iter().map(Vec::len).collect::<Vec<_>>(),
            "response_tokens": response_tokens,
            "mean_reward": grades.iter().map(|g| g.reward as f64).sum::<f64>() / grades.len() as f64,
            "loss": metrics.total_loss,
        }))
    }

    /// (c) The read-out's share of rollout time on GRPO-shaped work (8 prompts x 8 samples):
    /// the same rollout (same seed, so the same tokens) with and without the read-out, back to
    /// back, plus the attributed upper bound from `GenerationStats::readout_seconds`.
    fn readout(&mut self, cmd: &Value) -> Result<Value> {
        let name = get(cmd, "model")?.as_str().unwrap_or_default().to_string();
        let new_tokens = get_usize(cmd, "new_tokens")?;
        let target_len = get_usize(cmd, "target_len")?;
        let seed = get_usize(cmd, "seed")? as u64;
        let m = self.model(&name)?;
        let vocab = m.model.config.vocab_size;
        let mut req = GenerationRequest {
            prompts: synthetic_ids(8, 32, vocab, 11),
            n: 8,
            params: SamplingParams {
                temperature: 1.0,
                max_new_tokens: new_tokens,
                seed: 1000,
                ..SamplingParams::default()
            },
            eos_token_ids: vec![],
            self_reward: None,
        };
        if !m.readout_eos.contains_key(&target_len) {
            // An EOS set that ends free sampling after ~target_len tokens on average: the least
            // frequent sampled tokens whose total frequency is ~1/target_len of all tokens.
            let (free, _) = generate(&m.model, None, &req)?;
            let mut counts = HashMap::<u32, usize>::new();
            for s in &free {
                for &t in &s.tokens {
                    *counts.entry(t).or_default() += 1;
                }
            }
            let total: usize = counts.values().sum();
            let mut by_count: Vec<(u32, usize)> = counts.into_iter().collect();
            by_count.sort_by_key(|&(t, c)| (c, t));
            let mut eos = vec![];
            let mut acc = 0;
            for (t, c) in by_count {
                if acc * target_len >= total {
                    break;
                }
                acc += c;
                eos.push(t);
            }
            m.readout_eos.insert(target_len, eos);
        }
        req.eos_token_ids = m.readout_eos[&target_len].clone();
        req.params.seed = seed;
        let t = Instant::now();
        let (_, plain_stats) = generate(&m.model, None, &req)?;
        let plain = t.elapsed().as_secs_f64();
        req.self_reward = Some(SelfRewardConfig {
            token_id: m.z_c,
            beta_v: 0.1,
            c_ref: -20.0,
        });
        let t = Instant::now();
        let (samples, stats) = generate(&m.model, None, &req)?;
        let with = t.elapsed().as_secs_f64();
        let eos_terminated = samples
            .iter()
            .filter(|s| s.finish_reason == FinishReason::Eos)
            .count();
        let generated: usize = samples.iter().map(|s| s.tokens.len()).sum();
        Ok(json!({
            "plain_s": plain,
            "with_s": with,
            "attributed_s": stats.readout_seconds,
            "attributed_total_s": stats.total_seconds,
            "readout_rows": stats.readout_rows,
            "decode_rows": stats.decode_rows,
            "plain_decode_rows": plain_stats.decode_rows,
            "eos_terminated": eos_terminated,
            "samples": samples.len(),
            "mean_len": generated as f64 / samples.len() as f64,
        }))
    }

    /// (d) Forward+backward of the GRPO + LaSeR loss (`Learner::gradients`), the shape of
    /// learner/benches/train_step.rs and scripts/bench_learner_torch.py.
    fn fwdbwd(&mut self, cmd: &Value) -> Result<Value> {
        let name = get(cmd, "model")?.as_str().unwrap_or_default().to_string();
        let seqs = get_usize(cmd, "seqs")?;
        let group = get_usize(cmd, "group")?;
        let prompt = get_usize(cmd, "prompt")?;
        let response = get_usize(cmd, "response")?;
        let micro = get_usize(cmd, "micro_batch")?;
        let m = self.model(&name)?;
        let vocab = m.model.config.vocab_size;
        let eos = m.model.config.eos_token_ids.first().copied().unwrap_or(2);
        if m.fwdbwd.is_none() {
            let device = Default::default();
            let train_model: Transformer<TrainBackend> =
                Transformer::from_weights(&m.model.config, m.model.to_weights(), &device)?;
            // z_c = vocab - 1, as scripts/bench_learner_torch.py.
            m.fwdbwd = Some(Learner::new(
                train_model,
                None,
                None,
                learner_config(vocab as u32 - 1, micro),
            )?);
        }
        let learner = m.fwdbwd.as_ref().expect("set above");
        // The batch of scripts/bench_learner_torch.py::make_batch, token for token.
        let tok = |s: usize, t: usize| ((s * 7919 + t * 104_729 + 3) % (vocab - 3) + 3) as u32;
        let groups = (0..seqs / group)
            .map(|g| Group {
                prompt_id: g as u64,
                samples: (0..group)
                    .map(|i| {
                        let s = g * group + i;
                        let mut resp: Vec<u32> =
                            (0..response - 1).map(|t| tok(s + 100, t)).collect();
                        resp.push(eos);
                        Sample {
                            prompt_tokens: (0..prompt).map(|t| tok(g, t)).collect(),
                            old_logprobs: vec![-(vocab as f32).ln(); response],
                            response_tokens: resp,
                            verifier_reward: (i % 2) as f32,
                            self_reward: Some(0.1 * i as f32),
                            truncated: false,
                            policy_version: 0,
                        }
                    })
                    .collect(),
            })
            .collect();
        let batch = TrainingBatch::new(groups)?;
        let t = Instant::now();
        let out = learner.gradients(&batch)?;
        std::hint::black_box(&out);
        let seconds = t.elapsed().as_secs_f64();
        Ok(json!({"seconds": seconds, "tokens": seqs * (prompt + response)}))
    }
}

fn serve(args: &[String]) -> Result<()> {
    let mut paths = HashMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| anyhow!("unexpected argument {a:?}"))?;
        let path = it.next().ok_or_else(|| anyhow!("{a} needs a path"))?;
        paths.insert(name.to_string(), PathBuf::from(path));
    }
    let mut worker = Worker {
        paths,
        models: HashMap::new(),
        grader: Grader::new(GraderConfig::default()),
    };
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line)
            .map_err(anyhow::Error::from)
            .and_then(|cmd| worker.handle(&cmd))
        {
            Ok(v) => json!({"ok": true, "result": v}),
            Err(e) => json!({"ok": false, "error": format!("{e:#}")}),
        };
        writeln!(stdout, "{reply}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// Where one decode step's time goes, op by op (burn-level timing, medians of 5): the linear
/// layers at the decode shape, the LM head, one whole `hidden_states` step, the logits' copy to the
/// host and sampling. Used to profile the generation path (issue 8).
fn profile_decode(args: &[String]) -> Result<()> {
    use burn::tensor::{Distribution, Tensor};
    let path = args
        .first()
        .ok_or_else(|| anyhow!("profile-decode needs a model path"))?;
    let batch: usize = args.get(1).map_or(Ok(8), |b| b.parse())?;
    let device = CpuDevice::default();
    let p = pretrained::load::<Cpu>(&PathBuf::from(path), &device)?;
    // As an actor runs it (small layer weights take their `[in, out]` copies above 4 rows).
    let t = Instant::now();
    let model = p.model.with_decode_weights();
    let decode_weights_ms = t.elapsed().as_secs_f64() * 1e3;
    let c = model.config.clone();
    let time = |f: &mut dyn FnMut()| {
        let mut xs: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        xs.sort_by(f64::total_cmp);
        xs[2]
    };
    let x = Tensor::<Cpu, 2>::random([batch, c.hidden_size], Distribution::Default, &device);
    let layer = &model.layers[0];
    let a = &layer.self_attn;
    let mut report = vec![(
        "decode weights ([in, out] copies of small weights, once per policy version)".to_string(),
        decode_weights_ms,
    )];
    for (name, lin) in [
        ("q_proj", &a.q_proj),
        ("k_proj", &a.k_proj),
        ("o_proj", &a.o_proj),
        ("gate_proj", &layer.mlp.gate_proj),
    ] {
        let ms = time(&mut || {
            let y = lin.forward(x.clone());
            std::hint::black_box(y.into_data());
        });
        report.push((format!("linear {name} {:?}", lin.weight.dims()), ms));
    }
    // The same products with the weight materialised as [in, out] (no transpose at call time).
    for (name, lin) in [("gate_proj", &layer.mlp.gate_proj), ("q_proj", &a.q_proj)] {
        let wt: Tensor<Cpu, 2> =
            Tensor::from_data(lin.weight.val().transpose().into_data(), &device);
        let ms = time(&mut || {
            std::hint::black_box(x.clone().matmul(wt.clone()).into_data());
        });
        report.push((format!("linear {name}, weight stored [in, out]"), ms));
    }
    {
        let wt: Tensor<Cpu, 2> =
            Tensor::from_data(model.embed_tokens.val().transpose().into_data(), &device);
        let ms = time(&mut || {
            std::hint::black_box(x.clone().matmul(wt.clone()).into_data());
        });
        report.push(("lm head, weight stored [in, out]".into(), ms));
    }
    {
        let (nkv, groups, hd, keys) = (
            c.num_key_value_heads,
            c.num_attention_heads / c.num_key_value_heads,
            c.head_dim,
            65,
        );
        let q = Tensor::<Cpu, 4>::random([batch, nkv, groups, hd], Distribution::Default, &device);
        let k = Tensor::<Cpu, 4>::random([batch, nkv, keys, hd], Distribution::Default, &device);
        let ms = time(&mut || {
            let s = q.clone().matmul(k.clone().swap_dims(2, 3));
            let o = burn::tensor::activation::softmax(s, 3).matmul(k.clone());
            std::hint::black_box(o.into_data());
        });
        report.push(("attention core, one layer (QK^T, softmax, PV)".into(), ms));
        // The fused decode kernel on the same work (what `Attention::forward` takes on burn-flex).
        let nh = c.num_attention_heads;
        let q1 = Tensor::<Cpu, 4>::random([batch, 1, nh, hd], Distribution::Default, &device);
        let mask = Tensor::<Cpu, 4>::from_data(
            burn::tensor::TensorData::new(vec![0.0f32; batch * nh * keys], [batch, nh, 1, keys]),
            &device,
        );
        let scale = 1.0 / (hd as f32).sqrt();
        if laser_model::kernels::bench_api::decode_attention(&q1, &k, &k, &mask, scale).is_some() {
            let ms = time(&mut || {
                let o =
                    laser_model::kernels::bench_api::decode_attention(&q1, &k, &k, &mask, scale);
                std::hint::black_box(o.map(|o| o.into_data()));
            });
            report.push(("attention core, fused decode kernel".into(), ms));
        }
        let r = Tensor::<Cpu, 2>::random([hd, hd], Distribution::Default, &device);
        let xq = Tensor::<Cpu, 2>::random(
            [batch * c.num_attention_heads, hd],
            Distribution::Default,
            &device,
        );
        let ms = time(&mut || {
            std::hint::black_box(xq.clone().matmul(r.clone()).into_data());
        });
        report.push(("rope rotate matmul (q), one layer".into(), ms));
    }
    let xf = Tensor::<Cpu, 2>::random([batch, c.intermediate_size], Distribution::Default, &device);
    let ms = time(&mut || {
        std::hint::black_box(layer.mlp.down_proj.forward(xf.clone()).into_data());
    });
    report.push(("linear down_proj".into(), ms));
    let ms = time(&mut || {
        std::hint::black_box(model.logits(x.clone()).into_data());
    });
    report.push(("lm head (logits, to host)".into(), ms));
    let x3 = x.clone().reshape([batch, 1, c.hidden_size]);
    let ms = time(&mut || {
        std::hint::black_box(layer.mlp.forward(x3.clone()).into_data());
    });
    report.push(("mlp (one layer)".into(), ms));
    let ms = time(&mut || {
        std::hint::black_box(layer.input_layernorm.forward(x3.clone()).into_data());
    });
    report.push(("rmsnorm (one)".into(), ms));
    // A whole decode step at 64 cached columns.
    let prompts = synthetic_ids(batch, 64, c.vocab_size, 0);
    let fb = laser_model::transformer::ForwardBatch {
        batch,
        seq: 64,
        tokens: prompts.concat(),
        positions: (0..batch).flat_map(|_| 0..64).collect(),
        left_pad: vec![0; batch],
    };
    let extra: usize = std::env::var("PROFILE_CACHE_EXTRA")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let mut cache = model.new_cache(batch, 64 + extra);
    let _ = model.hidden_states(&fb, Some(&mut cache)).into_data();
    let mut pos = 64;
    let ms = time(&mut || {
        let step = laser_model::transformer::ForwardBatch {
            batch,
            seq: 1,
            tokens: vec![5; batch],
            positions: vec![pos; batch],
            left_pad: vec![0; batch],
        };
        pos += 1;
        let h = model.hidden_states(&step, Some(&mut cache));
        std::hint::black_box(h.into_data());
    });
    report.push(("hidden_states, one decode step (all layers)".into(), ms));
    let logits: Vec<f32> = model
        .logits(x.clone())
        .into_data()
        .convert::<f32>()
        .into_vec()
        .map_err(|e| anyhow!("{e:?}"))?;
    let params = SamplingParams::default();
    let mut rng = laser_model::sampling::sample_rng(0, 0);
    let ms = time(&mut || {
        for row in logits.chunks(c.vocab_size) {
            std::hint::black_box(laser_model::sampling::sample_token(row, &params, &mut rng));
        }
    });
    report.push(("sampling (all rows, host)".into(), ms));
    println!(
        "decode profile, batch {batch}, {} layers:",
        c.num_hidden_layers
    );
    for (name, ms) in report {
        println!("  {name:<50} {ms:>9.3} ms");
    }
    Ok(())
}

/// Where a learner micro-batch's forward+backward goes, on the learner's backend: the whole pass
/// (all layers, LM head, log-softmax and the token gather) against its parts timed alone on the same
/// shapes, one layer's attention core and MLP (times the layer count) and the head. One thread gives
/// the figures of BENCHMARKS.md; each is the median of 5.
fn profile_train(args: &[String]) -> Result<()> {
    use burn::tensor::{Distribution, Tensor, TensorData};
    type T = TrainBackend;
    let path = args
        .first()
        .ok_or_else(|| anyhow!("profile-train needs a model path"))?;
    let rows: usize = args.get(1).map_or(Ok(4), |b| b.parse())?;
    let seq: usize = args.get(2).map_or(Ok(128), |b| b.parse())?;
    let device = Default::default();
    let model = pretrained::load::<T>(&PathBuf::from(path), &device)?.model;
    let c = model.config.clone();
    let (nh, nkv, hd, h) = (
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim,
        c.hidden_size,
    );
    let layers = c.num_hidden_layers as f64;
    let time = |f: &mut dyn FnMut()| {
        f();
        let mut xs: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        xs.sort_by(f64::total_cmp);
        xs[2]
    };
    let targets: Vec<u32> = (0..rows * seq)
        .map(|i| ((i * 7919) % c.vocab_size) as u32)
        .collect();
    let head_loss = |hidden: Tensor<T, 2>| {
        laser_model::score::token_logprobs(model.logits(hidden), &targets).sum()
    };
    let fb = laser_model::transformer::ForwardBatch {
        batch: rows,
        seq,
        tokens: synthetic_ids(rows, seq, c.vocab_size, 0).concat(),
        positions: (0..rows).flat_map(|_| 0..seq).collect(),
        left_pad: vec![0; rows],
    };
    let mut report = vec![];
    let whole = time(&mut || {
        let hidden = model.hidden_states(&fb, None).reshape([rows * seq, h]);
        std::hint::black_box(head_loss(hidden).backward());
    });
    report.push(("whole forward+backward".to_string(), whole));
    let random = |dims: [usize; 4]| {
        Tensor::<T, 4>::random(dims, Distribution::Default, &device).require_grad()
    };
    // The attention core exactly as `Attention::forward` runs it without a cache.
    let mut mask = vec![0.0f32; rows * nh * seq * seq];
    for (i, m) in mask.iter_mut().enumerate() {
        let (q_pos, k_pos) = ((i / seq) % seq, i % seq);
        if k_pos > q_pos {
            *m = laser_model::kernels::MASKED;
        }
    }
    let mask = Tensor::<T, 4>::from_data(TensorData::new(mask, [rows, nh, seq, seq]), &device);
    let attention = time(&mut || {
        let (q, k, v) = (
            random([rows, nh, seq, hd]),
            random([rows, nkv, seq, hd]),
            random([rows, nkv, seq, hd]),
        );
        let q = q.reshape([rows, nkv, nh / nkv * seq, hd]);
        let scale = 1.0 / (hd as f64).sqrt();
        let scores = q.matmul(k.swap_dims(2, 3)).reshape([rows, nh, seq, seq]);
        let probs = laser_model::kernels::masked_softmax(scores, mask.clone(), scale);
        let out = probs
            .reshape([rows, nkv, nh / nkv * seq, seq])
            .matmul(v)
            .reshape([rows, nh, seq, hd])
            .swap_dims(1, 2)
            .reshape([rows, seq, nh * hd]);
        std::hint::black_box(out.sum().backward());
    });
    report.push((
        format!("attention core (QK^T, mask, softmax, PV) x {layers}"),
        attention * layers,
    ));
    let layer = &model.layers[0];
    let mlp = time(&mut || {
        let x =
            Tensor::<T, 3>::random([rows, seq, h], Distribution::Default, &device).require_grad();
        std::hint::black_box(layer.mlp.forward(x).sum().backward());
    });
    report.push((format!("MLP (3 linears, SwiGLU) x {layers}"), mlp * layers));
    let projections = time(&mut || {
        let x =
            Tensor::<T, 3>::random([rows, seq, h], Distribution::Default, &device).require_grad();
        let a = &layer.self_attn;
        let y = a.q_proj.forward(x.clone()).sum()
            + a.k_proj.forward(x.clone()).sum()
            + a.v_proj.forward(x.clone()).sum()
            + a.o_proj.forward(x).sum();
        std::hint::black_box(y.backward());
    });
    report.push((
        format!("q/k/v/o projections x {layers}"),
        projections * layers,
    ));
    let head = time(&mut || {
        let hidden =
            Tensor::<T, 2>::random([rows * seq, h], Distribution::Default, &device).require_grad();
        std::hint::black_box(head_loss(hidden).backward());
    });
    report.push(("LM head + log-softmax + gather".to_string(), head));
    let parts: f64 = report[1..].iter().map(|(_, ms)| ms).sum();
    report.push((
        "the rest (RoPE, norms, residuals, embedding, reshapes)".into(),
        whole - parts,
    ));
    println!("learner fwd+bwd profile, {rows} x {seq} tokens, {layers} layers:");
    for (name, ms) in report {
        println!("  {name:<55} {ms:>9.2} ms  {:>5.1}%", 100.0 * ms / whole);
    }
    Ok(())
}

fn main() -> Result<()> {
    laser_model::backend::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("write-tiny") => {
            let dir = args
                .get(1)
                .ok_or_else(|| anyhow!("write-tiny needs a directory"))?;
            // The default job's model: default dims, seed 7 (the step_overhead bench's seed).
            tiny::write_default::<Cpu>(
                TinyDims::default(),
                7,
                &PathBuf::from(dir),
                &CpuDevice::default(),
            )?;
            println!("{dir}");
            Ok(())
        }
        Some("profile-decode") => profile_decode(&args[1..]),
        Some("profile-train") => profile_train(&args[1..]),
        _ => bail!(
            "usage: laser-bench serve --tiny DIR --smollm2 FILE.gguf | write-tiny DIR | \
             profile-decode MODEL_PATH BATCH | profile-train MODEL_PATH [ROWS [SEQ]]"
        ),
    }
}
