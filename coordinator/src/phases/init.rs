//! Phase 1, `init`: the model RL starts from. `model.init = "tiny"`: `learner init` writes the
//! embedded tiny model to `run_dir/init_model`; a `model.path` GGUF file is exported (`learner
//! export`) to the same place as a Hugging Face directory; else `model.path` is the start.

use std::time::Instant;

use anyhow::{Result, bail};
use laser_config::ModelInit;

use super::learner_process::run_learner;
use super::{INIT_MODEL_DIR, JobContext, PhaseRecord};

pub(super) async fn run(ctx: &mut JobContext) -> Result<()> {
    let cfg = &ctx.cfg;
    let run_dir = &ctx.run_dir;
    let bin_dir = &ctx.bin_dir;
    let phases = &mut ctx.phases;
    let model_path = match (cfg.model.init, &cfg.model.path) {
        (Some(ModelInit::Tiny), _) => {
            let out = run_dir.join(INIT_MODEL_DIR);
            if !phases.done("init") {
                let t0 = Instant::now();
                let t = &cfg.model.tiny;
                let args: Vec<String> = [
                    "init".to_string(),
                    "--out".into(),
                    out.display().to_string(),
                    "--seed".into(),
                    cfg.run.seed.to_string(),
                    "--hidden-size".into(),
                    t.hidden_size.to_string(),
                    "--layers".into(),
                    t.num_hidden_layers.to_string(),
                    "--heads".into(),
                    t.num_attention_heads.to_string(),
                    "--kv-heads".into(),
                    t.num_key_value_heads.to_string(),
                    "--intermediate-size".into(),
                    t.intermediate_size.to_string(),
                    "--max-position-embeddings".into(),
                    t.max_position_embeddings.to_string(),
                ]
                .into();
                println!("[1/5] init: the tiny model -> {}", out.display());
                let (json, peak) = run_learner(
                    bin_dir,
                    run_dir,
                    "init",
                    &args,
                    cfg.cluster.learner_threads,
                    |_| {},
                )
                .await?;
                let mut info = serde_json::Map::new();
                if let Some(v) = json.iter().find(|v| v.get("params").is_some()) {
                    info.insert("params".into(), v["params"].clone());
                    info.insert("vocab_size".into(), v["vocab_size"].clone());
                }
                phases.complete(run_dir, "init", PhaseRecord::one_process(t0, peak, info))?;
            } else {
                println!("[1/5] init: done ({})", out.display());
            }
            out
        }
        (None, Some(p))
            if p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
        {
            // A GGUF start (e.g. SmolLM2's Q4_1) becomes a HF directory once, so that the
            // learner, actors, checkpoints and `coordinator eval` read one format.
            let out = run_dir.join(INIT_MODEL_DIR);
            if !phases.done("init") {
                let t0 = Instant::now();
                println!(
                    "[1/5] init: {} -> Hugging Face directory {}",
                    p.display(),
                    out.display()
                );
                let args: Vec<String> = vec![
                    "export".into(),
                    "--model".into(),
                    p.display().to_string(),
                    "--out".into(),
                    out.display().to_string(),
                ];
                let (json, peak) = run_learner(
                    bin_dir,
                    run_dir,
                    "init",
                    &args,
                    cfg.cluster.learner_threads,
                    |_| {},
                )
                .await?;
                let mut info = serde_json::Map::new();
                info.insert("source".into(), p.display().to_string().into());
                if let Some(v) = json.iter().find(|v| v.get("params").is_some()) {
                    info.insert("params".into(), v["params"].clone());
                    info.insert("vocab_size".into(), v["vocab_size"].clone());
                }
                phases.complete(run_dir, "init", PhaseRecord::one_process(t0, peak, info))?;
            } else {
                println!("[1/5] init: done ({} from {})", out.display(), p.display());
            }
            out
        }
        (None, Some(p)) => {
            println!("[1/5] init: model.path = {}", p.display());
            p.clone()
        }
        (None, None) => bail!("`model.path` is required (or set model.init = \"tiny\")"),
    };

    ctx.model_path = model_path;
    Ok(())
}
