//! Generation benchmark (a bench binary, not a test): prefill tokens/s, decode tokens/s at batch 1, 8
//! and 32, and the LaSeR read-out's share of generation time, for the tiny fixture config and for
//! SmolLM2-135M (when scripts/fetch_smollm2.sh has fetched it).
//!
//!   cargo bench -p laser-model --bench generation [-- --quick]
//!
//! Prints a markdown table for BENCHMARKS.md. Each figure is the median of several runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use laser_model::backend::{Cpu, CpuDevice};
use laser_model::pretrained;
use laser_model::transformer::ForwardBatch;
use laser_model::{GenerationRequest, SamplingParams, SelfRewardConfig, Transformer, generate};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

struct Row {
    model: String,
    what: String,
    value: String,
}

fn prompts(batch: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|b| {
            (0..len)
                .map(|t| ((b * 7919 + t * 104_729 + 3) % (vocab - 3) + 3) as u32)
                .collect()
        })
        .collect()
}

fn bench_model(
    name: &str,
    model: &Transformer<Cpu>,
    reps: usize,
    new_tokens: usize,
    rows: &mut Vec<Row>,
) {
    let vocab = model.config.vocab_size;
    // Prefill: one forward over a batch of 8 prompts of 128 tokens.
    let (b, t) = (8, 128);
    let p = prompts(b, t, vocab);
    let batch = ForwardBatch {
        batch: b,
        seq: t,
        tokens: p.concat(),
        positions: (0..b).flat_map(|_| 0..t).collect(),
        left_pad: vec![0; b],
    };
    let secs = median(
        (0..reps)
            .map(|_| {
                time(|| {
                    let mut cache = model.new_cache(b, t);
                    let h = model.hidden_states(&batch, Some(&mut cache));
                    let _ = h.into_data();
                })
                .0
            })
            .collect(),
    );
    rows.push(Row {
        model: name.into(),
        what: format!("prefill {b}x{t} tokens/s"),
        value: format!("{:.0}", (b * t) as f64 / secs),
    });

    // Decode: fixed-length sampling (EOS disabled) so every row generates `new_tokens` tokens.
    for batch in [1usize, 8, 32] {
        let req = GenerationRequest {
            prompts: prompts(batch, 16, vocab),
            n: 1,
            params: SamplingParams {
                temperature: 1.0,
                max_new_tokens: new_tokens,
                seed: 1,
                ..SamplingParams::default()
            },
            eos_token_ids: vec![],
            self_reward: None,
        };
        let secs = median(
            (0..reps)
                .map(|_| time(|| generate(model, None, &req).unwrap()).0)
                .collect(),
        );
        rows.push(Row {
            model: name.into(),
            what: format!("decode tokens/s, batch {batch} ({new_tokens} new)"),
            value: format!("{:.0}", (batch * new_tokens) as f64 / secs),
        });
    }

    // Read-out share on GRPO-shaped work (8 prompts x 8 samples). To get EOS-terminated samples of
    // a realistic mean length from any model, the EOS set is picked from a first run without EOS:
    // the least frequent sampled tokens whose total frequency is ~1/target_len of all tokens.
    let target_len = (new_tokens / 2).max(2);
    let mut req = GenerationRequest {
        prompts: prompts(8, 16, vocab),
        n: 8,
        params: SamplingParams {
            temperature: 1.0,
            max_new_tokens: new_tokens,
            seed: 3,
            ..SamplingParams::default()
        },
        eos_token_ids: vec![],
        self_reward: None,
    };
    let (free, _) = generate(model, None, &req).unwrap();
    let mut counts = std::collections::HashMap::<u32, usize>::new();
    for s in &free {
        for &t in &s.tokens {
            *counts.entry(t).or_default() += 1;
        }
    }
    let total: usize = counts.values().sum();
    let mut by_count: Vec<(u32, usize)> = counts.into_iter().collect();
    by_count.sort_by_key(|&(t, c)| (c, t));
    let mut acc = 0;
    for (t, c) in by_count {
        if acc * target_len >= total {
            break;
        }
        acc += c;
        req.eos_token_ids.push(t);
    }
    let mut plain = vec![];
    let mut with = vec![];
    let mut readout_share = 0.0;
    let mut mean_len = 0.0;
    for _ in 0..reps {
        req.self_reward = None;
        plain.push(time(|| generate(model, None, &req).unwrap()).0);
        req.self_reward = Some(SelfRewardConfig {
            token_id: 1,
            beta_v: 0.1,
            c_ref: -10.0,
        });
        let (secs, (_, stats)) = time(|| generate(model, None, &req).unwrap());
        with.push(secs);
        readout_share = stats.readout_rows as f64 / stats.decode_rows as f64;
        mean_len = (stats.decode_rows + 64 - stats.readout_rows) as f64 / 64.0;
    }
    let (plain, with) = (median(plain), median(with));
    rows.push(Row {
        model: name.into(),
        what: "read-out cost, % of generation time (8x8 samples)".into(),
        value: format!(
            "{:.2}% ({:.3}s vs {:.3}s; mean response {:.0} tokens; read-out rows {:.1}% of decode rows)",
            100.0 * (with - plain) / with,
            with,
            plain,
            mean_len,
            100.0 * readout_share
        ),
    });
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 5 };
    let device = CpuDevice::default();
    let mut rows = vec![];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tiny = pretrained::load::<Cpu>(&root.join("tests/fixtures/tiny-qwen2"), &device).unwrap();
    bench_model(
        "tiny-qwen2 fixture (2L, d=64)",
        &tiny.model,
        reps,
        128,
        &mut rows,
    );

    let smol = std::env::var_os("LASER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/laser/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if smol.exists() {
        let m = pretrained::load::<Cpu>(&smol, &device).unwrap();
        bench_model(
            "SmolLM2-135M",
            &m.model,
            reps.min(3),
            if quick { 16 } else { 64 },
            &mut rows,
        );
    } else {
        eprintln!(
            "SmolLM2 not found at {} (scripts/fetch_smollm2.sh): skipped",
            smol.display()
        );
    }

    println!("| model | measure | value |\n|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.model, r.what, r.value);
    }
}
