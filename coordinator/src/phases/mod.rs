//! The main job, `coordinator --cluster cluster.toml`: every phase from nothing to a trained,
//! evaluated and summarised policy. Each phase records itself in `run_dir/phases.json` when it
//! completes, so `--resume` skips what is done (and the RL phase resumes from its checkpoint).
//!
//! 1. `init` (`model.init = "tiny"`): `learner init` writes the embedded tiny model to
//!    `run_dir/init_model`.
//! 2. `warmstart` (`warmstart.steps > 0`): SFT pairs for the synthetic tasks (a fraction with a
//!    deliberate slip) in `run_dir/sft_data.jsonl`, then `learner sft` (checkpoints in
//!    `run_dir/warmstart/`) writes `run_dir/sft_model`.
//! 3. `calibrate` (no `algorithm.c_ref`): `learner calibrate` on the RL start model writes
//!    `run_dir/c_ref.json`, which the learner and the actors read.
//! 4. `rl`: the [`Runner`] on the RL start model, with held-out evaluations at step 0, every
//!    `run.eval_every` steps and at the end (`run_dir/eval.jsonl`).
//! 5. `report`: PNG plots in `run_dir/plots/` and `run_dir/summary.md`.
//!
//! The coordinator stays thin: the phases that need the model run as `learner` child processes
//! (local mode), like the workers, with their output in `run_dir/logs/<phase>.log`.
//!
//! Each phase is a module with one `run(&mut JobContext)`; [`Phase::ALL`] is the order they run
//! in, and [`run_job`] is the loop over it. [`learner_process`] starts the `learner` children.

mod calibrate;
mod init;
mod learner_process;
mod report;
mod rl;
mod warmstart;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use laser_config::{CRef, ClusterConfig, ClusterMode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::local::LocalCluster;
use crate::runner::Runner;

pub use report::write_report;
pub use warmstart::write_sft_data;

pub const PHASES_FILE: &str = "phases.json";
pub const INIT_MODEL_DIR: &str = "init_model";
pub const SFT_MODEL_DIR: &str = "sft_model";
pub const SFT_DATA_FILE: &str = "sft_data.jsonl";
/// `learner sft`'s checkpoints (kept apart from the RL learner's `checkpoints/`).
pub const WARMSTART_DIR: &str = "warmstart";
pub const CALIBRATION_PROMPTS_FILE: &str = "calibration_prompts.jsonl";
pub const PLOTS_DIR: &str = "plots";
pub const SUMMARY_FILE: &str = "summary.md";
/// Samples per prompt of the c_ref calibration.
pub const CALIBRATION_PER_PROMPT: usize = 4;

/// What a completed phase recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub seconds: f64,
    /// Peak RSS of the phase's processes, KiB: the largest single process, and (RL) the sum over
    /// the processes that ran together.
    pub peak_rss_kb: u64,
    #[serde(default)]
    pub peak_rss_sum_kb: u64,
    #[serde(default)]
    pub info: serde_json::Map<String, Value>,
}

impl PhaseRecord {
    /// A phase run by one process since `started`: its peak is both the largest and the sum.
    fn one_process(
        started: Instant,
        peak_rss_kb: u64,
        info: serde_json::Map<String, Value>,
    ) -> Self {
        Self {
            seconds: started.elapsed().as_secs_f64(),
            peak_rss_kb,
            peak_rss_sum_kb: peak_rss_kb,
            info,
        }
    }
}

/// `run_dir/phases.json`: the completed phases, by name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases(pub BTreeMap<String, PhaseRecord>);

impl Phases {
    pub fn read(run_dir: &Path) -> Result<Self> {
        let p = run_dir.join(PHASES_FILE);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).with_context(|| p.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| p.display().to_string()),
        }
    }

    fn write(&self, run_dir: &Path) -> Result<()> {
        let p = run_dir.join(PHASES_FILE);
        let tmp = run_dir.join(format!("{PHASES_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| tmp.display().to_string())?;
        std::fs::rename(&tmp, &p).with_context(|| p.display().to_string())
    }

    pub fn done(&self, phase: &str) -> bool {
        self.0.contains_key(phase)
    }

    fn complete(&mut self, run_dir: &Path, phase: &str, record: PhaseRecord) -> Result<()> {
        self.0.insert(phase.to_string(), record);
        self.write(run_dir)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    pub resume: bool,
    pub show_progress: bool,
}

/// Where the job's files went.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub run_dir: PathBuf,
    pub summary: PathBuf,
    pub plots: Vec<PathBuf>,
}

/// What every phase reads, and what the phases hand on: the model the next phase starts from.
pub(crate) struct JobContext {
    cfg: ClusterConfig,
    opts: JobOptions,
    run_dir: PathBuf,
    bin_dir: PathBuf,
    /// The prompt template the `learner` children are told to use.
    template: &'static str,
    /// Local mode: the coordinator runs the model phases itself.
    local: bool,
    phases: Phases,
    /// The model the next phase starts from: init's, then the warm start's.
    model_path: PathBuf,
    started: Instant,
    outcome: Option<JobOutcome>,
}

/// The job's phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Warmstart,
    Calibrate,
    Rl,
    Report,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Init,
        Phase::Warmstart,
        Phase::Calibrate,
        Phase::Rl,
        Phase::Report,
    ];

    /// The name it is recorded under in `phases.json`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Warmstart => "warmstart",
            Phase::Calibrate => "calibrate",
            Phase::Rl => "rl",
            Phase::Report => "report",
        }
    }

    async fn run(self, ctx: &mut JobContext) -> Result<()> {
        match self {
            Phase::Init => init::run(ctx).await,
            Phase::Warmstart => warmstart::run(ctx).await,
            Phase::Calibrate => calibrate::run(ctx).await,
            Phase::Rl => rl::run(ctx).await,
            Phase::Report => report::run(ctx),
        }
    }
}

