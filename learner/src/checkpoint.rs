//! Checkpoint file mechanics, independent of what the model writes into a checkpoint.
//!
//! Layout of a run directory:
//! ```text
//! RUN/checkpoints/step-000123/          one complete checkpoint
//!     trainer_state.json                step, data cursor, c_ref, RNG, counters, schedule
//!     ...                               model / optimiser files written by their owners
//!     COMPLETE                          marker, written last
//! RUN/checkpoints/.tmp-step-000124-PID/ a checkpoint being written (ignored by readers)
//! ```
//! A checkpoint is written into a temporary directory next to its final place; every file is fsynced,
//! the marker is written last, then the directory is renamed into place (atomic on POSIX) and the parent
//! fsynced. A crash at any point leaves either no `step-*` directory or a complete one, so the previous
//! checkpoint stays usable. Readers only trust directories that contain the marker. Rotation removes a
//! checkpoint's marker before its files, so a crash mid-deletion cannot leave a half-deleted directory
//! that looks complete, and it never removes the newest complete checkpoint.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use laser_config::LrSchedule;

pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const COMPLETE_MARKER: &str = "COMPLETE";
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
const TMP_PREFIX: &str = ".tmp-";
const STEP_PREFIX: &str = "step-";
const SHARES_PREFIX: &str = ".zero1-";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid trainer state: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: a complete checkpoint for this step already exists")]
    AlreadyExists { path: PathBuf },
    #[error("`{name}` is not a plain file name inside a checkpoint directory")]
    BadFileName { name: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the training data loader stands, so a resumed run sees the same prompts in the same order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCursor {
    pub epoch: u64,
    /// Prompts of the current epoch already consumed.
    pub position: u64,
}

/// State of a ChaCha-family generator (rand_chacha): seed, stream and word position determine it fully.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: u64,
    pub stream: u64,
    pub word_pos: u128,
}

/// Everything besides tensors needed to resume a run exactly (`trainer_state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainerState {
    pub format_version: u32,
    /// Optimizer steps completed (skipped ones included): the learning-rate schedule's clock.
    pub step: u64,
    pub policy_version: u64,
    pub data_cursor: DataCursor,
    /// The calibrated log pi_ref(z_c | x, y, EOS) constant of this run.
    pub c_ref: f64,
    pub rng: RngState,
    pub skipped_steps: u64,
    pub lr_schedule: LrSchedule,
}

impl TrainerState {
    pub const FORMAT_VERSION: u32 = 1;
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename, then an
/// fsync of the directory so the rename itself is durable.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| CheckpointError::BadFileName {
            name: path.display().to_string(),
        })?;
    let tmp = dir.join(format!(
        "{TMP_PREFIX}{}-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(source) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(CheckpointError::Io { path: tmp, source });
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// A checkpoint directory that has its completion marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteCheckpoint {
    pub step: u64,
    pub path: PathBuf,
}

impl CompleteCheckpoint {
    pub fn trainer_state(&self) -> Result<TrainerState, CheckpointError> {
        read_trainer_state(&self.path.join(TRAINER_STATE_FILE))
    }
}

pub fn read_trainer_state(path: &Path) -> Result<TrainerState, CheckpointError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| CheckpointError::State {
        path: path.to_path_buf(),
        source,
    })
}

/// The name of step `step`'s checkpoint directory, zero-padded so names sort by step.
pub fn step_dir_name(step: u64) -> String {
    format!("{STEP_PREFIX}{step:06}")
}

