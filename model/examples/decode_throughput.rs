//! Decode throughput of `generate` on a randomly initialised model, on the CPU or on CUDA, next to
//! the memory-bandwidth bound of a decode step.
//!
//!   cargo run -p laser-model --release --example decode_throughput -- \
//!       --backend cpu --config bench/configs/smollm2-135m.json --batch 1,8,64
//!   cargo build -p laser-model --features cuda --example decode_throughput   # one binary, both
//!
//! Options (defaults in brackets):
//!   --backend cpu|cuda     [cpu]
//!   --config PATH          a Hugging Face config.json [the embedded tiny default model]
//!   --batch 1,8,64         batch sizes (prompts; one sample each) [1,8,64]
//!   --new-tokens N         tokens generated per row; no EOS, so every row decodes exactly N [128]
//!   --prompt-tokens N      random prompt tokens per row [16]
//!   --reps N               timed runs per batch size, after one warm-up run [3]
//!   --hbm-gbps X           device memory bandwidth in GB/s for the bound column [none]
//!   --seed N               weight, prompt and sampling seed [0]
//!   --sampler host|device  where tokens are drawn: host = every step's logits copied to the host,
//!                          device = only token ids and log-probs cross [host on cpu, device on cuda]
//!   --json                 print one JSON document on stdout (the table goes to stderr)
//!
//! Sampling is temperature 1, no top-k/top-p, no self-reward read-out. Either sampler copies
//! something to the host every step (the logits, or the drawn token ids), which waits for the
//! device, so wall-clock timings need no extra synchronisation.
//!
//! Columns: decode tok/s = tokens produced by decode forwards / (total - prefill) seconds; total
//! tok/s = all generated tokens / total seconds (prefill included); ms/step = decode seconds /
//! decode steps. The bound: one decode step reads every weight once (f32; a tied embedding counted
//! once, as the LM head; the embedding lookup is negligible) plus the KV cache at the mean context
//! length (prompt + new/2): bytes/step = 4 * params + 2 * layers * kv_heads * head_dim * 4 * batch
//! * mean_ctx, and bound tok/s = batch * bandwidth / bytes/step.

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::backend::Backend;
use laser_model::backend::{Cpu, CpuDevice};
use laser_model::{
    GenerationRequest, ModelConfig, SamplerPlacement, SamplingParams, generate_with, tiny,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum BackendKind {
    Cpu,
    Cuda,
}

struct Args {
    backend: BackendKind,
    config: Option<PathBuf>,
    batches: Vec<usize>,
    new_tokens: usize,
    prompt_tokens: usize,
    reps: usize,
    hbm_gbps: Option<f64>,
    seed: u64,
    sampler: Option<SamplerPlacement>,
    json: bool,
}

fn usage(msg: &str) -> ! {
    eprintln!("decode_throughput: {msg}");
    eprintln!(
        "usage: decode_throughput [--backend cpu|cuda] [--config PATH] [--batch 1,8,64] \
         [--new-tokens 128] [--prompt-tokens 16] [--reps 3] [--hbm-gbps X] [--seed N] [--json]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        backend: BackendKind::Cpu,
        config: None,
        batches: vec![1, 8, 64],
        new_tokens: 128,
        prompt_tokens: 16,
        reps: 3,
        hbm_gbps: None,
        seed: 0,
        sampler: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (flag, None),
        };
        if flag == "--json" {
            a.json = true;
            continue;
        }
        if flag == "-h" || flag == "--help" {
            usage("help");
        }
        const VALUED: [&str; 9] = [
            "--sampler",
            "--backend",
            "--config",
            "--batch",
            "--new-tokens",
            "--prompt-tokens",
            "--reps",
            "--seed",
            "--hbm-gbps",
        ];
        if !VALUED.contains(&flag.as_str()) {
            usage(&format!("unknown option {flag}"));
        }
        let value = inline
            .or_else(|| it.next())
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> usize {
            v.trim()
                .parse()
                .unwrap_or_else(|_| usage(&format!("{flag}: not a number: {v:?}")))
        };
        match flag.as_str() {
            "--backend" => {
                a.backend = match value.as_str() {
                    "cpu" | "flex" => BackendKind::Cpu,
                    "cuda" => BackendKind::Cuda,
                    other => usage(&format!("unknown backend {other:?} (cpu or cuda)")),
                }
            }
            "--config" => a.config = Some(PathBuf::from(value)),
            "--batch" => a.batches = value.split(',').map(num).collect(),
            "--new-tokens" => a.new_tokens = num(&value),
            "--prompt-tokens" => a.prompt_tokens = num(&value),
            "--reps" => a.reps = num(&value),
            "--seed" => a.seed = num(&value) as u64,
            "--sampler" => {
                a.sampler = Some(match value.as_str() {
                    "host" => SamplerPlacement::Host,
                    "device" => SamplerPlacement::Device,
                    other => usage(&format!("unknown sampler {other:?} (host or device)")),
                })
            }
            "--hbm-gbps" => {
                a.hbm_gbps = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| usage(&format!("--hbm-gbps: not a number: {value:?}"))),
                )
            }
            other => usage(&format!("unknown option {other}")),
        }
    }
    if a.batches.is_empty() || a.batches.contains(&0) {
        usage("--batch needs positive batch sizes");
    }
    if a.new_tokens < 2 || a.prompt_tokens == 0 || a.reps == 0 {
        usage("--new-tokens must be >= 2, --prompt-tokens and --reps >= 1");
    }
    a
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Parameters read by one decode step, and the KV-cache bytes per (row, context position).
fn read_sizes<B: Backend>(model: &laser_model::Transformer<B>) -> (usize, usize) {
    let c = &model.config;
    let mut params = model.num_params();
    if !c.tie_word_embeddings {
        // An untied model reads lm_head; the embedding table is only gathered from (negligible).
        params -= c.vocab_size * c.hidden_size;
    }
    let kv_bytes_per_pos = 2 * c.num_hidden_layers * c.num_key_value_heads * c.head_dim * 4;
    (params, kv_bytes_per_pos)
}

