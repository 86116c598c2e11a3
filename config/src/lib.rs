//! laser-config: the run configuration of LaSeR, `cluster.toml`, shared by every role.
//!
//! The coordinator reads the file (plus `LASER__…` environment overrides) and hands every worker
//! the resolved copy in the run directory; actors, verifiers and the learner read that copy with
//! the same [`ClusterConfig::load`]. This crate is deliberately light (serde, config, toml,
//! thiserror, clap's derive for [`ComputeBackend`]; no tonic, no burn) so that every crate can
//! depend on it: laser-proto's runtime takes its settings types ([`TokenSource`], [`TlsFiles`],
//! [`TransportPref`]) from here. One module per concern: [`model`], [`data`], [`algorithm`],
//! [`cluster`], [`run`] (`[run]`, `[warmstart]`, `[eval]`), [`reward`] (`[rewards]`: the reward
//! function of each `data_source`, math by default), [`validate`] (cross-field range checks)
//! [`error`] and [`c_ref`] (the run's calibrated c_ref, `RUN/c_ref.json`); the learner's typed settings ([`laser`], [`optim`], [`learner`]: built from the
//! sections once, by [`ClusterConfig::learner_config`], and taken by the learner as is).
//!
//! Loaded through the `config` crate: the file, then environment overrides such as
//! `LASER__ALGORITHM__LR=1e-5` (prefix `LASER`, `__` between keys). Every section denies unknown
//! keys, so a typo or a wrong type is one error that names the key, and [`ClusterConfig::validate`]
//! names the field of any value out of range (e.g. a missing `model.path`).

pub mod algorithm;
pub mod c_ref;
pub mod cluster;
pub mod data;
pub mod error;
pub mod laser;
pub mod learner;
pub mod model;
pub mod optim;
pub mod reward;
pub mod run;
pub mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use algorithm::AlgorithmSection;
pub use c_ref::{C_REF_FILE, CRef, CRefError};
pub use cluster::{ClusterMode, ClusterSection, TOKEN_ENV, TlsFiles, TokenSource, TransportPref};
pub use data::{DataColumns, DataSection, DataSource, PromptTemplateKind, TaskLevel};
pub use error::ClusterConfigError;
pub use laser::{ConfigError, KlEstimator, KlPenalty, LaserConfig, LossAggMode, Phase};
pub use learner::LearnerConfig;
pub use model::{ComputeBackend, ModelInit, ModelSection, TinyModelSection};
pub use optim::{LrSchedule, OptimConfig, OptimError};
pub use reward::{DefaultReward, RewardKind, RewardRoute, RewardsError, RewardsSection};
pub use run::{EvalSection, RESOLVED_FILE, RunSection, WarmstartSection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    #[serde(default)]
    pub model: ModelSection,
    #[serde(default)]
    pub data: DataSection,
    #[serde(default)]
    pub algorithm: AlgorithmSection,
    #[serde(default)]
    pub cluster: ClusterSection,
    #[serde(default)]
    pub run: RunSection,
    #[serde(default)]
    pub warmstart: WarmstartSection,
    #[serde(default)]
    pub eval: EvalSection,
    #[serde(default)]
    pub rewards: RewardsSection,
}

impl ClusterConfig {
    /// Reads `path`, applies `LASER__…` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Self, ClusterConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`load`](Self::load) with an explicit environment (tests).
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ClusterConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ClusterConfigError::Load {
            file: file.clone(),
            message: e.to_string(),
        })?;
        let cfg = Self::from_toml_with_env(&text, &file, env)?;
        cfg.validate(&file)?;
        Ok(cfg)
    }

    /// Parses TOML text plus overrides; `file` names the source in errors. Does not validate.
    pub fn from_toml_with_env(
        text: &str,
        file: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ClusterConfigError> {
        let mut home = None;
        let env_map: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, v)| {
                if k == "HOME" {
                    home = Some(v.clone());
                }
                k.starts_with("LASER__")
            })
            .collect();
        let load_err = |e: config::ConfigError| ClusterConfigError::Load {
            file: file.to_string(),
            message: qualify_unknown_key(&e.to_string()),
        };
        config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("LASER")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(env_map)),
            )
            .build()
            .map_err(load_err)?
            .try_deserialize::<ClusterConfig>()
            .map_err(load_err)
            .map(|mut cfg| {
                // `~/` as a shell would read it: scripts/fetch_smollm2.sh caches the model
                // under ~/.cache, and runs meant to outlive a checkout live there too.
                if let Some(home) = home {
                    let expand = |p: &mut std::path::PathBuf| {
                        if let Ok(rest) = p.strip_prefix("~") {
                            *p = Path::new(&home).join(rest);
                        }
                    };
                    if let Some(p) = cfg.model.path.as_mut() {
                        expand(p);
                    }
                    expand(&mut cfg.run.dir);
                }
                cfg
            })
    }

    pub fn max_message_bytes(&self) -> usize {
        (self.cluster.max_message_mb as usize) << 20
    }

    pub fn to_toml(&self) -> String {
        toml_string(self)
    }
}