fn parse_step(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(STEP_PREFIX)?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A run directory's checkpoint area.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Opens (creating if needed) `root` and its `checkpoints/` directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let root = root.into();
        let checkpoints = root.join(CHECKPOINTS_DIR);
        fs::create_dir_all(&checkpoints).map_err(io_err(&checkpoints))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }

    pub fn checkpoint_path(&self, step: u64) -> PathBuf {
        self.checkpoints_dir().join(step_dir_name(step))
    }

    /// Starts writing step `step`'s checkpoint in a temporary directory. An incomplete leftover with the
    /// same final name is replaced at commit; a complete one is an error (checkpoints are immutable).
    pub fn begin_checkpoint(&self, step: u64) -> Result<CheckpointWriter, CheckpointError> {
        let final_dir = self.checkpoint_path(step);
        if final_dir.join(COMPLETE_MARKER).exists() {
            return Err(CheckpointError::AlreadyExists { path: final_dir });
        }
        let tmp_dir = self.checkpoints_dir().join(format!(
            "{TMP_PREFIX}{}-{}",
            step_dir_name(step),
            std::process::id()
        ));
        if tmp_dir.exists() {
            fs::remove_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        }
        fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        Ok(CheckpointWriter {
            tmp_dir,
            final_dir,
            step,
        })
    }

    /// Complete checkpoints, oldest first.
    pub fn complete_checkpoints(&self) -> Result<Vec<CompleteCheckpoint>, CheckpointError> {
        let mut found: Vec<CompleteCheckpoint> = self
            .step_dirs()?
            .into_iter()
            .filter(|(_, path)| path.join(COMPLETE_MARKER).is_file())
            .map(|(step, path)| CompleteCheckpoint { step, path })
            .collect();
        found.sort_by_key(|c| c.step);
        Ok(found)
    }

    /// The newest complete checkpoint, if any: where a resumed run starts.
    pub fn latest_complete(&self) -> Result<Option<CompleteCheckpoint>, CheckpointError> {
        Ok(self.complete_checkpoints()?.pop())
    }

    /// Keeps the newest `keep_last` complete checkpoints (at least one, whatever `keep_last` says) and
    /// deletes older complete ones, incomplete `step-*` directories older than the newest complete one,
    /// and leftover temporary directories (so never call it while a [`CheckpointWriter`] is open).
    /// Returns the deleted paths.
    pub fn rotate(&self, keep_last: usize) -> Result<Vec<PathBuf>, CheckpointError> {
        let complete = self.complete_checkpoints()?;
        let Some(newest) = complete.last().map(|c| c.step) else {
            // Nothing complete yet: nothing can be safely judged stale.
            return Ok(Vec::new());
        };
        let keep = keep_last.max(1);
        let mut doomed: Vec<PathBuf> = complete[..complete.len().saturating_sub(keep)]
            .iter()
            .map(|c| c.path.clone())
            .collect();
        for (step, path) in self.step_dirs()? {
            if step < newest && !path.join(COMPLETE_MARKER).exists() {
                doomed.push(path);
            }
        }
        doomed.extend(self.temp_dirs()?);
        for path in &doomed {
            let marker = path.join(COMPLETE_MARKER);
            if marker.exists() {
                fs::remove_file(&marker).map_err(io_err(&marker))?;
            }
            fs::remove_dir_all(path).map_err(io_err(path))?;
        }
        sync_dir(&self.checkpoints_dir())?;
        Ok(doomed)
    }

    /// Deletes every checkpoint of a step after `step`: the run went back to `step`, so they hold
    /// an abandoned timeline, and a later Checkpoint of the same step must not reuse one. The
    /// complete marker goes first, so a crash midway leaves only incomplete directories.
    pub fn discard_after(&self, step: u64) -> Result<Vec<PathBuf>, CheckpointError> {
        let mut doomed = Vec::new();
        for (s, path) in self.step_dirs()? {
            if s > step {
                let marker = path.join(COMPLETE_MARKER);
                if marker.exists() {
                    fs::remove_file(&marker).map_err(io_err(&marker))?;
                }
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                doomed.push(path);
            }
        }
        sync_dir(&self.checkpoints_dir())?;
        Ok(doomed)
    }

    /// Where ZeRO-1 ranks other than 0 leave their share of the AdamW state of `step` for rank 0
    /// to merge into that step's checkpoint (readers of checkpoints never look here).
    pub fn optimizer_shares_dir(&self, step: u64) -> PathBuf {
        self.checkpoints_dir()
            .join(format!("{SHARES_PREFIX}{}", step_dir_name(step)))
    }

    /// Removes the optimiser shares of every step up to `step` (merged, or left by a crash).
    pub fn remove_optimizer_shares(&self, step: u64) -> Result<(), CheckpointError> {
        for (name, path) in self.entries()? {
            let merged = name
                .strip_prefix(SHARES_PREFIX)
                .and_then(parse_step)
                .is_some_and(|s| s <= step);
            if merged {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
            }
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<(String, PathBuf)>, CheckpointError> {
        let dir = self.checkpoints_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            if entry.file_type().map_err(io_err(&entry.path()))?.is_dir() {
                out.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                ));
            }
        }
        Ok(out)
    }

    fn step_dirs(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter_map(|(name, path)| Some((parse_step(&name)?, path)))
            .collect())
    }

    fn temp_dirs(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        Ok(self
            .entries()?
            .into_iter()
            .filter(|(name, _)| name.starts_with(TMP_PREFIX))
            .map(|(_, p)| p)
            .collect())
    }
}

/// A checkpoint being written. Dropping it without [`CheckpointWriter::commit`] leaves only a temporary
/// directory, which readers ignore and [`RunDir::rotate`] removes.
#[derive(Debug)]
pub struct CheckpointWriter {
    tmp_dir: PathBuf,
    final_dir: PathBuf,
    step: u64,
}