fn run<B: Backend>(device: &B::Device, args: &Args, backend_name: &str) -> Value {
    let config = match &args.config {
        Some(path) => ModelConfig::from_file(path).unwrap_or_else(|e| usage(&e.to_string())),
        None => tiny::default_config().expect("the default tiny config"),
    };
    let config_name = args
        .config
        .as_ref()
        .map_or("tiny default".to_string(), |p| p.display().to_string());
    let sampler = args
        .sampler
        .unwrap_or_else(SamplerPlacement::for_backend::<B>);
    if args.prompt_tokens + args.new_tokens > config.max_position_embeddings {
        usage(&format!(
            "prompt + new tokens exceed max_position_embeddings {}",
            config.max_position_embeddings
        ));
    }
    let t = std::time::Instant::now();
    let weights = tiny::init_weights(&config, args.seed);
    let model = laser_model::Transformer::<B>::from_weights(&config, weights, device)
        .unwrap_or_else(|e| usage(&format!("building the model: {e}")));
    let init_s = t.elapsed().as_secs_f64();
    let total_params = model.num_params();
    let (read_params, kv_per_pos) = read_sizes(&model);
    let weight_bytes = read_params * 4;
    let (p, n) = (args.prompt_tokens, args.new_tokens);
    let mean_ctx = p as f64 + n as f64 / 2.0;
    eprintln!(
        "backend {backend_name}, config {config_name}: {} layers, hidden {}, heads {}/{} (dim {}), \
         vocab {}, tied {}; {total_params} params ({:.1} MB f32 read per step), init {init_s:.1} s",
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
        config.vocab_size,
        config.tie_word_embeddings,
        weight_bytes as f64 / 1e6
    );
    eprintln!(
        "prompt {p} random tokens, {n} new tokens (no EOS), temperature 1, warm-up 1 + {} timed runs per batch",
        args.reps
    );

    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut rows = Vec::new();
    for &batch in &args.batches {
        let prompts: Vec<Vec<u32>> = (0..batch)
            .map(|_| {
                (0..p)
                    .map(|_| rng.random_range(0..config.vocab_size as u32))
                    .collect()
            })
            .collect();
        let req = |seed: u64| GenerationRequest {
            prompts: prompts.clone(),
            n: 1,
            params: SamplingParams {
                temperature: 1.0,
                top_p: 1.0,
                top_k: 0,
                max_new_tokens: n,
                seed,
                stop_strings: vec![],
            },
            eos_token_ids: vec![],
            self_reward: None,
        };
        let t = std::time::Instant::now();
        let (warm, _) =
            generate_with(&model, None, &req(args.seed), sampler).expect("warm-up generation");
        let warm_s = t.elapsed().as_secs_f64();
        assert!(warm.iter().all(|s| s.tokens.len() == n));
        let (mut decode_tps, mut total_tps, mut step_ms, mut prefill_ms) =
            (vec![], vec![], vec![], vec![]);
        for rep in 0..args.reps {
            let (samples, stats) =
                generate_with(&model, None, &req(args.seed + 1 + rep as u64), sampler)
                    .expect("generation");
            let generated: usize = samples.iter().map(|s| s.tokens.len()).sum();
            assert_eq!(
                generated,
                batch * n,
                "every row decodes exactly --new-tokens"
            );
            let decode_s = stats.total_seconds - stats.prefill_seconds;
            decode_tps.push(stats.decode_rows as f64 / decode_s);
            total_tps.push(generated as f64 / stats.total_seconds);
            step_ms.push(1e3 * decode_s / stats.decode_steps as f64);
            prefill_ms.push(1e3 * stats.prefill_seconds);
        }
        let bytes_per_step = weight_bytes as f64 + kv_per_pos as f64 * batch as f64 * mean_ctx;
        let bound = args
            .hbm_gbps
            .map(|gbps| batch as f64 * gbps * 1e9 / bytes_per_step);
        let row = json!({
            "batch": batch,
            "decode_tok_s": median(decode_tps.clone()),
            "decode_tok_s_runs": decode_tps,
            "total_tok_s": median(total_tps.clone()),
            "ms_per_decode_step": median(step_ms.clone()),
            "ms_per_decode_step_runs": step_ms,
            "prefill_ms": median(prefill_ms),
            "warmup_s": warm_s,
            "bytes_per_step": bytes_per_step,
            "bound_tok_s": bound,
            "fraction_of_bound": bound.map(|b| median(decode_tps.clone()) / b),
        });
        eprintln!(
            "  batch {batch}: decode {:.0} tok/s, {:.2} ms/step (warm-up run {warm_s:.1} s)",
            row["decode_tok_s"].as_f64().unwrap(),
            row["ms_per_decode_step"].as_f64().unwrap()
        );
        rows.push(row);
    }

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut table = String::new();
    table.push_str(&format!(
        "\n{backend_name} ({sampler:?} sampler) | {config_name} | prompt {p} | new {n} | reps {} (median)\n",
        args.reps
    ));
    table.push_str(
        "| batch | decode tok/s | total tok/s | ms/decode step | prefill ms | MB read/step | bound tok/s | % of bound |\n",
    );
    table.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        let bound = r["bound_tok_s"].as_f64();
        table.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} | {} | {} |\n",
            r["batch"],
            f(r, "decode_tok_s"),
            f(r, "total_tok_s"),
            f(r, "ms_per_decode_step"),
            f(r, "prefill_ms"),
            f(r, "bytes_per_step") / 1e6,
            bound.map_or("-".into(), |b| format!("{b:.0}")),
            bound.map_or("-".into(), |b| format!(
                "{:.1}",
                100.0 * f(r, "decode_tok_s") / b
            )),
        ));
    }
    if args.json {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    json!({
        "backend": backend_name,
        "sampler": format!("{sampler:?}").to_lowercase(),
        "config": config_name,
        "debug_assertions": cfg!(debug_assertions),
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "total_params": total_params,
        "params_read_per_step": read_params,
        "weight_bytes_per_step": weight_bytes,
        "kv_bytes_per_row_per_position": kv_per_pos,
        "prompt_tokens": p,
        "new_tokens": n,
        "mean_context": mean_ctx,
        "reps": args.reps,
        "hbm_gbps": args.hbm_gbps,
        "rows": rows,
    })
}

fn main() {
    let args = parse_args();
    let out = match args.backend {
        BackendKind::Cpu => run::<Cpu>(&CpuDevice::default(), &args, "cpu (burn-flex)"),
        BackendKind::Cuda => {
            #[cfg(feature = "cuda")]
            {
                let device = laser_model::backend::CudaDevice::default();
                run::<laser_model::backend::Cuda>(&device, &args, "cuda (burn-cuda)")
            }
            #[cfg(not(feature = "cuda"))]
            usage("this build has no CUDA backend (build with --features cuda)")
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("a JSON value always serialises")
        );
    }
}
