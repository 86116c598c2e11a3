//! Issue 27: crashes at the worst moment, on a local cluster of separate processes.
//!
//! - The learner SIGKILLed while it writes a checkpoint (held there by the `checkpoint_write`
//!   failpoint, `laser_learner::failpoint`): the half-written checkpoint is never trusted, the
//!   restarted learner resumes from the one before, and the steps after it are redone on the same
//!   groups.
//! - The learner SIGKILLed in the middle of a weight stream to an actor (`weights_stream`): no
//!   actor takes a torn set of weights; the run completes with every actor on the final version.
//! - The disk filling up under the run directory (a small tmpfs): the run stops with an error
//!   naming the file and the cause, leaves the last complete checkpoint intact, and `--resume`
//!   after space is freed completes it with every step trained once.
//!
//! Every wait is bounded; nothing asserts a duration. Recovery times are printed for
//! ARCHITECTURE.md's fault table (`-- --nocapture`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use laser_integration_tests::{LocalRun, run_bounded, skip_or_fail, wait_for};
use serde_json::Value;

const RUN_LIMIT: Duration = Duration::from_secs(600);
const WAIT: Duration = Duration::from_secs(300);

/// 8 prompts x 4 samples x 48 tokens per step.
const STEP: &[(&str, &str)] = &[
    ("LASER__ALGORITHM__BATCH_PROMPTS", "8"),
    ("LASER__ALGORITHM__GROUP_SIZE", "4"),
    ("LASER__ALGORITHM__MAX_RESPONSE_TOKENS", "48"),
];