impl CheckpointWriter {
    /// The temporary directory, for writers that stream large files themselves (they must fsync them).
    pub fn dir(&self) -> &Path {
        &self.tmp_dir
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    /// Writes one file of the checkpoint (fsynced).
    pub fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let plain =
            Path::new(name).file_name().is_some_and(|f| f == name) && !name.starts_with('.');
        if !plain || name == COMPLETE_MARKER {
            return Err(CheckpointError::BadFileName {
                name: name.to_string(),
            });
        }
        let path = self.tmp_dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&path)?;
            file.write_all(bytes)?;
            file.sync_all()
        };
        write().map_err(io_err(&path))
    }

    /// Writes `trainer_state.json` and the completion marker, then moves the checkpoint into place.
    pub fn commit(self, state: &TrainerState) -> Result<CompleteCheckpoint, CheckpointError> {
        let json = serde_json::to_vec_pretty(state).map_err(|source| CheckpointError::State {
            path: self.tmp_dir.join(TRAINER_STATE_FILE),
            source,
        })?;
        self.write_file(TRAINER_STATE_FILE, &json)?;
        let marker = self.tmp_dir.join(COMPLETE_MARKER);
        File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io_err(&marker))?;
        sync_dir(&self.tmp_dir)?;
        if self.final_dir.exists() {
            // An incomplete leftover (checked at begin): it never had a marker, so it was never trusted.
            fs::remove_dir_all(&self.final_dir).map_err(io_err(&self.final_dir))?;
        }
        fs::rename(&self.tmp_dir, &self.final_dir).map_err(io_err(&self.final_dir))?;
        let parent = self.final_dir.parent().unwrap_or(Path::new("."));
        sync_dir(parent)?;
        Ok(CompleteCheckpoint {
            step: self.step,
            path: self.final_dir.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("laser-ckpt-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn state(step: u64) -> TrainerState {
        TrainerState {
            format_version: TrainerState::FORMAT_VERSION,
            step,
            policy_version: step,
            data_cursor: DataCursor {
                epoch: 0,
                position: step * 8,
            },
            c_ref: -23.0,
            rng: RngState {
                seed: 1,
                stream: 0,
                word_pos: 64,
            },
            skipped_steps: 0,
            lr_schedule: LrSchedule::Constant {
                lr: 1e-6,
                warmup_steps: 0,
            },
        }
    }

    #[test]
    fn going_back_to_a_step_discards_the_later_checkpoints_only() {
        let root = scratch("discard");
        let run = RunDir::open(&root).unwrap();
        for step in [2, 4, 6] {
            let w = run.begin_checkpoint(step).unwrap();
            w.write_file("weights.bin", &[step as u8; 4]).unwrap();
            w.commit(&state(step)).unwrap();
        }
        let torn = run.checkpoint_path(8);
        fs::create_dir_all(&torn).unwrap();
        let gone = run.discard_after(4).unwrap();
        assert_eq!(gone.len(), 2, "step 6 and the incomplete step 8: {gone:?}");
        let steps: Vec<u64> = run
            .complete_checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.step)
            .collect();
        assert_eq!(steps, vec![2, 4]);
        // Step 6 can be written again, on the new timeline.
        run.begin_checkpoint(6).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_committed_checkpoints_are_visible_and_rotation_keeps_the_newest() {
        let root = scratch("rotate");
        let run = RunDir::open(&root).unwrap();
        for step in [1, 2, 3] {
            let w = run.begin_checkpoint(step).unwrap();
            w.write_file("weights.bin", &[step as u8; 16]).unwrap();
            w.commit(&state(step)).unwrap();
        }
        // A writer that never commits (a crash mid-write) leaves nothing a reader trusts.
        let crashed = run.begin_checkpoint(4).unwrap();
        crashed.write_file("weights.bin", b"partial").unwrap();
        assert!(crashed.write_file("COMPLETE", b"").is_err());
        assert!(crashed.write_file("../escape", b"").is_err());
        drop(crashed);
        let steps: Vec<u64> = run
            .complete_checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
        let latest = run.latest_complete().unwrap().unwrap();
        assert_eq!(latest.trainer_state().unwrap(), state(3));
        assert!(matches!(
            run.begin_checkpoint(3),
            Err(CheckpointError::AlreadyExists { .. })
        ));

        let deleted = run.rotate(2).unwrap();
        assert_eq!(
            deleted.len(),
            2,
            "step 1 and the leftover temp dir: {deleted:?}"
        );
        let steps: Vec<u64> = run
            .complete_checkpoints()
            .unwrap()
            .iter()
            .map(|c| c.step)
            .collect();
        assert_eq!(steps, vec![2, 3]);
        run.rotate(0).unwrap();
        assert_eq!(
            run.complete_checkpoints().unwrap().len(),
            1,
            "the only complete checkpoint is never deleted"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_bad_state_is_named() {
        let root = scratch("atomic");
        fs::create_dir_all(&root).unwrap();
        let path = root.join("c_ref.json");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            1,
            "no temporary file is left behind"
        );
        fs::write(root.join(TRAINER_STATE_FILE), b"{\"step\": 1}").unwrap();
        let err = read_trainer_state(&root.join(TRAINER_STATE_FILE))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trainer_state.json") && err.contains("invalid trainer state"),
            "{err}"
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
