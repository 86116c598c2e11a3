//! The run's ledger, `run_dir/ledger.jsonl`: an append-only record of every prompt group's life
//! (the actors it was dispatched to, the actor and policy version that generated it, the
//! verifiers that graded it, the step and version that trained it), of checkpoints, and of every
//! start and recovery. Unlike `metrics.jsonl` and `data_order.jsonl`, which a rollback truncates,
//! the ledger is never rewritten, so [`audit`] can prove from it, after any sequence of faults,
//! that each scheduled group was trained exactly once (steps redone after a rollback replace the
//! rolled-back ones), in the recorded data order, and never staler than the run allows.
//!
//! `coordinator audit RUN_DIR` prints the [`Audit`] and fails when it finds a problem.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{DATA_ORDER_FILE, DataOrderRow, read_data_order};
use crate::metrics::{METRICS_FILE, read_metrics};

/// `run_dir/ledger.jsonl`.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// One group's way through the cluster within one collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupLife {
    pub group_id: u64,
    pub task_id: String,
    /// The actors it was sent to, in order: more than one after a lost actor or a stale answer.
    pub dispatched_to: Vec<String>,
    /// The actor whose answer was kept.
    pub generated_by: String,
    /// The policy version that generated the kept answer.
    pub policy_version: u64,
    /// The verifiers it was sent to, in order (the last one graded it).
    pub graded_by: Vec<String>,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// The RL loop (re)started at `step` (0, or the checkpoint a `--resume` continues from).
    Start {
        step: u64,
        policy_version: u64,
        batch_prompts: u64,
        async_mode: bool,
        max_off_policy_steps: u64,
        learner_ranks: u32,
        unix_time: f64,
    },
    /// A graded group of `step`'s batch.
    Collected { step: u64, group: GroupLife },
    /// `Learner.TrainStep` for `step` returned: the batch's groups moved the policy from
    /// `version_before` to `version_after`.
    Trained {
        step: u64,
        version_before: u64,
        version_after: u64,
        group_ids: Vec<u64>,
    },
    /// The learner checkpointed the first `step` steps at `policy_version`.
    Checkpointed { step: u64, policy_version: u64 },
    /// The run went back to the checkpoint at `step` after `cause`; later steps are redone.
    Restored {
        step: u64,
        policy_version: u64,
        cause: String,
    },
}

/// Appends to `run_dir/ledger.jsonl`. Each entry is one `write` of one line, so a crash leaves at
/// most a torn last line, which [`audit`] reports and ignores.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
}

impl Ledger {
    pub fn new(run_dir: &Path) -> Self {
        Self {
            path: run_dir.join(LEDGER_FILE),
        }
    }

    pub fn append(&self, entries: &[Entry]) -> anyhow::Result<()> {
        use anyhow::Context;
        if entries.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for e in entries {
            text.push_str(&serde_json::to_string(e)?);
            text.push('\n');
        }
        cut_torn_tail(&self.path).with_context(|| self.path.display().to_string())?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .with_context(|| self.path.display().to_string())?;
        f.write_all(text.as_bytes())
            .with_context(|| self.path.display().to_string())
    }
}

impl Ledger {
    /// The run's weights epoch: how many times the run went back to a checkpoint (every Start
    /// after the first, and every Restored). Policy versions repeat with other weights after
    /// each, so actors holding an earlier epoch's weights must be updated.
    pub fn weights_epoch(&self) -> anyhow::Result<u64> {
        use anyhow::Context;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| self.path.display().to_string()),
        };
        let (entries, _) = parse(&text, &mut Vec::new());
        let rollbacks = entries
            .iter()
            .filter(|e| matches!(e, Entry::Start { .. } | Entry::Restored { .. }))
            .count() as u64;
        Ok(rollbacks.saturating_sub(1))
    }
}

