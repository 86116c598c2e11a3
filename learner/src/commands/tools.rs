//! The one-shot subcommands: init, calibrate, sft, rollout, train-fixed.

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use laser_model::backend::Cpu;
use laser_model::{GenerationRequest, SamplingParams, SelfRewardConfig};
use laser_verifier::{Grader, GraderConfig};

use super::Command;
use super::inputs::{load, prompts_from_jsonl, run_path, sft_examples};
use crate::calibrate::CalibrationRequest;
use crate::checkpoint::RunDir;
use crate::sft::{SftPlan, run_sft};
use crate::{Group, Learner, Sample, TrainingBatch, calibrate};
use laser_config::{CRef, LaserConfig, LearnerConfig, LrSchedule, OptimConfig};

pub(super) fn tool<B: AutodiffBackend>(command: Command, device: &B::Device) -> Result<()> {
    match command {
        Command::Serve { .. } => unreachable!("serve is dispatched in main"),
        Command::Init {
            out,
            seed,
            hidden_size,
            layers,
            heads,
            kv_heads,
            intermediate_size,
            max_position_embeddings,
        } => {
            use laser_model::tiny::{TinyDims, write_default};
            let dims = TinyDims {
                hidden_size,
                num_hidden_layers: layers,
                num_attention_heads: heads,
                num_key_value_heads: kv_heads,
                intermediate_size,
                max_position_embeddings,
            };
            if heads == 0 || kv_heads == 0 || hidden_size % heads != 0 || heads % kv_heads != 0 {
                bail!(
                    "--hidden-size {hidden_size} must be a multiple of --heads {heads}, itself a multiple of --kv-heads {kv_heads}"
                );
            }
            write_default::<Cpu>(dims, seed, &out, &Default::default())
                .with_context(|| format!("writing {}", out.display()))?;
            let config = laser_model::tiny::config(dims)?;
            let params: usize = laser_model::tiny::init_weights(&config, seed)
                .tensors
                .values()
                .map(|t| t.data.len())
                .sum();
            // One JSON line for the coordinator (its run summary), then the human line.
            println!(
                "{}",
                serde_json::json!({"params": params, "vocab_size": config.vocab_size, "out": out})
            );
            println!(
                "wrote the tiny model ({:.2}M parameters, vocabulary {}) to {}",
                params as f64 / 1e6,
                config.vocab_size,
                out.display()
            );
        }
        Command::Export { model, out } => {
            let (config, params) = laser_model::pretrained::export(&model, &out)
                .with_context(|| format!("exporting {} to {}", model.display(), out.display()))?;
            println!(
                "{}",
                serde_json::json!({"params": params, "vocab_size": config.vocab_size, "out": out})
            );
            println!(
                "exported {} ({:.1}M parameters) to {}",
                model.display(),
                params as f64 / 1e6,
                out.display()
            );
        }
        Command::Calibrate {
            model,
            data,
            n,
            run_dir,
            samples_per_prompt,
            max_new_tokens,
            temperature,
            seed,
        } => {
            let (mut pretrained, tokenizer, z_c) = load::<B::InnerBackend>(&model, device)?;
            // It samples as an actor does (see `Transformer::with_decode_weights`).
            pretrained.model = pretrained.model.with_decode_weights();
            let prompts = prompts_from_jsonl(&data, &tokenizer, model.template, usize::MAX)?;
            let request = CalibrationRequest {
                prompts: prompts.into_iter().map(|(p, _)| p).collect(),
                samples: n,
                per_prompt: samples_per_prompt,
                params: SamplingParams {
                    temperature,
                    max_new_tokens,
                    seed,
                    ..SamplingParams::default()
                },
                eos_token_ids: pretrained.eos_token_ids(),
                self_reward_token: z_c,
            };
            let calibration = calibrate(
                &pretrained.model,
                Some(&tokenizer),
                &request,
                &model.model.display().to_string(),
                |done, total| {
                    tracing::info!(done, total, "calibration samples");
                    // A JSON progress line on stdout for the coordinator's progress bar.
                    println!(
                        "{}",
                        serde_json::json!({"calibrated": done, "total": total})
                    );
                },
            )?;
            let path = calibration.write(&run_dir)?;
            println!(
                "c_ref = {:.4} (std {:.4}, {} samples, {} truncated) -> {}",
                calibration.c_ref,
                calibration.std,
                calibration.samples,
                calibration.truncated,
                path.display()
            );
        }
        Command::Sft {
            model,
            data,
            out,
            epochs,
            steps,
            cosine,
            min_lr_ratio,
            batch_size,
            micro_batch_size,
            lr,
            warmup_steps,
            max_response_tokens,
            seed,
            run_dir,
            checkpoint_every,
        } => {
            let (pretrained, tokenizer, z_c) = load::<B>(&model, device)?;
            let eos = *pretrained
                .model
                .config
                .eos_token_ids
                .first()
                .context("the model config has no EOS token")?;
            let examples =
                sft_examples(&data, &tokenizer, model.template, eos, max_response_tokens)?;
            let plan = SftPlan {
                batch_size: batch_size.max(1),
                epochs,
                steps,
                checkpoint_every,
            };
            let total_steps = plan.total_steps(examples.len());
            let run = run_dir.as_deref().map(RunDir::open).transpose()?;
            let latest = match &run {
                Some(run) => run.latest_complete()?,
                None => None,
            };
            let mut learner = match latest {
                Some(checkpoint) => {
                    println!("resuming from {}", checkpoint.path.display());
                    Learner::<B>::load_checkpoint(&checkpoint, device, None, None)?
                }
                None => {
                    let config = LearnerConfig {
                        optim: OptimConfig {
                            lr_schedule: if cosine {
                                LrSchedule::Cosine {
                                    lr,
                                    warmup_steps,
                                    total_steps,
                                    min_lr_ratio,
                                }
                            } else {
                                LrSchedule::Constant { lr, warmup_steps }
                            },
                            ..Default::default()
                        },
                        micro_batch_size,
                        self_reward_token: z_c,
                        seed,
                        ..Default::default()
                    };
                    Learner::new(pretrained.model, Some(tokenizer), None, config)?
                }
            };
            let mut printed: serde_json::Result<()> = Ok(());
            run_sft(&mut learner, &examples, &plan, run.as_ref(), |m| {
                if printed.is_ok() {
                    printed = serde_json::to_string(m).map(|line| println!("{line}"));
                }
            })?;
            printed?;
            laser_model::pretrained::save(learner.model(), learner.tokenizer(), &out)?;
            println!("saved {}", out.display());
        }
        Command::Rollout {
            model,
            data,
            run_dir,
            out,
            prompts,
            n,
            max_new_tokens,
            beta_v,
            seed,
        } => {
            let (mut pretrained, tokenizer, z_c) = load::<B::InnerBackend>(&model, device)?;
            // It samples as an actor does (see `Transformer::with_decode_weights`).
            pretrained.model = pretrained.model.with_decode_weights();
            let calibration = CRef::load(&run_dir)?;
            let tasks = prompts_from_jsonl(&data, &tokenizer, model.template, prompts)?;
            let request = GenerationRequest {
                prompts: tasks.iter().map(|(p, _)| p.clone()).collect(),
                n,
                params: SamplingParams {
                    max_new_tokens,
                    seed,
                    ..SamplingParams::default()
                },
                eos_token_ids: pretrained.eos_token_ids(),
                self_reward: Some(SelfRewardConfig {
                    token_id: z_c,
                    beta_v,
                    c_ref: calibration.c_ref as f32,
                }),
            };
            let (samples, stats) =
                laser_model::generate(&pretrained.model, Some(&tokenizer), &request)?;
            let grader = Grader::new(GraderConfig::default());
            let mut groups: Vec<Group> = (0..tasks.len())
                .map(|i| Group {
                    prompt_id: i as u64,
                    samples: Vec::new(),
                })
                .collect();
            for s in samples {
                let (prompt, gold) = &tasks[s.prompt_index];
                let grade = grader.grade(gold, &s.text);
                let truncated = s.finish_reason == laser_model::FinishReason::Length;
                groups[s.prompt_index].samples.push(Sample {
                    prompt_tokens: prompt.clone(),
                    response_tokens: s.tokens,
                    old_logprobs: s.logprobs,
                    verifier_reward: f32::from(grade.reward),
                    self_reward: if truncated {
                        None
                    } else {
                        s.self_reward.map(|r| r.score)
                    },
                    truncated,
                    policy_version: 0,
                });
            }
            let batch = TrainingBatch::new(groups)?;
            let correct = batch.samples().filter(|s| s.verifier_reward >= 0.5).count();
            std::fs::write(&out, serde_json::to_vec(&batch)?)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} samples ({} correct, {} tokens generated) -> {}",
                batch.num_samples(),
                correct,
                stats.decode_rows,
                out.display()
            );
        }
        Command::TrainFixed {
            model,
            batch,
            run_dir,
            steps,
            lr,
            micro_batch_size,
            laser,
            checkpoint_every,
            keep_last,
        } => {
            let text = std::fs::read_to_string(&batch)
                .with_context(|| format!("reading {}", batch.display()))?;
            let batch: TrainingBatch = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid training batch", run_path(&batch)))?;
            let run = RunDir::open(&run_dir)?;
            let mut learner = match run.latest_complete()? {
                Some(checkpoint) => {
                    println!("resuming from {}", checkpoint.path.display());
                    Learner::<B>::load_checkpoint(&checkpoint, device, None, None)?
                }
                None => {
                    let (pretrained, tokenizer, z_c) = load::<B>(&model, device)?;
                    let c_ref = CRef::load(&run_dir).map(|c| c.c_ref).context(
                        "no c_ref.json in the run directory: run `learner calibrate` first",
                    )?;
                    let laser: LaserConfig = match laser {
                        Some(json) => serde_json::from_str(&json).context("--laser")?,
                        None => LaserConfig::default(),
                    };
                    let config = LearnerConfig {
                        laser,
                        optim: OptimConfig {
                            lr_schedule: LrSchedule::Constant {
                                lr,
                                warmup_steps: 0,
                            },
                            ..Default::default()
                        },
                        micro_batch_size,
                        self_reward_token: z_c,
                        c_ref,
                        keep_last_checkpoints: keep_last,
                        ..Default::default()
                    };
                    Learner::new(pretrained.model, Some(tokenizer), None, config)?
                }
            };
            while learner.step() < steps {
                let m = learner.train_step(&batch)?;
                println!("{}", serde_json::to_string(&m)?);
                if learner.step() % checkpoint_every.max(1) == 0 || learner.step() == steps {
                    let c = learner.save_checkpoint(&run)?;
                    tracing::info!(path = %c.path.display(), "checkpoint");
                }
            }
        }
    }
    Ok(())
}
