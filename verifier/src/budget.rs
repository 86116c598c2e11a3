//! The per-answer time budget.
//!
//! Two layers: the grader checks a [`Deadline`] in its loops and caps input size, nesting depth and
//! exponent size (cooperative), and [`Worker`] runs grading on its own thread and stops waiting at
//! the deadline (hard). A worker that overruns is abandoned — it finishes on its own and its result
//! is dropped — and a fresh one takes the next answer, so one pathological answer costs its own
//! budget and never the batch. No signals are involved.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// A point in time after which grading gives up.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Self {
            at: now
                .checked_add(budget)
                .unwrap_or(now + Duration::from_secs(86_400)),
        }
    }

    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

type Job<T> = Box<dyn FnOnce() -> T + Send + 'static>;

/// One grading thread, reused across answers until one overruns.
pub struct Worker<T: Send + 'static> {
    jobs: Sender<Job<T>>,
    results: Receiver<thread::Result<T>>,
}

/// Why a job produced no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFailure {
    /// The deadline passed first; the worker is no longer usable.
    TimedOut,
    /// The job panicked (caught on the worker) or the worker could not run it.
    Crashed,
}

impl<T: Send + 'static> Worker<T> {
    /// Starts the thread. A large stack leaves room for the depth-limited recursion.
    pub fn spawn() -> std::io::Result<Self> {
        let (job_tx, job_rx) = mpsc::channel::<Job<T>>();
        let (res_tx, res_rx) = mpsc::channel();
        thread::Builder::new()
            .name("verifier-grade".into())
            .stack_size(32 << 20)
            .spawn(move || {
                // Ends when the owning Worker is dropped (job channel closed) or stops listening.
                while let Ok(job) = job_rx.recv() {
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    if res_tx.send(out).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs: job_tx,
            results: res_rx,
        })
    }

    /// Runs `job` and waits until `deadline`. After `TimedOut` the worker must be replaced.
    pub fn run(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
        deadline: Deadline,
    ) -> Result<T, JobFailure> {
        if self.jobs.send(Box::new(job)).is_err() {
            return Err(JobFailure::Crashed);
        }
        match self.results.recv_timeout(deadline.remaining()) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_panic)) => Err(JobFailure::Crashed),
            Err(RecvTimeoutError::Timeout) => Err(JobFailure::TimedOut),
            Err(RecvTimeoutError::Disconnected) => Err(JobFailure::Crashed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_value_within_deadline() {
        let w = Worker::spawn().unwrap();
        assert_eq!(
            w.run(|| 41 + 1, Deadline::after(Duration::from_secs(5))),
            Ok(42)
        );
        // Reusable.
        assert_eq!(w.run(|| 7, Deadline::after(Duration::from_secs(5))), Ok(7));
    }

    #[test]
    fn non_cooperative_job_times_out() {
        let w = Worker::spawn().unwrap();
        let r = w.run(
            || {
                thread::sleep(Duration::from_secs(3));
                1
            },
            Deadline::after(Duration::from_millis(100)),
        );
        // The caller got control back before the job finished: that is the hard timeout.
        assert_eq!(r, Err(JobFailure::TimedOut));
    }

    #[test]
    fn panic_is_contained() {
        let w: Worker<i32> = Worker::spawn().unwrap();
        let r = w.run(|| panic!("boom"), Deadline::after(Duration::from_secs(5)));
        assert_eq!(r, Err(JobFailure::Crashed));
        assert_eq!(w.run(|| 3, Deadline::after(Duration::from_secs(5))), Ok(3));
    }
}