/// Truncates `path` after its last newline when a crash (or a full disk) left a torn last line,
/// so that the next entry starts a line of its own instead of being glued to the torn one (which
/// hid a resume's Start entry from the audit). The torn bytes were never a whole entry.
fn cut_torn_tail(path: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Walk back to the last newline, 4 KiB at a time (entries are short).
    let mut end = len;
    let keep = loop {
        let start = end.saturating_sub(4096);
        let mut buf = vec![0u8; (end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf)?;
        if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    tracing::warn!(
        path = %path.display(),
        torn_bytes = len - keep,
        "ledger: cutting a torn last line left by a crash"
    );
    f.set_len(keep)?;
    f.sync_all()
}

/// What [`audit`] found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Audit {
    /// Starts of the RL loop (1 + the `--resume`s).
    pub starts: u64,
    /// Rollbacks to a checkpoint after a fault.
    pub restores: u64,
    /// Trained steps that a start or a restore rolled back (and that were trained again).
    pub steps_redone: u64,
    /// Steps in the final history, each trained once: 0..steps_trained.
    pub steps_trained: u64,
    pub groups_trained: u64,
    /// Dispatches beyond the first, over the final history's groups.
    pub redispatches: u64,
    /// Grade calls beyond the first, over the final history's groups.
    pub regrades: u64,
    /// The largest `version_before - policy_version` of a trained group.
    pub max_staleness: u64,
    /// The last checkpointed step, if any.
    pub checkpoint_step: Option<u64>,
    /// A last line cut short by a crash (ignored).
    pub torn_tail: bool,
    /// Everything that breaks "each scheduled group trained exactly once, in order, fresh enough".
    pub problems: Vec<String>,
}

impl Audit {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "steps trained: {} ({} groups), each once",
            self.steps_trained, self.groups_trained
        )?;
        writeln!(
            f,
            "starts: {}, restores: {}, steps redone: {}",
            self.starts, self.restores, self.steps_redone
        )?;
        writeln!(
            f,
            "re-dispatches: {}, re-grades: {}, max staleness: {} versions",
            self.redispatches, self.regrades, self.max_staleness
        )?;
        match self.checkpoint_step {
            Some(s) => writeln!(f, "last checkpoint: step {s}")?,
            None => writeln!(f, "last checkpoint: none")?,
        }
        if self.torn_tail {
            writeln!(
                f,
                "note: the last line was cut short (a crash while appending); ignored"
            )?;
        }
        if self.problems.is_empty() {
            write!(f, "audit: OK")
        } else {
            writeln!(f, "audit: {} PROBLEM(S)", self.problems.len())?;
            for p in &self.problems {
                writeln!(f, "  - {p}")?;
            }
            Ok(())
        }
    }
}

/// Reads `run_dir`'s ledger, data order and metrics and audits them. Errors only when the
/// ledger cannot be read at all; everything else is a problem in the report.
pub fn audit(run_dir: &Path) -> anyhow::Result<Audit> {
    use anyhow::Context;
    let p = run_dir.join(LEDGER_FILE);
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "{}: no ledger (runs before the ledger existed cannot be audited)",
            p.display()
        )
    })?;
    let mut problems = Vec::new();
    let (entries, torn_tail) = parse(&text, &mut problems);
    let data_order = read_data_order(run_dir).unwrap_or_else(|e| {
        problems.push(format!("{e:#}"));
        Vec::new()
    });
    let metrics_steps: Vec<u64> = match read_metrics(&run_dir.join(METRICS_FILE)) {
        Ok(rows) => rows.iter().map(|r| r.step).collect(),
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    let mut a = audit_entries(&entries, &data_order, &metrics_steps);
    a.torn_tail = torn_tail;
    problems.append(&mut a.problems);
    a.problems = problems;
    Ok(a)
}

/// Ledger lines; a last line without its newline that does not parse is a torn tail.
fn parse(text: &str, problems: &mut Vec<String>) -> (Vec<Entry>, bool) {
    let mut entries = Vec::new();
    let mut torn = false;
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(_) if i + 1 == lines.len() && !complete => torn = true,
            Err(e) => problems.push(format!("{LEDGER_FILE} line {}: {e}", i + 1)),
        }
    }
    (entries, torn)
}