/// The calibrated c_ref in `run_dir/c_ref.json`, if any.
pub(super) fn read_c_ref(run_dir: &Path) -> Option<f64> {
    CRef::read(run_dir).ok().flatten().map(|c| c.c_ref)
}

/// Runs the whole job (see the module docs).
pub async fn run_job(cfg: ClusterConfig, opts: JobOptions) -> Result<JobOutcome> {
    let started_at = Instant::now();
    let run_dir = cfg.run.dir.clone();
    let started = run_dir.join(PHASES_FILE).exists() || Runner::has_run(&run_dir);
    if started && !opts.resume {
        bail!(
            "run.dir {:?} already holds a run; pass --resume to continue it, or set another run.dir",
            run_dir.display().to_string()
        );
    }
    if opts.resume && !started {
        bail!(
            "--resume: {:?} holds no run to continue",
            run_dir.display().to_string()
        );
    }
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("creating run.dir {}", run_dir.display()))?;
    let phases = Phases::read(&run_dir)?;
    let local = cfg.cluster.mode == ClusterMode::Local;
    if !local && (cfg.model.init.is_some() || cfg.warmstart.steps > 0) {
        bail!(
            "model.init and warmstart run `learner` on the coordinator's machine, so they need cluster.mode = \"local\"; \
             in external mode prepare the model first and set model.path"
        );
    }
    let bin_dir = match &cfg.cluster.bin_dir {
        Some(d) => d.clone(),
        None => LocalCluster::default_bin_dir()?,
    };
    let template = learner_process::learner_template(&cfg);
    let mut ctx = JobContext {
        cfg,
        opts,
        run_dir,
        bin_dir,
        template,
        local,
        phases,
        model_path: PathBuf::new(),
        started: started_at,
        outcome: None,
    };
    for phase in Phase::ALL {
        phase.run(&mut ctx).await?;
    }
    ctx.outcome.context("the report phase wrote no outcome")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint_eval::find_c_ref;

    fn cfg(text: &str) -> ClusterConfig {
        ClusterConfig::from_toml_with_env(text, "t", Vec::new()).unwrap()
    }

    #[test]
    fn sft_data_has_the_configured_slips_and_size() {
        let dir = std::env::temp_dir().join(format!("laser-job-sft-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let c = cfg(
            "[model]\ninit = \"tiny\"\n[warmstart]\nsteps = 25\nbatch_size = 8\nwrong_fraction = 0.5\n\
             [[warmstart.mix]]\nmax_digits = 1\nchain_length = 1\n[[warmstart.mix]]\nchain_length = 2\n",
        );
        let p = dir.join(SFT_DATA_FILE);
        let (n, wrong) = write_sft_data(&c, &p).unwrap();
        assert_eq!(n, 200);
        assert!((60..140).contains(&wrong), "{wrong} of 200 wrong");
        let rows: Vec<Value> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 200);
        for r in &rows {
            assert!(r["question"].as_str().unwrap().starts_with("Compute "));
            assert!(r["response"].as_str().unwrap().contains("\\boxed{"));
            // The response reaches the gold answer exactly when it is marked correct.
            let grade = laser_verifier::Grader::new(Default::default()).grade(
                r["answer"].as_str().unwrap(),
                r["response"].as_str().unwrap(),
            );
            assert_eq!(grade.reward == 1, r["correct"].as_bool().unwrap(), "{r}");
        }
        // The same config writes the same file.
        let again = dir.join("again.jsonl");
        write_sft_data(&c, &again).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&again).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn phases_round_trip_and_c_ref_is_found_above_a_checkpoint() {
        let dir = std::env::temp_dir().join(format!("laser-job-phases-{}", std::process::id()));
        let ckpt = dir.join("checkpoints").join("step-000004");
        std::fs::create_dir_all(&ckpt).unwrap();
        let mut p = Phases::read(&dir).unwrap();
        assert!(!p.done("init"));
        p.complete(
            &dir,
            "init",
            PhaseRecord {
                seconds: 1.5,
                ..Default::default()
            },
        )
        .unwrap();
        let again = Phases::read(&dir).unwrap();
        assert!(again.done("init"));
        assert_eq!(again, p);
        assert!(find_c_ref(&ckpt).is_none());
        std::fs::write(dir.join("c_ref.json"), r#"{"c_ref": -6.5}"#).unwrap();
        assert_eq!(find_c_ref(&ckpt).unwrap().0, -6.5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
