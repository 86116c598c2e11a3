//! The reward registry: which reward function grades an item, chosen by its `data_source`
//! (verl's dataset tag) from cluster.toml's `[rewards]` ([`laser_config::RewardsSection`]).
//!
//! Kinds: `math` (the [`Grader`], the default, its code path unchanged), `exact_match`, `regex`,
//! and `external`, a long-lived child process speaking JSON lines ([`external`], protocol in
//! docs/REWARDS.md) so that a user's Python reward works without being a dependency of ours.
//! A failing reward never fails a batch: its items come back as [`RewardStatus::Error`] with the
//! reason, every item keeps its place, and routes of one batch run side by side so a hung
//! process only delays its own items (by its deadline).
//!
//! ```
//! use laser_config::{RewardKind, RewardRoute, RewardsSection};
//! use laser_verifier::reward::{RewardItem, RewardRegistry, RewardStatus};
//! use laser_verifier::{Grader, GraderConfig};
//! let mut rewards = RewardsSection::default();
//! rewards.routes.push(RewardRoute::new("quiz", RewardKind::ExactMatch));
//! let registry = RewardRegistry::new(Grader::new(GraderConfig::default()), &rewards).unwrap();
//! let r = registry.grade_items(&[
//!     RewardItem { data_source: "quiz", gold: "Paris", response: " Paris\n" },
//!     RewardItem { data_source: "", gold: "4", response: "\\boxed{4}" },
//! ]);
//! assert_eq!((r[0].reward, r[0].status), (1.0, RewardStatus::Correct));
//! assert_eq!((r[1].reward, r[1].status), (1.0, RewardStatus::Correct));
//! ```

pub mod external;

use std::collections::HashMap;

use laser_config::{DefaultReward, RewardKind, RewardRoute, RewardsError, RewardsSection};
use regex::Regex;
use serde::Serialize;

use crate::{Grade, Grader, Status};

pub use external::{ExternalConfig, ExternalError, ExternalReward, Scored};

/// One item to grade.
#[derive(Debug, Clone, Copy)]
pub struct RewardItem<'a> {
    /// The task's dataset tag; empty: the default reward.
    pub data_source: &'a str,
    pub gold: &'a str,
    pub response: &'a str,
}

/// How a reward judged an item: the math grader's verdicts plus `Error`, the reward itself failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardStatus {
    Correct,
    Incorrect,
    NoAnswer,
    Unparseable,
    Timeout,
    /// The reward function failed (crashed, hung past its deadline, out of memory, garbage).
    Error,
}

impl From<Status> for RewardStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Correct => RewardStatus::Correct,
            Status::Incorrect => RewardStatus::Incorrect,
            Status::NoAnswer => RewardStatus::NoAnswer,
            Status::Unparseable => RewardStatus::Unparseable,
            Status::Timeout => RewardStatus::Timeout,
        }
    }
}

/// The result of one item, whatever graded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RewardResult {
    /// In [0, 1]; 0 on error. Math, exact match and regex give 0 or 1.
    pub reward: f32,
    pub status: RewardStatus,
    /// The answer taken from the response (or the external reward's `extracted`), for logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    /// `Error`: what failed, naming the reward (``reward `my/python`: …``).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl From<Grade> for RewardResult {
    fn from(g: Grade) -> Self {
        Self {
            reward: f32::from(g.reward),
            status: g.status.into(),
            extracted: g.extracted,
            error: None,
        }
    }
}

impl RewardResult {
    fn binary(correct: bool, extracted: Option<String>) -> Self {
        Self {
            reward: if correct { 1.0 } else { 0.0 },
            status: if correct {
                RewardStatus::Correct
            } else {
                RewardStatus::Incorrect
            },
            extracted,
            error: None,
        }
    }

    fn error(message: String) -> Self {
        Self {
            reward: 0.0,
            status: RewardStatus::Error,
            extracted: None,
            error: Some(message),
        }
    }
}

/// `exact_match`: the response equals gold after trimming surrounding whitespace.
pub fn exact_match(gold: &str, response: &str) -> RewardResult {
    let answer = response.trim();
    if answer.is_empty() {
        return RewardResult {
            reward: 0.0,
            status: RewardStatus::NoAnswer,
            extracted: None,
            error: None,
        };
    }
    RewardResult::binary(answer == gold.trim(), Some(answer.to_string()))
}

/// `regex`: the last match of `re` in the response (its `answer` group when the pattern has
/// one, else the whole match), trimmed, equals the trimmed gold. The last match because a
/// response states its final answer last; no match: no answer.
pub fn regex_match(re: &Regex, gold: &str, response: &str) -> RewardResult {
    let Some(caps) = re.captures_iter(response).last() else {
        return RewardResult {
            reward: 0.0,
            status: RewardStatus::NoAnswer,
            extracted: None,
            error: None,
        };
    };
    let whole = caps.get(0).map_or("", |m| m.as_str());
    let answer = caps.name("answer").map_or(whole, |m| m.as_str()).trim();
    RewardResult::binary(answer == gold.trim(), Some(answer.to_string()))
}