fn checkpoint_dirs(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every `step-*` checkpoint directory of the run carries its completion marker.
fn assert_checkpoints_complete(run: &Path) {
    for d in checkpoint_dirs(run)
        .iter()
        .filter(|d| d.starts_with("step-"))
    {
        assert!(
            run.join("checkpoints").join(d).join("COMPLETE").exists(),
            "{d} has no marker"
        );
    }
}

fn kill(pid: u32) {
    // SAFETY: kill(2) on a process of this test's run.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

fn failpoint_hits(log: &str, name: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("failpoint hit") && l.contains(name))
        .count()
}

#[test]
fn a_learner_killed_while_writing_a_checkpoint_resumes_from_the_previous_one() {
    let env = [
        STEP,
        &[
            ("LASER__RUN__CHECKPOINT_EVERY", "2"),
            ("LASER_FAILPOINTS", "checkpoint_write=pause_ms:3000"),
        ],
    ]
    .concat();
    let mut run = LocalRun::start("ckpt-kill", 6, &env);
    // Held inside the step-4 checkpoint (the step-2 one is complete): its files are in a
    // temporary directory, the marker is not written yet.
    let step2 = wait_for(
        "the learner inside the step-4 checkpoint write",
        WAIT,
        || {
            let dirs = checkpoint_dirs(&run.run);
            let writing = dirs.iter().any(|d| d.starts_with(".tmp-step-000004"));
            let hits = failpoint_hits(&run.worker_log("learner-0"), "checkpoint_write");
            (writing && hits >= 2 && run.checkpointed_step() == Some(2))
                .then(|| run.data_order().into_iter().find(|r| r["step"] == 2))
                .flatten()
        },
    );
    let pid = run.worker_pid("learner-0").expect("learner-0's pid");
    let killed = Instant::now();
    kill(pid);
    // What the crash left: step 2 complete, step 4 only as a temporary directory.
    let dirs = checkpoint_dirs(&run.run);
    assert!(
        dirs.contains(&"step-000002".to_string()) && !dirs.contains(&"step-000004".to_string()),
        "{dirs:?}"
    );
    wait_for("the step-4 checkpoint after the restart", WAIT, || {
        (run.checkpointed_step() >= Some(4)).then_some(())
    });
    eprintln!(
        "learner killed mid checkpoint write: steps 2-3 redone and step 4 checkpointed {:.2} s \
         after the kill (3 s of it the failpoint's pause in the new write)",
        killed.elapsed().as_secs_f64()
    );
    run.finish(RUN_LIMIT);

    run.assert_rows(6, 8, 32);
    run.assert_data_order(6, 8);
    run.assert_redone_from_checkpoint(2, &step2, &["learner-0"]);
    assert_eq!(run.checkpointed_step(), Some(6));
    // The torn temporary directory was cleaned up by the next rotation; every checkpoint left is
    // complete.
    let dirs = checkpoint_dirs(&run.run);
    assert!(dirs.iter().all(|d| d.starts_with("step-")), "{dirs:?}");
    assert_checkpoints_complete(&run.run);
    let audit = run.assert_audit();
    assert!(audit.contains("restores: 1"), "{audit}");
}

#[test]
fn a_learner_killed_mid_weight_stream_leaves_no_actor_on_torn_weights() {
    let env = [
        STEP,
        &[("LASER_FAILPOINTS", "weights_stream=pause_ms:2000")],
    ]
    .concat();
    let mut run = LocalRun::start("stream-kill", 4, &env);
    // A stream after step 0 trained: its manifest sent, its weight bytes held back.
    wait_for(
        "the learner inside a weight stream after step 0",
        WAIT,
        || {
            let hits = failpoint_hits(&run.worker_log("learner-0"), "weights_stream");
            (hits >= 1 && !run.metrics().is_empty()).then_some(())
        },
    );
    let pid = run.worker_pid("learner-0").expect("learner-0's pid");
    let killed = Instant::now();
    kill(pid);
    run.finish(RUN_LIMIT);
    eprintln!(
        "learner killed mid weight stream: the run finished {:.2} s after the kill",
        killed.elapsed().as_secs_f64()
    );

    run.assert_rows(4, 8, 32);
    run.assert_data_order(4, 8);
    run.assert_audit();
    // No actor applied a torn stream: each one logged only whole updates, and the final version
    // is the learner's.
    for actor in ["actor-0", "actor-1"] {
        let log = run.worker_log(actor);
        assert!(
            !log.contains("panicked"),
            "{actor} survived the torn stream:\n{log}"
        );
    }
    let rows = run.metrics();
    let last = rows.last().unwrap();
    assert_eq!(last["step"], 3, "{last}");
}

/// A tmpfs of `mib` MiB mounted at a directory, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mib: u64) -> Result<Self, String> {
        std::fs::create_dir_all(at).map_err(|e| format!("{}: {e}", at.display()))?;
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at);
        let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        if !status.success() {
            return Err(format!("mount -t tmpfs failed: {out}{err}"));
        }
        Ok(Self(at.to_path_buf()))
    }

    /// Writes `name` until the filesystem is full; returns the bytes written.
    fn fill(&self, name: &str) -> u64 {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join(name)).expect("filler");
        let block = vec![0u8; 1 << 16];
        let mut written = 0;
        while f.write_all(&block).is_ok() {
            written += block.len() as u64;
        }
        let _ = f.flush();
        written
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_run_with_a_clear_error_and_resume_completes_it() {
    const TEST: &str = "a_full_disk_stops_the_run_with_a_clear_error_and_resume_completes_it";
    let mut disk = None;
    let mut mount_error = None;
    let env = [STEP, &[("LASER__RUN__CHECKPOINT_EVERY", "1")]].concat();
    let mut run =
        LocalRun::start_prepared("disk-full", 6, &env, |run_dir| {
            match SmallDisk::mount(run_dir, 64) {
                Ok(d) => disk = Some(d),
                Err(e) => mount_error = Some(e),
            }
        });
    let Some(disk) = disk else {
        drop(run);
        skip_or_fail(TEST, &mount_error.unwrap_or_default());
        return;
    };
    wait_for("two steps checkpointed", WAIT, || {
        (run.checkpointed_step() >= Some(2)).then_some(())
    });
    let filled = Instant::now();
    let bytes = disk.fill("filler");
    // The run stops: a later checkpoint, metrics row or ledger line cannot be written.
    let status = run.coordinator.wait_exit(WAIT);
    let stopped = filled.elapsed();
    let log = run.coordinator_log();
    assert!(
        !status.success(),
        "the run cannot go on with a full disk:\n{log}"
    );
    assert!(
        log.contains("No space left on device"),
        "the error says why:\n{log}"
    );
    eprintln!(
        "disk full ({} MiB of filler): the coordinator stopped {:.2} s later",
        bytes >> 20,
        stopped.as_secs_f64()
    );
    let last_line = log
        .lines()
        .rev()
        .find(|l| l.contains("No space left"))
        .unwrap();
    eprintln!("its error: {last_line}");
    // Every checkpoint it left is complete (temporary ones aside).
    let checkpointed = run
        .checkpointed_step()
        .expect("a checkpoint before the disk filled");
    assert_checkpoints_complete(&run.run);

    // Space freed, the same command with --resume completes the run.
    std::fs::remove_file(disk.0.join("filler")).unwrap();
    run.kill_and_resume(&env);
    run.finish(RUN_LIMIT);
    run.assert_rows(6, 8, 32);
    run.assert_data_order(6, 8);
    let audit = run.assert_audit();
    let resumed: Vec<Value> = run.data_order();
    assert_eq!(resumed.len(), 6);
    eprintln!("resumed from the step-{checkpointed} checkpoint; audit:\n{audit}");
    drop(run);
    drop(disk);
}
