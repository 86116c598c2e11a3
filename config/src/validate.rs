//! [`ClusterConfig::validate`]: range checks across sections; the first violation names its key.

use crate::ClusterConfig;
use crate::cluster::ClusterMode;
use crate::data::DataSource;
use crate::error::ClusterConfigError;
use crate::model::ModelInit;

impl ClusterConfig {
    /// Range checks; the first violation names its key.
    pub fn validate(&self, file: &str) -> Result<(), ClusterConfigError> {
        let bad = |key: &'static str, message: String| {
            Err(ClusterConfigError::Invalid {
                file: file.to_string(),
                key,
                message,
            })
        };
        match (&self.model.path, self.model.init) {
            (Some(_), Some(_)) => {
                return bad(
                    "model.init",
                    "and `model.path` are both set: use `path` for an existing model, or `init = \"tiny\"` to build one"
                        .into(),
                );
            }
            (None, Some(ModelInit::Tiny)) => {
                let t = &self.model.tiny;
                if t.hidden_size == 0
                    || t.num_hidden_layers == 0
                    || t.num_attention_heads == 0
                    || t.num_key_value_heads == 0
                    || t.intermediate_size == 0
                    || t.max_position_embeddings == 0
                {
                    return bad("model.tiny", "dimensions must all be at least 1".into());
                }
                if !t.hidden_size.is_multiple_of(t.num_attention_heads)
                    || !t.num_attention_heads.is_multiple_of(t.num_key_value_heads)
                {
                    return bad(
                        "model.tiny",
                        format!(
                            "hidden_size {} must be a multiple of num_attention_heads {}, itself a multiple of num_key_value_heads {}",
                            t.hidden_size, t.num_attention_heads, t.num_key_value_heads
                        ),
                    );
                }
            }
            (None, None) => {
                return bad(
                    "model.path",
                    "is required: the model directory (config.json, *.safetensors, tokenizer.json), or set model.init = \"tiny\""
                        .into(),
                );
            }
            (Some(p), None) if !p.exists() => {
                return bad(
                    "model.path",
                    format!("= {:?}: no such file or directory", p.display().to_string()),
                );
            }
            (Some(_), None) => {}
        }
        if self.data.source == DataSource::Synthetic {
            for (key, levels) in [
                ("data.mix", self.data.levels()),
                ("warmstart.mix", self.warmstart.mix.clone()),
            ] {
                for l in &levels {
                    if l.min_digits == 0 || l.min_digits > l.max_digits || l.max_digits > 18 {
                        return bad(
                            key,
                            format!(
                                "digits must satisfy 1 <= min_digits <= max_digits <= 18 (got {}..={})",
                                l.min_digits, l.max_digits
                            ),
                        );
                    }
                    if l.chain_length == 0 || l.chain_length > 64 {
                        return bad(
                            key,
                            format!("chain_length = {}: must be in 1..=64", l.chain_length),
                        );
                    }
                    if l.ops.is_empty() || l.ops.chars().any(|c| !"+-*/".contains(c)) {
                        return bad(
                            key,
                            format!("ops = {:?}: must be a non-empty string of + - * /", l.ops),
                        );
                    }
                    if !(l.weight > 0.0 && l.weight.is_finite()) {
                        return bad(key, format!("weight = {}: must be > 0", l.weight));
                    }
                }
            }
        }
        let w = &self.warmstart;
        if w.steps > 0 {
            if w.batch_size == 0 || w.micro_batch_size == 0 {
                return bad(
                    "warmstart.batch_size",
                    "and warmstart.micro_batch_size must be at least 1".into(),
                );
            }
            if !(w.lr > 0.0 && w.lr.is_finite()) {
                return bad("warmstart.lr", format!("= {}: must be > 0", w.lr));
            }
            if !(0.0..=1.0).contains(&w.wrong_fraction) {
                return bad(
                    "warmstart.wrong_fraction",
                    format!("= {}: must be in [0, 1]", w.wrong_fraction),
                );
            }
            if !(0.0..=1.0).contains(&w.min_lr_ratio) {
                return bad(
                    "warmstart.min_lr_ratio",
                    format!("= {}: must be in [0, 1]", w.min_lr_ratio),
                );
            }
            if let Some(p) = &w.path
                && !p.exists()
            {
                return bad(
                    "warmstart.path",
                    format!("= {:?}: no such file", p.display().to_string()),
                );
            }
        }
        if self.eval.enabled {
            if self.eval.k == 0 {
                return bad("eval.k", "= 0: must be at least 1".into());
            }
            if self.eval.temperature < 0.0 {
                return bad(
                    "eval.temperature",
                    format!("= {}: must be >= 0", self.eval.temperature),
                );
            }
            if self.data.eval_path.is_none()
                && self.data.source == DataSource::Synthetic
                && self.eval.problems == 0
            {
                return bad(
                    "eval.problems",
                    "= 0: synthetic evaluation needs at least 1 problem (or set eval.enabled = false)"
                        .into(),
                );
            }
        }
        if self.algorithm.c_ref.is_none() && self.algorithm.calibration_samples == 0 {
            return bad(
                "algorithm.calibration_samples",
                "= 0 with no algorithm.c_ref: c_ref must be calibrated or configured".into(),
            );
        }
        if matches!(self.data.source, DataSource::Jsonl | DataSource::Parquet)
            && self.data.path.is_none()
        {
            return bad(
                "data.path",
                format!(
                    "is required when data.source = \"{}\"",
                    if self.data.source == DataSource::Parquet {
                        "parquet"
                    } else {
                        "jsonl"
                    }
                ),
            );
        }
        let c = &self.data.columns;
        for (field, names) in [
            ("data.columns.question", &c.question),
            ("data.columns.answer", &c.answer),
            ("data.columns.id", &c.id),
            ("data.columns.data_source", &c.data_source),
        ] {
            if names
                .as_ref()
                .is_some_and(|n| n.is_empty() || n.iter().any(|n| n.trim().is_empty()))
            {
                return bad(field, "must list at least one non-empty column name".into());
            }
        }
        let a = &self.algorithm;
        let checks: [(&'static str, bool, String); 15] = [
            (
                "algorithm.group_size",
                a.group_size >= 2,
                format!(
                    "= {}: GRPO needs at least 2 samples per prompt",
                    a.group_size
                ),
            ),
            (
                "algorithm.batch_prompts",
                a.batch_prompts >= 1,
                format!("= {}: must be at least 1", a.batch_prompts),
            ),
            (
                "algorithm.micro_batch_size",
                a.micro_batch_size >= 1,
                format!("= {}: must be at least 1", a.micro_batch_size),
            ),
            (
                "algorithm.lr",
                a.lr > 0.0 && a.lr.is_finite(),
                format!("= {}: must be > 0", a.lr),
            ),
            (
                "algorithm.beta_v",
                a.beta_v > 0.0 && a.beta_v.is_finite(),
                format!("= {}: must be > 0", a.beta_v),
            ),
            (
                "algorithm.alpha",
                a.alpha >= 0.0,
                format!("= {}: must be >= 0", a.alpha),
            ),
            (
                "algorithm.tau",
                (0.0..=1.0).contains(&a.tau),
                format!("= {}: must be in [0, 1]", a.tau),
            ),
            (
                "algorithm.std_threshold",
                a.std_threshold >= 0.0,
                format!("= {}: must be >= 0", a.std_threshold),
            ),
            (
                "algorithm.temperature",
                a.temperature > 0.0,
                format!("= {}: must be > 0", a.temperature),
            ),
            (
                "algorithm.top_p",
                a.top_p > 0.0 && a.top_p <= 1.0,
                format!("= {}: must be in (0, 1]", a.top_p),
            ),
            (
                "algorithm.max_response_tokens",
                a.max_response_tokens >= 1,
                format!("= {}: must be at least 1", a.max_response_tokens),
            ),
            (
                "cluster.actors",
                self.cluster.actors >= 1 || self.cluster.mode == ClusterMode::External,
                format!(
                    "= {}: local mode needs at least 1 actor",
                    self.cluster.actors
                ),
            ),
            (
                "cluster.learner_ranks",
                self.cluster.learner_ranks >= 1,
                format!("= {}: at least 1 learner rank", self.cluster.learner_ranks),
            ),
            (
                "cluster.learner_zero_stage",
                self.cluster.learner_zero_stage <= 1,
                format!(
                    "= {}: 0 (whole optimiser state on every rank) or 1 (ZeRO-1: sharded AdamW moments)",
                    self.cluster.learner_zero_stage
                ),
            ),
            (
                "cluster.verifiers",
                self.cluster.verifiers >= 1 || self.cluster.mode == ClusterMode::External,
                format!(
                    "= {}: local mode needs at least 1 verifier",
                    self.cluster.verifiers
                ),
            ),
        ];
        for (key, ok, message) in checks {
            if !ok {
                return bad(key, message);
            }
        }
        if self.cluster.max_message_mb == 0 {
            return bad("cluster.max_message_mb", "= 0: must be at least 1".into());
        }
        if self.cluster.mode == ClusterMode::External && self.cluster.token.is_none() {
            return bad(
                "cluster.token",
                "is required in external mode (e.g. token = { env = \"LASER_CLUSTER_TOKEN\" })"
                    .into(),
            );
        }
        if !(0.0..=1.0).contains(&self.algorithm.min_lr_ratio) {
            return bad(
                "algorithm.min_lr_ratio",
                format!("= {}: must be in [0, 1]", self.algorithm.min_lr_ratio),
            );
        }
        if self.run.max_steps == 0 {
            return bad("run.max_steps", "= 0: must be at least 1".into());
        }
        self.rewards
            .validate()
            .map_err(|source| ClusterConfigError::Rewards {
                file: file.to_string(),
                source,
            })
    }
}