/// A trained step of the current history.
struct TrainedStep {
    version_before: u64,
    version_after: u64,
    group_ids: Vec<u64>,
}

/// A start or restore at `to`: it must be a recorded checkpoint (or step 0), and the steps from
/// `to` on leave the history (they are trained again).
fn roll_back(
    to: u64,
    version: u64,
    what: &str,
    a: &mut Audit,
    trained: &mut BTreeMap<u64, TrainedStep>,
    collected: &mut BTreeMap<u64, BTreeMap<u64, GroupLife>>,
    checkpoints: &BTreeMap<u64, u64>,
) {
    if to > 0 {
        match checkpoints.get(&to) {
            Some(v) if *v == version => {}
            Some(v) => a.problems.push(format!(
                "{what} at step {to} with policy version {version}, but that checkpoint holds version {v}"
            )),
            None => a.problems.push(format!(
                "{what} at step {to}, but no checkpoint of step {to} is recorded"
            )),
        }
    } else if version != 0 {
        a.problems
            .push(format!("{what} at step 0 with policy version {version}"));
    }
    let dropped = trained.split_off(&to);
    a.steps_redone += dropped.len() as u64;
    collected.split_off(&to);
}

/// The audit proper, on parsed inputs: replays the ledger, rolling back at every start and
/// restore, then checks the final history against the data order and the metrics rows.
pub fn audit_entries(
    entries: &[Entry],
    data_order: &[DataOrderRow],
    metrics_steps: &[u64],
) -> Audit {
    let mut a = Audit::default();
    let mut trained: BTreeMap<u64, TrainedStep> = BTreeMap::new();
    let mut collected: BTreeMap<u64, BTreeMap<u64, GroupLife>> = BTreeMap::new();
    let mut checkpoints: BTreeMap<u64, u64> = BTreeMap::new();
    // (batch_prompts, async_mode, max_off_policy_steps) of the current start.
    let mut run: Option<(u64, bool, u64)> = None;

    let mut next_step = 0u64;

    for (i, e) in entries.iter().enumerate() {
        let at = format!("{LEDGER_FILE} entry {}", i + 1);
        match e {
            Entry::Start {
                step,
                policy_version,
                batch_prompts,
                async_mode,
                max_off_policy_steps,
                ..
            } => {
                a.starts += 1;
                run = Some((*batch_prompts, *async_mode, *max_off_policy_steps));
                roll_back(
                    *step,
                    *policy_version,
                    "a start",
                    &mut a,
                    &mut trained,
                    &mut collected,
                    &checkpoints,
                );
                next_step = *step;
            }
            Entry::Restored {
                step,
                policy_version,
                ..
            } => {
                a.restores += 1;
                roll_back(
                    *step,
                    *policy_version,
                    "a restore",
                    &mut a,
                    &mut trained,
                    &mut collected,
                    &checkpoints,
                );
                next_step = *step;
            }
            Entry::Collected { step, group } => {
                if run.is_none() {
                    a.problems.push(format!("{at}: a group before any start"));
                }
                if trained.contains_key(step) {
                    a.problems.push(format!(
                        "{at}: group {} collected for step {step}, which is already trained",
                        group.group_id
                    ));
                }
                let lives = collected.entry(*step).or_default();
                if lives.insert(group.group_id, group.clone()).is_some() {
                    a.problems.push(format!(
                        "{at}: group {} collected twice for step {step}",
                        group.group_id
                    ));
                }
            }
            Entry::Trained {
                step,
                version_before,
                version_after,
                group_ids,
            } => {
                let Some((batch, async_mode, max_off)) = run else {
                    a.problems
                        .push(format!("{at}: a trained step before any start"));
                    continue;
                };
                if trained.contains_key(step) {
                    a.problems.push(format!(
                        "{at}: step {step} trained twice without a rollback"
                    ));
                } else if *step != next_step {
                    a.problems.push(format!(
                        "{at}: step {step} trained where step {next_step} was due, skipping or reordering steps"
                    ));
                }
                next_step = step + 1;
                if let Some((_, prev)) = trained.range(..step).next_back()
                    && prev.version_after != *version_before
                {
                    a.problems.push(format!(
                        "{at}: step {step} trained from version {version_before}, but the step before ended at {}",
                        prev.version_after
                    ));
                }
                let ids: BTreeSet<u64> = group_ids.iter().copied().collect();
                if ids.len() != group_ids.len() {
                    a.problems.push(format!(
                        "{at}: step {step} trained a group twice in one batch"
                    ));
                }
                let scheduled: BTreeSet<u64> = (step * batch..(step + 1) * batch).collect();
                if ids != scheduled {
                    a.problems.push(format!(
                        "{at}: step {step} trained groups {:?}, not its scheduled {}..{}",
                        ids,
                        step * batch,
                        (step + 1) * batch
                    ));
                }
                let empty = BTreeMap::new();
                let lives = collected.get(step).unwrap_or(&empty);
                let got: BTreeSet<u64> = lives.keys().copied().collect();
                if got != ids {
                    a.problems.push(format!(
                        "{at}: step {step} trained {:?} but the collected groups were {:?}",
                        ids, got
                    ));
                }
                let allowed = if async_mode { max_off } else { 0 };
                for life in lives.values() {
                    if life.policy_version > *version_before {
                        a.problems.push(format!(
                            "{at}: group {} was generated by version {}, newer than the learner's {version_before}",
                            life.group_id, life.policy_version
                        ));
                        continue;
                    }
                    let stale = version_before - life.policy_version;
                    if stale > allowed {
                        a.problems.push(format!(
                            "{at}: group {} is {stale} versions stale (allowed: {allowed})",
                            life.group_id
                        ));
                    }
                }
                trained.insert(
                    *step,
                    TrainedStep {
                        version_before: *version_before,
                        version_after: *version_after,
                        group_ids: group_ids.clone(),
                    },
                );
            }
            Entry::Checkpointed {
                step,
                policy_version,
            } => {
                match trained.range(..step).next_back() {
                    Some((s, t)) if s + 1 == *step && t.version_after == *policy_version => {}
                    Some((s, t)) => a.problems.push(format!(
                        "{at}: checkpoint of step {step} at version {policy_version}, but the last trained step is {s} (ending at version {})",
                        t.version_after
                    )),
                    None => a.problems.push(format!(
                        "{at}: checkpoint of step {step} with no trained step before it"
                    )),
                }
                checkpoints.insert(*step, *policy_version);
                a.checkpoint_step = Some(*step);
            }
        }
    }

    // The final history.
    let steps: Vec<u64> = trained.keys().copied().collect();
    if steps != (0..steps.len() as u64).collect::<Vec<_>>() {
        a.problems.push(format!(
            "the trained steps are {steps:?}, not 0..{}",
            steps.len()
        ));
    }
    a.steps_trained = steps.len() as u64;
    for (s, t) in &trained {
        a.groups_trained += t.group_ids.len() as u64;
        for life in collected.get(s).map(|m| m.values()).into_iter().flatten() {
            a.redispatches += life.dispatched_to.len().saturating_sub(1) as u64;
            a.regrades += life.graded_by.len().saturating_sub(1) as u64;
            a.max_staleness = a
                .max_staleness
                .max(t.version_before.saturating_sub(life.policy_version));
        }
    }
    // The data order the run recorded is the ledger's final history.
    let order_steps: Vec<u64> = data_order.iter().map(|r| r.step).collect();
    if order_steps != steps {
        a.problems.push(format!(
            "{DATA_ORDER_FILE} has steps {order_steps:?}, the ledger trained {steps:?}"
        ));
    }
    for row in data_order {
        let Some(t) = trained.get(&row.step) else {
            continue;
        };
        let mut want = t.group_ids.clone();
        want.sort_unstable();
        let mut got = row.group_ids.clone();
        got.sort_unstable();
        if want != got {
            a.problems.push(format!(
                "{DATA_ORDER_FILE} step {}: groups {got:?}, the ledger trained {want:?}",
                row.step
            ));
        }
        for (g, task) in row.group_ids.iter().zip(&row.task_ids) {
            if let Some(life) = collected.get(&row.step).and_then(|m| m.get(g))
                && &life.task_id != task
            {
                a.problems.push(format!(
                    "{DATA_ORDER_FILE} step {}: group {g} is task {task}, the ledger says {}",
                    row.step, life.task_id
                ));
            }
        }
    }
    if metrics_steps != steps.as_slice() {
        a.problems.push(format!(
            "{METRICS_FILE} has rows for steps {metrics_steps:?}, the ledger trained {steps:?}"
        ));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u64 = 2;

    fn start(step: u64, version: u64) -> Entry {
        Entry::Start {
            step,
            policy_version: version,
            batch_prompts: B,
            async_mode: false,
            max_off_policy_steps: 1,
            learner_ranks: 1,
            unix_time: 0.0,
        }
    }

    fn collected(step: u64, g: u64, version: u64) -> Entry {
        Entry::Collected {
            step,
            group: GroupLife {
                group_id: g,
                task_id: format!("t{g}"),
                dispatched_to: vec!["actor-0".into()],
                generated_by: "actor-0".into(),
                policy_version: version,
                graded_by: vec!["verifier-0".into()],
            },
        }
    }

    /// Step `s` collected on `version` and trained to `version + 1`.
    fn step(s: u64, version: u64) -> Vec<Entry> {
        let mut v: Vec<Entry> = (s * B..(s + 1) * B)
            .map(|g| collected(s, g, version))
            .collect();
        v.push(Entry::Trained {
            step: s,
            version_before: version,
            version_after: version + 1,
            group_ids: (s * B..(s + 1) * B).collect(),
        });
        v
    }

    fn order(steps: u64) -> Vec<DataOrderRow> {
        (0..steps)
            .map(|s| DataOrderRow {
                step: s,
                group_ids: (s * B..(s + 1) * B).collect(),
                task_ids: (s * B..(s + 1) * B).map(|g| format!("t{g}")).collect(),
            })
            .collect()
    }

    fn run(entries: &[Entry], steps: u64) -> Audit {
        audit_entries(entries, &order(steps), &(0..steps).collect::<Vec<_>>())
    }

    #[test]
    fn a_clean_run_passes() {
        let mut e = vec![start(0, 0)];
        for s in 0..3 {
            e.extend(step(s, s));
        }
        e.push(Entry::Checkpointed {
            step: 3,
            policy_version: 3,
        });
        let a = run(&e, 3);
        assert!(a.ok(), "{a}");
        assert_eq!((a.steps_trained, a.groups_trained), (3, 6));
        assert_eq!(a.checkpoint_step, Some(3));
    }

    #[test]
    fn a_rollback_to_a_checkpoint_replaces_the_redone_steps() {
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        e.extend(step(1, 1));
        e.push(Entry::Checkpointed {
            step: 2,
            policy_version: 2,
        });
        e.extend(step(2, 2));
        e.push(Entry::Restored {
            step: 2,
            policy_version: 2,
            cause: "learner lost".into(),
        });
        e.extend(step(2, 2));
        e.extend(step(3, 3));
        let a = run(&e, 4);
        assert!(a.ok(), "{a}");
        assert_eq!((a.restores, a.steps_redone, a.steps_trained), (1, 1, 4));
    }

    #[test]
    fn training_a_step_twice_without_a_rollback_is_caught() {
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        e.extend(step(1, 1));
        e.extend(step(1, 1));
        let a = run(&e, 2);
        assert!(!a.ok());
        assert!(
            a.problems.iter().any(|p| p.contains("collected twice")),
            "{a}"
        );
        assert!(
            a.problems.iter().any(|p| p.contains("trained twice")),
            "{a}"
        );
    }

    #[test]
    fn a_skipped_step_and_a_lost_group_are_caught() {
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        e.extend(step(2, 1));
        let a = run(&e, 3);
        assert!(a.problems.iter().any(|p| p.contains("skipping")), "{a}");
        let mut e = vec![start(0, 0)];
        let mut s0 = step(0, 0);
        s0.remove(1); // group 1 never collected
        e.extend(s0);
        let a = run(&e, 1);
        assert!(
            a.problems
                .iter()
                .any(|p| p.contains("collected groups were")),
            "{a}"
        );
    }

    #[test]
    fn a_stale_group_and_an_unrecorded_restore_point_are_caught() {
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        // Step 1 trained on rollouts of version 0 in sync mode.
        e.extend(step(1, 1).into_iter().map(|x| match x {
            Entry::Collected { step, mut group } => {
                group.policy_version = 0;
                Entry::Collected { step, group }
            }
            x => x,
        }));
        let a = run(&e, 2);
        assert!(
            a.problems.iter().any(|p| p.contains("1 versions stale")),
            "{a}"
        );
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        e.push(start(1, 1));
        let a = run(&e, 1);
        assert!(
            a.problems
                .iter()
                .any(|p| p.contains("no checkpoint of step 1")),
            "{a}"
        );
    }

    #[test]
    fn the_data_order_and_metrics_must_be_the_ledgers_history() {
        let mut e = vec![start(0, 0)];
        e.extend(step(0, 0));
        e.extend(step(1, 1));
        let a = audit_entries(&e, &order(1), &[0, 1]);
        assert!(
            a.problems.iter().any(|p| p.contains(DATA_ORDER_FILE)),
            "{a}"
        );
        let a = audit_entries(&e, &order(2), &[0, 1, 1]);
        assert!(a.problems.iter().any(|p| p.contains(METRICS_FILE)), "{a}");
    }

    #[test]
    fn appending_after_a_torn_line_cuts_it_so_the_new_entry_stands_alone() {
        let dir = std::env::temp_dir().join(format!("laser-ledger-torn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = Ledger::new(&dir);
        ledger.append(&[start(0, 0)]).unwrap();
        // A crash mid-write: half an entry, no newline.
        let path = dir.join(LEDGER_FILE);
        let whole = std::fs::read_to_string(&path).unwrap();
        let torn = serde_json::to_string(&collected(0, 1, 0)).unwrap();
        std::fs::write(&path, format!("{whole}{}", &torn[..torn.len() / 2])).unwrap();
        ledger.append(&[start(0, 0)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut problems = Vec::new();
        let (entries, torn_tail) = parse(&text, &mut problems);
        assert!(problems.is_empty() && !torn_tail, "{problems:?}\n{text}");
        assert_eq!(entries, vec![start(0, 0), start(0, 0)]);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn the_weights_epoch_counts_every_rollback_after_the_first_start() {
        let dir = std::env::temp_dir().join(format!("laser-ledger-epoch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = Ledger::new(&dir);
        assert_eq!(ledger.weights_epoch().unwrap(), 0, "no ledger yet");
        ledger.append(&[start(0, 0)]).unwrap();
        ledger.append(&step(0, 0)).unwrap();
        assert_eq!(ledger.weights_epoch().unwrap(), 0, "a fresh run");
        ledger
            .append(&[Entry::Restored {
                step: 0,
                policy_version: 0,
                cause: "learner lost".into(),
            }])
            .unwrap();
        assert_eq!(ledger.weights_epoch().unwrap(), 1);
        ledger.append(&[start(0, 0)]).unwrap();
        assert_eq!(ledger.weights_epoch().unwrap(), 2, "a --resume");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_torn_last_line_is_noted_and_ignored() {
        let mut text = String::new();
        for x in [start(0, 0)].iter().chain(&step(0, 0)) {
            text.push_str(&serde_json::to_string(x).unwrap());
            text.push('\n');
        }
        text.push_str("{\"event\":\"collec");
        let mut problems = Vec::new();
        let (entries, torn) = parse(&text, &mut problems);
        assert!(torn && problems.is_empty());
        assert_eq!(entries.len(), 4);
        let mid = text.replacen("\n", "\n{oops\n", 1);
        let (_, torn) = parse(&mid, &mut problems);
        assert!(torn && problems.len() == 1, "{problems:?}");
    }
}