/// serde says "unknown field `lrr`, expected one of … for key `algorithm`"; name the full key first.
fn qualify_unknown_key(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((field, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    let (expected, section) = match tail.rsplit_once(" for key `") {
        Some((expected, section)) => (expected, section.split('`').next().unwrap_or("")),
        None => (tail, ""),
    };
    let key = if section.is_empty() {
        field.to_string()
    } else {
        format!("{section}.{field}")
    };
    format!(
        "unknown key `{key}`{}",
        expected.replacen(", ", " (", 1) + ")"
    )
}

fn toml_string(cfg: &ClusterConfig) -> String {
    // `config` has no writer; serde's TOML output via the `toml` crate `config` already depends on.
    toml::to_string_pretty(cfg).unwrap_or_else(|e| format!("# could not serialise: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<ClusterConfig, ClusterConfigError> {
        ClusterConfig::from_toml_with_env(
            text,
            "cluster.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn env_overrides_reach_nested_keys() {
        let c = parse(
            "[model]\npath = \"m\"\n[algorithm]\nlr = 0.5\n",
            &[
                ("LASER__ALGORITHM__LR", "1e-5"),
                ("LASER__CLUSTER__ACTORS", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.algorithm.lr, 1e-5);
        assert_eq!(c.cluster.actors, 3);
        assert_eq!(
            c.algorithm.group_size, 8,
            "untouched keys keep their defaults"
        );
    }

    #[test]
    fn unknown_key_and_wrong_type_name_the_key() {
        let e = parse(
            "[model]\npath = \"m\"\n[algorithm]\nlearning_rate = 1.0\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "cluster.toml: unknown key `algorithm.learning_rate` (expected one of `laser`"
            ),
            "{e}"
        );
        let e = parse("[modle]\npath = \"m\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cluster.toml: unknown key `modle` ("), "{e}");
        let e = parse("[model]\npath = \"m\"\n", &[("LASER__ALGORITHM__LRR", "1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `algorithm.lrr`"), "{e}");
        let e = parse("[model]\npath = \"m\"\n[algorithm]\nlr = \"fast\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("algorithm.lr"), "{e}");
        let e = parse("[model]\npath = \"m\"\n[cluster]\nmode = \"cloud\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster.mode") || e.contains("cloud"), "{e}");
        let e = parse(
            "[model]\npath = \"m\"\n",
            &[("LASER__CLUSTER__LEARNER_COLLECTIVE", "mpi")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cluster.learner_collective") || e.contains("mpi"),
            "{e}"
        );
        let c = parse(
            "[model]\npath = \"m\"\n",
            &[("LASER__CLUSTER__LEARNER_COLLECTIVE", "grpc")],
        )
        .unwrap();
        assert_eq!(c.cluster.learner_collective, TransportPref::Grpc);
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        let c = ClusterConfig::from_toml_with_env(
            "[model]\npath = \"~/models/m.gguf\"\n[run]\ndir = \"~/runs/a\"\n",
            "t.toml",
            [("HOME".to_string(), "/home/u".to_string())],
        )
        .unwrap();
        assert_eq!(c.model.path.unwrap(), Path::new("/home/u/models/m.gguf"));
        assert_eq!(c.run.dir, Path::new("/home/u/runs/a"));
        let c = ClusterConfig::from_toml_with_env(
            "[model]\npath = \"models/~x\"\n",
            "t.toml",
            [("HOME".to_string(), "/home/u".to_string())],
        )
        .unwrap();
        assert_eq!(c.model.path.unwrap(), Path::new("models/~x"));
    }

    #[test]
    fn missing_model_path_is_named() {
        let c = parse("[run]\nmax_steps = 3\n", &[]).unwrap();
        let e = c.validate("cluster.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("cluster.toml: `model.path` is required"),
            "{e}"
        );
    }

    #[test]
    fn learner_micro_batch_is_configurable_and_checked() {
        let c = parse("[model]\npath = \"m\"\n", &[]).unwrap();
        assert_eq!(c.algorithm.micro_batch_size, 8);
        let c = parse(
            "[model]\npath = \"m\"\n",
            &[("LASER__ALGORITHM__MICRO_BATCH_SIZE", "32")],
        )
        .unwrap();
        assert_eq!(c.algorithm.micro_batch_size, 32);
        let c = parse(
            "[model]\ninit = \"tiny\"\n[algorithm]\nmicro_batch_size = 0\n",
            &[],
        )
        .unwrap();
        let e = c.validate("cluster.toml").unwrap_err().to_string();
        assert!(e.contains("`algorithm.micro_batch_size` = 0"), "{e}");
    }

    #[test]
    fn model_init_and_job_sections() {
        let c = parse(
            "[model]\ninit = \"tiny\"\n[model.tiny]\nhidden_size = 64\n\
             [[data.mix]]\nmax_digits = 1\nchain_length = 1\n[[data.mix]]\nchain_length = 2\nweight = 2.0\n\
             [warmstart]\nsteps = 10\n[eval]\nk = 4\n",
            &[("LASER__WARMSTART__LR", "0.01"), ("LASER__MODEL__TINY__NUM_HIDDEN_LAYERS", "2")],
        )
        .unwrap();
        c.validate("cluster.toml").unwrap();
        assert_eq!(c.model.init, Some(ModelInit::Tiny));
        assert_eq!(
            (c.model.tiny.hidden_size, c.model.tiny.num_hidden_layers),
            (64, 2)
        );
        assert_eq!(c.data.levels().len(), 2);
        assert_eq!(c.data.levels()[1].weight, 2.0);
        assert_eq!((c.warmstart.steps, c.warmstart.lr), (10, 0.01));
        assert_eq!(c.eval.k, 4);
        assert_eq!(parse(&c.to_toml(), &[]).unwrap(), c);

        let err = |text: &str| {
            parse(text, &[])
                .unwrap()
                .validate("cluster.toml")
                .unwrap_err()
                .to_string()
        };
        let e = err("[model]\ninit = \"tiny\"\npath = \"/\"\n");
        assert!(
            e.starts_with("cluster.toml: `model.init` and `model.path` are both set"),
            "{e}"
        );
        let e = err(
            "[model]\ninit = \"tiny\"\n[model.tiny]\nhidden_size = 100\nnum_attention_heads = 3\n",
        );
        assert!(e.starts_with("cluster.toml: `model.tiny`"), "{e}");
        let e = err("[model]\ninit = \"tiny\"\n[[data.mix]]\nops = \"+^\"\n");
        assert!(e.starts_with("cluster.toml: `data.mix` ops"), "{e}");
        let e = err("[model]\ninit = \"tiny\"\n[warmstart]\nsteps = 5\nwrong_fraction = 1.5\n");
        assert!(
            e.starts_with("cluster.toml: `warmstart.wrong_fraction`"),
            "{e}"
        );
        let e = err("[model]\ninit = \"tiny\"\n[eval]\nk = 0\n");
        assert!(e.starts_with("cluster.toml: `eval.k`"), "{e}");
        let e = parse("[model]\ninit = \"huge\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge") || e.contains("model.init"), "{e}");
    }

    #[test]
    fn resolved_toml_round_trips() {
        let c = parse(
            "[model]\npath = \"m\"\n[cluster]\ntoken = { file = \"/etc/laser/token\" }\n",
            &[],
        )
        .unwrap();
        let again = parse(&c.to_toml(), &[]).unwrap();
        assert_eq!(c, again);
    }
}
