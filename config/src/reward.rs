//! `[rewards]`: which reward function grades a task, chosen by its `data_source` (verl's dataset
//! tag). Optional: without the section every task gets the math grader, as before. The verifier
//! builds its reward registry from this section; the protocol of `kind = "external"` is in
//! docs/REWARDS.md.
//!
//! ```toml
//! [rewards]
//! default = "math"                 # empty or unlisted data_source
//! [[rewards.routes]]
//! data_source = "my/regex-task"
//! kind = "regex"
//! pattern = 'Answer:\s*(?P<answer>\S+)'
//! [[rewards.routes]]
//! data_source = "my/python"
//! kind = "external"
//! command = ["python3", "my_reward.py"]
//! timeout_ms = 5000
//! memory_mb = 512
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Per-item deadline of an external reward unless `timeout_ms` says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Address-space bound of an external reward unless `memory_mb` says otherwise.
pub const DEFAULT_MEMORY_MB: u64 = 1024;
/// Longest `timeout_ms` accepted: a Grade call must stay well inside the coordinator's deadline.
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// What grades a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// The built-in math grader (boxed extraction, LaTeX, equivalence): the default.
    Math,
    /// 1 when the response equals the gold answer after trimming surrounding whitespace.
    ExactMatch,
    /// 1 when the last match of `pattern` in the response (its `answer` group if it has one,
    /// else the whole match), trimmed, equals the trimmed gold answer.
    Regex,
    /// A long-lived child process speaking JSON lines (docs/REWARDS.md).
    External,
}

impl RewardKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RewardKind::Math => "math",
            RewardKind::ExactMatch => "exact_match",
            RewardKind::Regex => "regex",
            RewardKind::External => "external",
        }
    }
}

/// `[[rewards.routes]]`: the reward of one `data_source`. The fields after `kind` belong to one
/// kind each; setting one for another kind is an error rather than silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardRoute {
    /// The tag as the data has it (verl's `data_source` column), matched exactly.
    pub data_source: String,
    pub kind: RewardKind,
    /// `regex`: the pattern searched in the response (Rust `regex` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `external`: program and arguments, run without a shell; a bare program name is looked
    /// up on PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `external`: working directory of the process; default: the verifier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<PathBuf>,
    /// `external`: per-item deadline in milliseconds (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `external`: address-space bound of the process in MiB (RLIMIT_AS; default 1024; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

impl RewardRoute {
    /// A route of `kind` with no kind-specific settings.
    pub fn new(data_source: impl Into<String>, kind: RewardKind) -> Self {
        Self {
            data_source: data_source.into(),
            kind,
            pattern: None,
            command: None,
            workdir: None,
            timeout_ms: None,
            memory_mb: None,
        }
    }

    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    pub fn memory_mb(&self) -> u64 {
        self.memory_mb.unwrap_or(DEFAULT_MEMORY_MB)
    }
}

/// `[rewards]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RewardsSection {
    /// The reward of an empty or unlisted `data_source`: `"math"`, `"exact_match"`, or the
    /// `data_source` of one of `routes` (whose reward then also takes the unlisted tags).
    pub default: String,
    pub routes: Vec<RewardRoute>,
}

impl Default for RewardsSection {
    fn default() -> Self {
        Self {
            default: RewardKind::Math.as_str().into(),
            routes: Vec::new(),
        }
    }
}

/// What [`RewardsSection::default`] resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultReward {
    Math,
    ExactMatch,
    /// Index into `routes`.
    Route(usize),
}

/// A bad value in `[rewards]`; `key` is the full path, e.g. `rewards.routes[2].pattern`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{key}` {message}")]
pub struct RewardsError {
    pub key: String,
    pub message: String,
}

impl RewardsSection {
    /// Resolves `default`; call after [`validate`](Self::validate) or handle the error.
    pub fn default_reward(&self) -> Result<DefaultReward, RewardsError> {
        match self.default.as_str() {
            "math" => return Ok(DefaultReward::Math),
            "exact_match" => return Ok(DefaultReward::ExactMatch),
            _ => {}
        }
        self.routes
            .iter()
            .position(|r| r.data_source == self.default)
            .map(DefaultReward::Route)
            .ok_or_else(|| RewardsError {
                key: "rewards.default".into(),
                message: format!(
                    "= {:?}: must be \"math\", \"exact_match\" or the data_source of one of rewards.routes",
                    self.default
                ),
            })
    }