enum Reward {
    Math,
    ExactMatch,
    Regex(Regex),
    External(ExternalReward),
}

struct Entry {
    /// The route's data_source, or the built-in kind's name: the `reward \`…\`` of errors.
    name: String,
    reward: Reward,
}

/// Rewards by `data_source`; built once from `[rewards]`, shared by every Grade call.
pub struct RewardRegistry {
    grader: Grader,
    entries: Vec<Entry>,
    routes: HashMap<String, usize>,
    default: usize,
}

impl RewardRegistry {
    /// Every item gets the math grader: the registry of a cluster.toml without `[rewards]`.
    pub fn math_only(grader: Grader) -> Self {
        Self {
            grader,
            entries: vec![Entry {
                name: RewardKind::Math.as_str().into(),
                reward: Reward::Math,
            }],
            routes: HashMap::new(),
            default: 0,
        }
    }

    /// Validates `section` and builds its rewards; external processes start on first use.
    pub fn new(grader: Grader, section: &RewardsSection) -> Result<Self, RewardsError> {
        section.validate()?;
        let mut entries = Vec::with_capacity(section.routes.len() + 1);
        let mut routes = HashMap::new();
        for (i, route) in section.routes.iter().enumerate() {
            entries.push(Entry {
                name: route.data_source.clone(),
                reward: build(i, route)?,
            });
            routes.insert(route.data_source.clone(), i);
        }
        let default = match section.default_reward()? {
            DefaultReward::Route(i) => i,
            builtin => {
                let (name, reward) = match builtin {
                    DefaultReward::ExactMatch => (RewardKind::ExactMatch, Reward::ExactMatch),
                    _ => (RewardKind::Math, Reward::Math),
                };
                entries.push(Entry {
                    name: name.as_str().into(),
                    reward,
                });
                entries.len() - 1
            }
        };
        Ok(Self {
            grader,
            entries,
            routes,
            default,
        })
    }

    pub fn grader(&self) -> &Grader {
        &self.grader
    }

    /// The name of the reward that grades `data_source` (its route, or the default's).
    pub fn reward_name(&self, data_source: &str) -> &str {
        &self.entries[self.index(data_source)].name
    }

    fn index(&self, data_source: &str) -> usize {
        self.routes
            .get(data_source)
            .copied()
            .unwrap_or(self.default)
    }

