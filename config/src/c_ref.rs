//! [`CRef`]: the calibrated c_ref of a run, `RUN/c_ref.json` (written by `learner calibrate`, read by
//! the learner, the actors and the coordinator), and how a run's c_ref is chosen: the configured
//! `algorithm.c_ref`, else the calibrated one; never a silent default, because a c_ref from another
//! model shifts every self-reward.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the calibration result inside a run directory.
pub const C_REF_FILE: &str = "c_ref.json";

/// The calibration result, as stored in `RUN/c_ref.json`. Only `c_ref` is required to read one
/// (the other fields describe how it was measured).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CRef {
    /// c_ref: mean of log pi_ref(z_c | x, y, EOS) over the EOS-terminated samples.
    pub c_ref: f64,
    /// Unbiased standard deviation of those log-probs.
    #[serde(default)]
    pub std: f64,
    /// Samples the mean is over.
    #[serde(default)]
    pub samples: usize,
    /// Samples that hit the length limit (no EOS, so no read-out); not part of the mean.
    #[serde(default)]
    pub truncated: usize,
    #[serde(default)]
    pub self_reward_token: u32,
    /// Where the reference model came from.
    #[serde(default)]
    pub model: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CRefError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a calibration file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: no such file: run `learner calibrate` first")]
    Missing { path: PathBuf },
    #[error(
        "`c_ref` is not configured (algorithm.c_ref) and {path} does not exist; run `learner calibrate --run-dir {run_dir}` or set algorithm.c_ref"
    )]
    Unresolved { path: PathBuf, run_dir: PathBuf },
}

impl CRef {
    /// `RUN/c_ref.json`.
    pub fn path(run_dir: &Path) -> PathBuf {
        run_dir.join(C_REF_FILE)
    }

    /// Reads `RUN/c_ref.json`; `Ok(None)` when the run has no calibration yet.
    pub fn read(run_dir: &Path) -> Result<Option<CRef>, CRefError> {
        let path = Self::path(run_dir);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CRefError::Io { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CRefError::Format {
                path,
                message: e.to_string(),
            })
    }

    /// As [`read`](Self::read), with a missing file an error that says how to make one.
    pub fn load(run_dir: &Path) -> Result<CRef, CRefError> {
        Self::read(run_dir)?.ok_or_else(|| CRefError::Missing {
            path: Self::path(run_dir),
        })
    }

    /// Writes `RUN/c_ref.json` atomically (a temporary file in the run directory, fsync, rename,
    /// fsync of the directory), creating the directory; returns the file's path.
    pub fn write(&self, run_dir: &Path) -> Result<PathBuf, CRefError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CRefError::Io { path, source }
        };
        fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let path = Self::path(run_dir);
        let json = serde_json::to_vec_pretty(self).expect("calibration serialises");
        let tmp = run_dir.join(format!(".tmp-{C_REF_FILE}-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(CRefError::Io { path: tmp, source });
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(run_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(run_dir))?;
        Ok(path)
    }

    /// c_ref for a run: `configured` (algorithm.c_ref), else the calibrated one in
    /// `RUN/c_ref.json`; neither is an error that says how to get one.
    pub fn resolve(configured: Option<f64>, run_dir: &Path) -> Result<f64, CRefError> {
        if let Some(c) = configured {
            return Ok(c);
        }
        match Self::read(run_dir)? {
            Some(c) => Ok(c.c_ref),
            None => Err(CRefError::Unresolved {
                path: Self::path(run_dir),
                run_dir: run_dir.to_path_buf(),
            }),
        }
    }

    /// The calibration of a checkpoint: `c_ref.json` in it or in one of its three nearest
    /// ancestors (a run directory holds it beside `checkpoints/step-N/`), with the file it came
    /// from. Unreadable files count as absent.
    pub fn find_near(checkpoint: &Path) -> Option<(CRef, PathBuf)> {
        let mut dir = Some(checkpoint);
        for _ in 0..4 {
            let d = dir?;
            if let Ok(Some(c)) = Self::read(d) {
                return Some((c, Self::path(d)));
            }
            dir = d.parent();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("laser-config-cref-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writes_atomically_reads_back_and_resolves() {
        let dir = scratch("rw");
        assert!(CRef::read(&dir).unwrap().is_none());
        let e = CRef::load(&dir).unwrap_err().to_string();
        assert!(e.contains("c_ref.json"), "{e}");
        let e = CRef::resolve(None, &dir).unwrap_err().to_string();
        assert!(
            e.contains("algorithm.c_ref") && e.contains("c_ref.json"),
            "{e}"
        );
        assert_eq!(CRef::resolve(Some(-3.0), &dir).unwrap(), -3.0);
        let c = CRef {
            c_ref: -12.25,
            std: 0.5,
            samples: 10,
            truncated: 1,
            self_reward_token: 7,
            model: "m".into(),
        };
        let path = c.write(&dir).unwrap();
        assert!(path.ends_with(C_REF_FILE));
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        assert_eq!(CRef::load(&dir).unwrap(), c);
        assert_eq!(CRef::resolve(None, &dir).unwrap(), -12.25);
        assert_eq!(CRef::resolve(Some(-3.0), &dir).unwrap(), -3.0);
        fs::write(CRef::path(&dir), b"{\"std\": 1}").unwrap();
        let e = CRef::read(&dir).unwrap_err().to_string();
        assert!(e.contains("not a calibration file"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn found_near_a_checkpoint() {
        let dir = scratch("near");
        let ckpt = dir.join("checkpoints").join("step-000003");
        fs::create_dir_all(&ckpt).unwrap();
        assert!(CRef::find_near(&ckpt).is_none());
        fs::write(dir.join(C_REF_FILE), r#"{"c_ref": -6.5}"#).unwrap();
        let (c, from) = CRef::find_near(&ckpt).unwrap();
        assert_eq!((c.c_ref, from), (-6.5, dir.join(C_REF_FILE)));
        fs::remove_dir_all(&dir).unwrap();
    }
}