    /// Checks every route; the first problem names its field (`rewards.routes[i].…`, counting the
    /// `[[rewards.routes]]` tables from 0).
    pub fn validate(&self) -> Result<(), RewardsError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, r) in self.routes.iter().enumerate() {
            let err = |field: &str, message: String| RewardsError {
                key: format!("rewards.routes[{i}].{field}"),
                message,
            };
            if r.data_source.trim().is_empty() {
                return Err(err(
                    "data_source",
                    "is empty: tasks without a data_source take rewards.default".into(),
                ));
            }
            if let Some(first) = seen.insert(r.data_source.as_str(), i) {
                return Err(err(
                    "data_source",
                    format!(
                        "= {:?}: already routed by rewards.routes[{first}]",
                        r.data_source
                    ),
                ));
            }
            let only = |field: &str, set: bool, kind: RewardKind| {
                if set && r.kind != kind {
                    Err(err(
                        field,
                        format!(
                            "only applies to kind = \"{}\" (this route is kind = \"{}\")",
                            kind.as_str(),
                            r.kind.as_str()
                        ),
                    ))
                } else {
                    Ok(())
                }
            };
            only("pattern", r.pattern.is_some(), RewardKind::Regex)?;
            only("command", r.command.is_some(), RewardKind::External)?;
            only("workdir", r.workdir.is_some(), RewardKind::External)?;
            only("timeout_ms", r.timeout_ms.is_some(), RewardKind::External)?;
            only("memory_mb", r.memory_mb.is_some(), RewardKind::External)?;
            match r.kind {
                RewardKind::Math | RewardKind::ExactMatch => {}
                RewardKind::Regex => {
                    let Some(p) = &r.pattern else {
                        return Err(err("pattern", "is required for kind = \"regex\"".into()));
                    };
                    if let Err(e) = regex::Regex::new(p) {
                        return Err(err("pattern", format!("= {p:?}: invalid regex: {e}")));
                    }
                }
                RewardKind::External => {
                    match &r.command {
                        None => {
                            return Err(err(
                                "command",
                                "is required for kind = \"external\", e.g. [\"python3\", \"my_reward.py\"]"
                                    .into(),
                            ));
                        }
                        Some(c) if c.first().is_none_or(|p| p.trim().is_empty()) => {
                            return Err(err(
                                "command",
                                "must start with a program name, e.g. [\"python3\", \"my_reward.py\"]"
                                    .into(),
                            ));
                        }
                        Some(_) => {}
                    }
                    let t = r.timeout_ms();
                    if !(1..=MAX_TIMEOUT_MS).contains(&t) {
                        return Err(err(
                            "timeout_ms",
                            format!("= {t}: must be in 1..={MAX_TIMEOUT_MS}"),
                        ));
                    }
                    let m = r.memory_mb();
                    if m != 0 && m < 16 {
                        return Err(err(
                            "memory_mb",
                            format!(
                                "= {m}: too small to start a process (at least 16, or 0 for no bound)"
                            ),
                        ));
                    }
                    if m > (1 << 24) {
                        return Err(err(
                            "memory_mb",
                            format!("= {m}: at most {} (16 TiB), or 0 for no bound", 1u64 << 24),
                        ));
                    }
                }
            }
        }
        self.default_reward().map(|_| ())
    }

    /// The route of `data_source`, if it has one (not the default).
    pub fn route(&self, data_source: &str) -> Option<&RewardRoute> {
        self.routes.iter().find(|r| r.data_source == data_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RewardsSection {
        #[derive(Deserialize)]
        struct File {
            rewards: RewardsSection,
        }
        toml::from_str::<File>(text).unwrap().rewards
    }

    fn err(text: &str) -> String {
        parse(text).validate().unwrap_err().to_string()
    }

    #[test]
    fn the_suggested_shape_parses_and_validates() {
        let r = parse(
            r#"
[rewards]
default = "math"
[[rewards.routes]]
data_source = "openai/gsm8k"
kind = "math"
[[rewards.routes]]
data_source = "my/regex-task"
kind = "regex"
pattern = '^\s*(?P<answer>.+?)\s*$'
[[rewards.routes]]
data_source = "my/python"
kind = "external"
command = ["python3", "my_reward.py"]
timeout_ms = 2500
memory_mb = 512
"#,
        );
        r.validate().unwrap();
        assert_eq!(r.default_reward().unwrap(), DefaultReward::Math);
        assert_eq!(r.routes.len(), 3);
        let ext = r.route("my/python").unwrap();
        assert_eq!((ext.timeout_ms(), ext.memory_mb()), (2500, 512));
        assert!(r.route("other").is_none());
        assert_eq!(RewardsSection::default().routes.len(), 0);
        RewardsSection::default().validate().unwrap();
    }

    #[test]
    fn defaults_of_an_external_route() {
        let r = parse(
            "[rewards]\n[[rewards.routes]]\ndata_source = \"x\"\nkind = \"external\"\ncommand = [\"sh\"]\n",
        );
        r.validate().unwrap();
        assert_eq!(
            (r.routes[0].timeout_ms(), r.routes[0].memory_mb()),
            (DEFAULT_TIMEOUT_MS, DEFAULT_MEMORY_MB)
        );
    }

    #[test]
    fn default_may_name_a_route() {
        let r = parse(
            "[rewards]\ndefault = \"mine\"\n[[rewards.routes]]\ndata_source = \"mine\"\nkind = \"exact_match\"\n",
        );
        r.validate().unwrap();
        assert_eq!(r.default_reward().unwrap(), DefaultReward::Route(0));
        let e = err("[rewards]\ndefault = \"nope\"\n");
        assert!(
            e.starts_with("`rewards.default` = \"nope\": must be"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let routes = "[rewards]\n[[rewards.routes]]\ndata_source = \"a\"\nkind = \"math\"\n\
                      [[rewards.routes]]\ndata_source = \"b\"\nkind = \"exact_match\"\n";
        let e = err(&format!(
            "{routes}[[rewards.routes]]\ndata_source = \"c\"\nkind = \"regex\"\npattern = '(unclosed'\n"
        ));
        assert!(
            e.starts_with("`rewards.routes[2].pattern` = \"(unclosed\": invalid regex"),
            "{e}"
        );
        let e = err(&format!(
            "{routes}[[rewards.routes]]\ndata_source = \"c\"\nkind = \"regex\"\n"
        ));
        assert_eq!(
            e,
            "`rewards.routes[2].pattern` is required for kind = \"regex\""
        );
        let e = err(&format!(
            "{routes}[[rewards.routes]]\ndata_source = \"a\"\nkind = \"math\"\n"
        ));
        assert!(
            e.starts_with(
                "`rewards.routes[2].data_source` = \"a\": already routed by rewards.routes[0]"
            ),
            "{e}"
        );
        let e = err("[rewards]\n[[rewards.routes]]\ndata_source = \" \"\nkind = \"math\"\n");
        assert!(
            e.starts_with("`rewards.routes[0].data_source` is empty"),
            "{e}"
        );
        let e = err(
            "[rewards]\n[[rewards.routes]]\ndata_source = \"a\"\nkind = \"math\"\npattern = \"x\"\n",
        );
        assert!(
            e.starts_with("`rewards.routes[0].pattern` only applies to kind = \"regex\""),
            "{e}"
        );
        let e = err(
            "[rewards]\n[[rewards.routes]]\ndata_source = \"a\"\nkind = \"regex\"\npattern = \"x\"\ntimeout_ms = 5\n",
        );
        assert!(
            e.starts_with("`rewards.routes[0].timeout_ms` only applies to kind = \"external\""),
            "{e}"
        );
        let ext = "[rewards]\n[[rewards.routes]]\ndata_source = \"e\"\nkind = \"external\"\n";
        let e = err(ext);
        assert!(
            e.starts_with("`rewards.routes[0].command` is required"),
            "{e}"
        );
        let e = err(&format!("{ext}command = []\n"));
        assert!(
            e.starts_with("`rewards.routes[0].command` must start with a program"),
            "{e}"
        );
        let e = err(&format!("{ext}command = [\"sh\"]\ntimeout_ms = 0\n"));
        assert!(
            e.starts_with("`rewards.routes[0].timeout_ms` = 0: must be in 1..="),
            "{e}"
        );
        let e = err(&format!("{ext}command = [\"sh\"]\nmemory_mb = 4\n"));
        assert!(
            e.starts_with("`rewards.routes[0].memory_mb` = 4: too small"),
            "{e}"
        );
        parse(&format!("{ext}command = [\"sh\"]\nmemory_mb = 0\n"))
            .validate()
            .unwrap();
    }

    #[test]
    fn unknown_keys_and_kinds_are_refused() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct File {
            rewards: RewardsSection,
        }
        let e = toml::from_str::<File>(
            "[rewards]\n[[rewards.routes]]\ndata_source = \"a\"\nkind = \"python\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("python"), "{e}");
        let e = toml::from_str::<File>(
            "[rewards]\n[[rewards.routes]]\ndata_source = \"a\"\nkind = \"regex\"\npatern = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("patern"), "{e}");
    }

    #[test]
    fn cluster_toml_rewards_are_optional_validated_and_round_trip() {
        let parse = |text: &str| {
            crate::ClusterConfig::from_toml_with_env(text, "cluster.toml", std::iter::empty())
                .unwrap()
        };
        let plain = parse("[model]\ninit = \"tiny\"\n");
        assert_eq!(plain.rewards, RewardsSection::default());
        plain.validate("cluster.toml").unwrap();
        let c = parse(
            "[model]\ninit = \"tiny\"\n[rewards]\ndefault = \"exact_match\"\n\
             [[rewards.routes]]\ndata_source = \"e\"\nkind = \"external\"\ncommand = [\"python3\", \"r.py\"]\nmemory_mb = 256\n",
        );
        c.validate("cluster.toml").unwrap();
        assert_eq!(parse(&c.to_toml()), c);
        let bad = parse(
            "[model]\ninit = \"tiny\"\n[[rewards.routes]]\ndata_source = \"r\"\nkind = \"regex\"\npattern = \"[\"\n",
        );
        let e = bad.validate("cluster.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("cluster.toml: `rewards.routes[0].pattern` = \"[\": invalid regex"),
            "{e}"
        );
    }
}
