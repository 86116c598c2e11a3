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
    let out = ctx.run_dir.join(INIT_MODEL_DIR);
    let model_path = match (cfg.model.init, &cfg.model.path) {
        (Some(ModelInit::Tiny), _) => {
            let t = &cfg.model.tiny;
            let args: Vec<String> = vec![
                "init".into(),
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
            ];
            let started = format!("[1/5] init: the tiny model -> {}", out.display());
            let done = format!("[1/5] init: done ({})", out.display());
            write_start_model(ctx, &args, started, done, None).await?;
            out
        }
        (None, Some(p))
            if p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
        {
            // A GGUF start (e.g. SmolLM2's Q4_1) becomes a HF directory once, so that the
            // learner, actors, checkpoints and `coordinator eval` read one format.
            let source = p.display().to_string();
            let args: Vec<String> = vec![
                "export".into(),
                "--model".into(),
                source.clone(),
                "--out".into(),
                out.display().to_string(),
            ];
            let started = format!(
                "[1/5] init: {source} -> Hugging Face directory {}",
                out.display()
            );
            let done = format!("[1/5] init: done ({} from {source})", out.display());
            write_start_model(ctx, &args, started, done, Some(source)).await?;
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

/// Runs the learner subcommand `args` that writes the start model to `init_model/` (unless the
/// phase is done) and records its parameter count and vocabulary (and `source`) in phases.json.
async fn write_start_model(
    ctx: &mut JobContext,
    args: &[String],
    started: String,
    done: String,
    source: Option<String>,
) -> Result<()> {
    if ctx.phases.done("init") {
        println!("{done}");
        return Ok(());
    }
    let t0 = Instant::now();
    println!("{started}");
    let (json, peak) = run_learner(
        &ctx.bin_dir,
        &ctx.run_dir,
        "init",
        args,
        ctx.cfg.cluster.learner_threads,
        |_| {},
    )
    .await?;
    let mut info = serde_json::Map::new();
    if let Some(source) = source {
        info.insert("source".into(), source.into());
    }
    if let Some(v) = json.iter().find(|v| v.get("params").is_some()) {
        info.insert("params".into(), v["params"].clone());
        info.insert("vocab_size".into(), v["vocab_size"].clone());
    }
    ctx.phases.complete(
        &ctx.run_dir,
        "init",
        PhaseRecord::one_process(t0, peak, info),
    )
}