    /// Grades `items`, one result per item in order. Never fails as a whole: a failing reward
    /// gives its items [`RewardStatus::Error`]. Math items go through one
    /// [`Grader::grade_batch`] as before; each external route runs on its own thread meanwhile.
    pub fn grade_items(&self, items: &[RewardItem<'_>]) -> Vec<RewardResult> {
        let routed: Vec<usize> = items.iter().map(|i| self.index(i.data_source)).collect();
        let is_math = |k: usize| matches!(self.entries[k].reward, Reward::Math);
        if routed.iter().all(|&k| is_math(k)) {
            // The default job: exactly today's call.
            let pairs: Vec<(&str, &str)> = items.iter().map(|i| (i.gold, i.response)).collect();
            return self
                .grader
                .grade_batch(&pairs)
                .into_iter()
                .map(RewardResult::from)
                .collect();
        }
        let mut out: Vec<Option<RewardResult>> = vec![None; items.len()];
        // (entry, its item indices in request order), per external route.
        let mut external: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut math = Vec::new();
        for (at, &k) in routed.iter().enumerate() {
            let item = &items[at];
            match &self.entries[k].reward {
                Reward::Math => math.push(at),
                Reward::ExactMatch => out[at] = Some(exact_match(item.gold, item.response)),
                Reward::Regex(re) => out[at] = Some(regex_match(re, item.gold, item.response)),
                Reward::External(_) => match external.iter_mut().find(|(e, _)| *e == k) {
                    Some((_, ats)) => ats.push(at),
                    None => external.push((k, vec![at])),
                },
            }
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = external
                .iter()
                .map(|(k, ats)| {
                    let entry = &self.entries[*k];
                    scope.spawn(move || {
                        let Reward::External(ext) = &entry.reward else {
                            unreachable!("only external entries are collected here")
                        };
                        let batch: Vec<RewardItem<'_>> = ats.iter().map(|&a| items[a]).collect();
                        let results = ext.grade_batch(&batch);
                        ats.iter()
                            .copied()
                            .zip(results)
                            .map(|(a, r)| (a, external_result(&entry.name, r)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            if !math.is_empty() {
                let pairs: Vec<(&str, &str)> = math
                    .iter()
                    .map(|&a| (items[a].gold, items[a].response))
                    .collect();
                for (&a, g) in math.iter().zip(self.grader.grade_batch(&pairs)) {
                    out[a] = Some(g.into());
                }
            }
            for (h, (k, ats)) in handles.into_iter().zip(&external) {
                match h.join() {
                    Ok(results) => {
                        for (a, r) in results {
                            out[a] = Some(r);
                        }
                    }
                    // A bug of ours, not the user's reward; the batch still completes.
                    Err(_) => {
                        for &a in ats {
                            out[a] = Some(RewardResult::error(format!(
                                "reward `{}`: the verifier's grading thread panicked",
                                self.entries[*k].name
                            )));
                        }
                    }
                }
            }
        });
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| RewardResult::error("the verifier graded no result".into()))
            })
            .collect()
    }
}

fn external_result(name: &str, r: Result<Scored, ExternalError>) -> RewardResult {
    match r {
        Ok(s) => RewardResult {
            reward: s.reward,
            // Partial credit carries its reward; only full credit counts as correct.
            status: if s.reward >= 1.0 {
                RewardStatus::Correct
            } else {
                RewardStatus::Incorrect
            },
            extracted: s.extracted,
            error: None,
        },
        Err(e) => RewardResult::error(format!("reward `{name}`: {e}")),
    }
}

fn build(i: usize, route: &RewardRoute) -> Result<Reward, RewardsError> {
    Ok(match route.kind {
        RewardKind::Math => Reward::Math,
        RewardKind::ExactMatch => Reward::ExactMatch,
        RewardKind::Regex => {
            let pattern = route.pattern.as_deref().unwrap_or_default();
            Reward::Regex(Regex::new(pattern).map_err(|e| RewardsError {
                key: format!("rewards.routes[{i}].pattern"),
                message: format!("= {pattern:?}: invalid regex: {e}"),
            })?)
        }
        RewardKind::External => {
            Reward::External(ExternalReward::new(ExternalConfig::from_route(route)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GraderConfig;

    fn registry(toml_text: &str) -> Result<RewardRegistry, RewardsError> {
        let section = laser_config::ClusterConfig::from_toml_with_env(
            toml_text,
            "t.toml",
            std::iter::empty(),
        )
        .unwrap()
        .rewards;
        RewardRegistry::new(Grader::new(GraderConfig::default()), &section)
    }

    fn item<'a>(data_source: &'a str, gold: &'a str, response: &'a str) -> RewardItem<'a> {
        RewardItem {
            data_source,
            gold,
            response,
        }
    }

    #[test]
    fn exact_match_trims_and_nothing_else() {
        assert_eq!(
            exact_match("Paris", "  Paris\n").status,
            RewardStatus::Correct
        );
        assert_eq!(exact_match(" 42 ", "42").reward, 1.0);
        let r = exact_match("Paris", "paris");
        assert_eq!((r.reward, r.status), (0.0, RewardStatus::Incorrect));
        assert_eq!(r.extracted.as_deref(), Some("paris"));
        assert_eq!(
            exact_match("4", "\\boxed{4}").status,
            RewardStatus::Incorrect,
            "no extraction: exact means exact"
        );
        assert_eq!(exact_match("4", " \n ").status, RewardStatus::NoAnswer);
    }

    #[test]
    fn regex_takes_the_answer_group_of_the_last_match() {
        let re = Regex::new(r"Answer:\s*(?P<answer>[^\n]+)").unwrap();
        let r = regex_match(&re, "B", "Answer: A\nwait, no.\nAnswer:  B \n");
        assert_eq!((r.reward, r.status), (1.0, RewardStatus::Correct));
        assert_eq!(r.extracted.as_deref(), Some("B"));
        let r = regex_match(&re, "A", "Answer: A\nAnswer: B");
        assert_eq!(r.status, RewardStatus::Incorrect);
        let r = regex_match(&re, "A", "I think A");
        assert_eq!((r.reward, r.status), (0.0, RewardStatus::NoAnswer));
        // Without an `answer` group: the whole match.
        let re = Regex::new(r"-?\d+").unwrap();
        let r = regex_match(&re, "12", "3 then 7 then 12");
        assert_eq!(
            (r.status, r.extracted.as_deref()),
            (RewardStatus::Correct, Some("12"))
        );
    }

    #[test]
    fn routes_by_data_source_and_falls_back_to_the_default() {
        let reg = registry(
            r#"
[rewards]
[[rewards.routes]]
data_source = "quiz"
kind = "exact_match"
[[rewards.routes]]
data_source = "letters"
kind = "regex"
pattern = '\((?P<answer>[A-D])\)'
[[rewards.routes]]
data_source = "openai/gsm8k"
kind = "math"
"#,
        )
        .unwrap();
        assert_eq!(reg.reward_name("quiz"), "quiz");
        assert_eq!(reg.reward_name(""), "math");
        assert_eq!(reg.reward_name("unlisted"), "math");
        let items = [
            item("quiz", "Paris", "Paris"),
            item("", "4", "\\boxed{4}"),
            item("letters", "C", "It is (B)... no, (C)."),
            item("quiz", "Paris", "\\boxed{Paris}"),
            item("openai/gsm8k", "1/2", "\\boxed{0.5}"),
            item("unlisted", "7", "\\boxed{8}"),
            item("letters", "C", "no idea"),
        ];
        let r = reg.grade_items(&items);
        let got: Vec<(f32, RewardStatus)> = r.iter().map(|r| (r.reward, r.status)).collect();
        use RewardStatus::*;
        assert_eq!(
            got,
            [
                (1.0, Correct),
                (1.0, Correct),
                (1.0, Correct),
                (0.0, Incorrect),
                (1.0, Correct),
                (0.0, Incorrect),
                (0.0, NoAnswer),
            ]
        );
        assert!(r.iter().all(|r| r.error.is_none()));
    }

    #[test]
    fn math_results_are_the_graders_own() {
        let grader = Grader::new(GraderConfig::default());
        let pairs = [
            ("\\frac{1}{2}", "so \\boxed{0.5}"),
            ("7", "I am not sure."),
            ("x^2", "\\boxed{x*x}"),
            ("3", "the answer is 4"),
        ];
        let want: Vec<RewardResult> = grader
            .grade_batch(&pairs)
            .into_iter()
            .map(RewardResult::from)
            .collect();
        let items: Vec<RewardItem<'_>> = pairs.iter().map(|(g, r)| item("", g, r)).collect();
        assert_eq!(RewardRegistry::math_only(grader).grade_items(&items), want);
        // Also through a registry with other routes, mixed with their items.
        let reg =
            registry("[[rewards.routes]]\ndata_source = \"q\"\nkind = \"exact_match\"\n").unwrap();
        let mut mixed = items.clone();
        mixed.insert(1, item("q", "a", "a"));
        let mut got = reg.grade_items(&mixed);
        assert_eq!(got.remove(1).status, RewardStatus::Correct);
        assert_eq!(got, want);
    }

    #[test]
    fn default_can_be_exact_match_or_a_route() {
        let reg = registry("[rewards]\ndefault = \"exact_match\"\n").unwrap();
        assert_eq!(reg.reward_name("anything"), "exact_match");
        assert_eq!(
            reg.grade_items(&[item("", "4", "\\boxed{4}")])[0].status,
            RewardStatus::Incorrect
        );
        let reg = registry(
            "[rewards]\ndefault = \"mine\"\n[[rewards.routes]]\ndata_source = \"mine\"\nkind = \"regex\"\npattern = '\\d+'\n",
        )
        .unwrap();
        assert_eq!(reg.reward_name("other"), "mine");
        assert_eq!(
            reg.grade_items(&[item("other", "4", "\\boxed{4}")])[0].status,
            RewardStatus::Correct
        );
    }

    #[test]
    fn bad_config_names_the_field() {
        let e = registry(
            "[[rewards.routes]]\ndata_source = \"a\"\nkind = \"math\"\n\
             [[rewards.routes]]\ndata_source = \"b\"\nkind = \"math\"\n\
             [[rewards.routes]]\ndata_source = \"c\"\nkind = \"regex\"\npattern = '(?P<answer>'\n",
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with("`rewards.routes[2].pattern` = \"(?P<answer>\": invalid regex"),
            "{e}"
        );
        let e = registry("[[rewards.routes]]\ndata_source = \"x\"\nkind = \"external\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("`rewards.routes[0].command` is required"),
            "{e}"
        );
        let e = registry("[rewards]\ndefault = \"python\"\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("`rewards.default` = \"python\""), "{e}");
    }

    #[test]
    fn a_failing_external_route_errors_only_its_items() {
        let reg = registry(
            r#"
[[rewards.routes]]
data_source = "broken"
kind = "external"
command = ["/nonexistent/reward-program"]
"#,
        )
        .unwrap();
        let r = reg.grade_items(&[
            item("", "4", "\\boxed{4}"),
            item("broken", "4", "4"),
            item("", "5", "\\boxed{4}"),
        ]);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].status, RewardStatus::Correct);
        assert_eq!((r[1].reward, r[1].status), (0.0, RewardStatus::Error));
        let e = r[1].error.as_deref().unwrap();
        assert!(
            e.starts_with("reward `broken`: could not start `/nonexistent/reward-program`"),
            "{e}"
        );
        assert_eq!(r[2].status, RewardStatus::Incorrect);
    }
}
