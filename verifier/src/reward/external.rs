//! `kind = "external"`: a reward function in another process, e.g. a user's Python script,
//! speaking JSON lines on stdin/stdout (docs/REWARDS.md has the protocol).
//!
//! One long-lived child per route, started on first use and again after it dies. Items go one
//! at a time: write `{"id", "data_source", "response", "gold"}`, read one line
//! `{"id", "reward", "extracted"?}`. Every wait has a deadline: a reply must come within
//! `timeout_ms` or the child's process group is killed; a reply line is bounded in length; the
//! child's address space is bounded by RLIMIT_AS. Pipes are served by threads (writer, stdout
//! reader, stderr reader) so that a child that stops reading or writing never blocks the
//! verifier, only runs into its deadline. After [`MAX_CONSECUTIVE_FAILURES`] failures in a row
//! within one batch the rest of that batch is not sent, which bounds a batch of a hung reward to
//! about that many deadlines.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use laser_config::RewardRoute;
use serde::Deserialize;

use super::RewardItem;

/// Failures in a row (timeouts, crashes, bad lines, failed starts) after which the rest of a
/// batch is skipped: one bad response still lets the others be graded, a reward that hangs on
/// everything costs a batch about this many deadlines rather than one per item.
pub const MAX_CONSECUTIVE_FAILURES: usize = 2;
/// Longest reply line read; a longer one is a protocol error (and bounds our memory).
pub const MAX_REPLY_BYTES: usize = 1 << 20;
/// Lines of the child's stderr kept for error messages, and their length.
const STDERR_TAIL_LINES: usize = 5;
const STDERR_LINE_CHARS: usize = 300;
/// How long a child that closed stdout gets to exit (to report its status), and its stderr to
/// drain, before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(1000);
/// A bad reply is quoted up to this many characters.
const QUOTE_CHARS: usize = 200;

/// The settings of one external route.
#[derive(Debug, Clone)]
pub struct ExternalConfig {
    /// The route's data_source, for log lines.
    pub name: String,
    pub command: Vec<String>,
    pub workdir: Option<PathBuf>,
    /// Per-item deadline.
    pub timeout: Duration,
    /// RLIMIT_AS of the child; None: unbounded.
    pub memory_bytes: Option<u64>,
}

impl ExternalConfig {
    /// From a validated `[[rewards.routes]]` of kind external.
    pub fn from_route(route: &RewardRoute) -> Self {
        let mb = route.memory_mb();
        Self {
            name: route.data_source.clone(),
            command: route.command.clone().unwrap_or_default(),
            workdir: route.workdir.clone(),
            timeout: Duration::from_millis(route.timeout_ms()),
            memory_bytes: (mb > 0).then_some(mb.saturating_mul(1 << 20)),
        }
    }

    fn command_line(&self) -> String {
        self.command.join(" ")
    }
}

/// A reward the process gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// Finite, in [0, 1].
    pub reward: f32,
    pub extracted: Option<String>,
}

/// Why an item got no reward. The registry prefixes ``reward `NAME`: ``.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExternalError {
    #[error("could not start `{command}`: {message}")]
    Start { command: String, message: String },
    #[error("no answer within {ms} ms (the process was killed; it restarts for the next item)")]
    Timeout { ms: u128 },
    #[error("the process {how} without answering{}", stderr_suffix(.stderr))]
    Exited { how: String, stderr: Vec<String> },
    #[error("bad reply line {line:?}: {why}")]
    BadReply { line: String, why: String },
    #[error("reward {reward} is outside [0, 1]")]
    OutOfRange { reward: f64 },
    #[error("not sent: the process failed {count} times in a row in this batch (last: {last})")]
    Skipped { count: usize, last: String },
}

fn stderr_suffix(lines: &[String]) -> String {
    if lines.is_empty() {
        "; its stderr was empty".into()
    } else {
        format!("; last stderr: {}", lines.join(" | "))
    }
}

impl ExternalError {
    /// Whether the child can no longer be trusted to be in step (and is restarted).
    fn kills(&self) -> bool {
        !matches!(
            self,
            ExternalError::OutOfRange { .. } | ExternalError::Skipped { .. }
        )
    }
}

/// One route's reward process, shared by every Grade call (batches of one route take turns).
pub struct ExternalReward {
    config: ExternalConfig,
    running: Mutex<Option<Running>>,
    next_id: AtomicU64,
}

impl ExternalReward {
    pub fn new(config: ExternalConfig) -> Self {
        Self {
            config,
            running: Mutex::new(None),
            next_id: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &ExternalConfig {
        &self.config
    }

    /// Grades `items` in order, one result each; never panics, and waits at most `timeout` per
    /// item sent (plus a bounded grace for a dying process).
    pub fn grade_batch(&self, items: &[RewardItem<'_>]) -> Vec<Result<Scored, ExternalError>> {
        let mut running = lock(&self.running);
        let mut failures = 0;
        let mut last = String::new();
        items
            .iter()
            .map(|item| {
                if failures >= MAX_CONSECUTIVE_FAILURES {
                    return Err(ExternalError::Skipped {
                        count: failures,
                        last: last.clone(),
                    });
                }
                let r = self.grade_one(&mut running, item);
                match &r {
                    Ok(_) => failures = 0,
                    Err(e) if e.kills() => {
                        failures += 1;
                        last = e.to_string();
                        // Dropping kills the process group; the next item starts a fresh one.
                        *running = None;
                    }
                    // It answered, just not within [0, 1]: the process itself is fine.
                    Err(_) => failures = 0,
                }
                r
            })
            .collect()
    }

    fn grade_one(
        &self,
        running: &mut Option<Running>,
        item: &RewardItem<'_>,
    ) -> Result<Scored, ExternalError> {
        if let Some(r) = running.as_mut()
            && let Ok(Some(status)) = r.child.try_wait()
        {
            eprintln!(
                "[reward {}] the process ended between items ({status}); restarting",
                self.config.name
            );
            *running = None;
        }
        if running.is_none() {
            *running = Some(Running::start(&self.config)?);
        }
        let Some(r) = running.as_mut() else {
            unreachable!("started above")
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = serde_json::json!({
            "id": id,
            "data_source": item.data_source,
            "response": item.response,
            "gold": item.gold,
        });
        if r.to_child.send(request.to_string()).is_err() {
            return Err(r.exited());
        }
        match r.replies.recv_timeout(self.config.timeout) {
            Ok(Line::Text(line)) => parse_reply(&line, id),
            Ok(Line::TooLong) => Err(ExternalError::BadReply {
                line: String::new(),
                why: format!("longer than {MAX_REPLY_BYTES} bytes"),
            }),
            Err(RecvTimeoutError::Timeout) => Err(ExternalError::Timeout {
                ms: self.config.timeout.as_millis(),
            }),
            Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => Err(r.exited()),
        }
    }
}

#[derive(Deserialize)]
struct Reply {
    id: u64,
    reward: f64,
    #[serde(default)]
    extracted: Option<String>,
}

fn parse_reply(line: &str, id: u64) -> Result<Scored, ExternalError> {
    let bad = |why: String| ExternalError::BadReply {
        line: quote(line),
        why,
    };
    let reply: Reply = serde_json::from_str(line).map_err(|e| {
        bad(format!(
            "not a JSON object {{\"id\": {id}, \"reward\": 0.0..1.0}}: {e}"
        ))
    })?;
    if reply.id != id {
        return Err(bad(format!("answers id {} where {id} was asked", reply.id)));
    }
    if !(reply.reward.is_finite() && (0.0..=1.0).contains(&reply.reward)) {
        return Err(ExternalError::OutOfRange {
            reward: reply.reward,
        });
    }
    Ok(Scored {
        reward: reply.reward as f32,
        extracted: reply.extracted,
    })
}

fn quote(s: &str) -> String {
    let mut q: String = s.chars().take(QUOTE_CHARS).collect();
    if q.len() < s.len() {
        q.push('…');
    }
    q
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

enum Line {
    Text(String),
    TooLong,
    Eof,
}

/// A started child and the threads serving its pipes. Dropping it kills the process group.
struct Running {
    child: Child,
    to_child: Sender<String>,
    replies: Receiver<Line>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Receiver<()>,
}

impl Running {
    fn start(config: &ExternalConfig) -> Result<Self, ExternalError> {
        let start_err = |message: String| ExternalError::Start {
            command: config.command_line(),
            message,
        };
        let Some((program, args)) = config.command.split_first() else {
            return Err(start_err("the command is empty".into()));
        };
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that a kill also reaches what a wrapper script started.
            .process_group(0);
        // The reward has no business with the cluster token or our other settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LASER_") {
                cmd.env_remove(k);
            }
        }
        if let Some(dir) = &config.workdir {
            cmd.current_dir(dir);
        }
        if let Some(bytes) = config.memory_bytes {
            let limit = libc::rlimit {
                rlim_cur: bytes as libc::rlim_t,
                rlim_max: bytes as libc::rlim_t,
            };
            // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
            // the closure allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|e| start_err(e.to_string()))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            kill_group(&mut child);
            return Err(start_err("its pipes could not be opened".into()));
        };
        let (to_child, requests) = mpsc::channel::<String>();
        spawn_named("reward-stdin", move || write_requests(stdin, requests));
        let (replies_tx, replies) = mpsc::channel();
        spawn_named("reward-stdout", move || read_replies(stdout, replies_tx));
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (done_tx, stderr_done) = mpsc::channel();
        let tail = Arc::clone(&stderr_tail);
        let name = config.name.clone();
        spawn_named("reward-stderr", move || {
            read_stderr(stderr, &name, &tail);
            let _ = done_tx.send(());
        });
        Ok(Self {
            child,
            to_child,
            replies,
            stderr_tail,
            stderr_done,
        })
    }

    /// The child closed stdout: how it ended (waiting a bounded time) and its last stderr lines.
    fn exited(&mut self) -> ExternalError {
        let end = Instant::now() + EXIT_GRACE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
                _ => break None,
            }
        };
        let how = match status {
            Some(s) => describe(s),
            None => {
                kill_group(&mut self.child);
                "closed its stdout (it was killed)".into()
            }
        };
        let _ = self
            .stderr_done
            .recv_timeout(end.saturating_duration_since(Instant::now()));
        let stderr = lock(&self.stderr_tail).iter().cloned().collect();
        ExternalError::Exited { how, stderr }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exited with exit status {code}"),
        (None, Some(sig)) if sig == libc::SIGKILL => format!(
            "was killed by signal {sig} (SIGKILL; the kernel's out-of-memory killer sends it too)"
        ),
        (None, Some(libc::SIGSEGV)) => format!(
            "was killed by signal {} (SIGSEGV; also what an allocation past memory_mb can end in)",
            libc::SIGSEGV
        ),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        (None, None) => format!("ended ({s})"),
    }
}

/// SIGKILL to the child's process group, then reaps it without blocking for long: a child stuck
/// in the kernel is left to a reaper thread rather than holding up grading.
fn kill_group(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: plain syscall; the group is the child's own (process_group(0)).
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = child.kill();
    }
    let end = Instant::now() + Duration::from_millis(100);
    while Instant::now() < end {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = child.id();
    spawn_named("reward-reaper", move || {
        // waitpid on our own child's pid; it cannot be reused before it is reaped.
        let mut status = 0;
        // SAFETY: plain syscall on a pid we own.
        unsafe {
            libc::waitpid(pid as i32, &mut status, 0);
        }
    });
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) {
    // A failed thread spawn leaves the pipe unserved: the item runs into its deadline.
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        eprintln!("verifier: could not start the {name} thread: {e}");
    }
}

fn write_requests(mut stdin: ChildStdin, requests: Receiver<String>) {
    for line in requests {
        let ok = stdin
            .write_all(line.as_bytes())
            .and_then(|_| stdin.write_all(b"\n"))
            .and_then(|_| stdin.flush());
        if ok.is_err() {
            // The child is gone; the reader sees EOF and reports how it ended.
            return;
        }
    }
}

fn read_replies(stdout: impl Read, replies: Sender<Line>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut buf = Vec::new();
        let n = reader
            .by_ref()
            .take(MAX_REPLY_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf);
        let line = match n {
            Ok(0) | Err(_) => Line::Eof,
            Ok(_) if buf.last() != Some(&b'\n') && buf.len() > MAX_REPLY_BYTES => Line::TooLong,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                Line::Text(text.trim_end_matches(['\n', '\r']).to_string())
            }
        };
        let last = !matches!(line, Line::Text(_));
        if replies.send(line).is_err() || last {
            return;
        }
    }
}

fn read_stderr(stderr: impl Read, name: &str, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    loop {
        let mut buf = Vec::new();
        match reader.by_ref().take(64 << 10).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        // Passed on, so a user debugging a reward sees its output in the verifier's log.
        eprintln!("[reward {name}] {text}");
        let mut t = lock(tail);
        if t.len() == STDERR_TAIL_LINES {
            t.pop_front();
        }
        t.push_back(text.chars().take(STDERR_LINE_CHARS).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reward(script: &str, timeout_ms: u64, memory_mb: u64) -> ExternalReward {
        ExternalReward::new(ExternalConfig {
            name: "test".into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            workdir: None,
            timeout: Duration::from_millis(timeout_ms),
            memory_bytes: (memory_mb > 0).then_some(memory_mb << 20),
        })
    }

    fn items(responses: &[&'static str]) -> Vec<RewardItem<'static>> {
        responses
            .iter()
            .map(|r| RewardItem {
                data_source: "test",
                gold: "1",
                response: r,
            })
            .collect()
    }

    /// Answers reward 1 for every request, but misbehaves on a few responses (ids read with sed).
    const ECHO: &str = r#"while read -r line; do
        id=$(printf '%s' "$line" | sed 's/.*"id":\([0-9]*\).*/\1/')
        case "$line" in
          *'"response":"hang"'*) sleep 30 ;;
          *'"response":"crash"'*) echo "dying on purpose" >&2; exit 3 ;;
          *'"response":"garbage"'*) echo "this is not json" ;;
          *'"response":"wrong-id"'*) echo "{\"id\": 99999, \"reward\": 1}" ;;
          *'"response":"big"'*) echo "{\"id\": $id, \"reward\": 2.5}" ;;
          *) echo "{\"id\": $id, \"reward\": 1, \"extracted\": \"ok\"}" ;;
        esac
    done"#;

    #[test]
    fn answers_come_back_in_order() {
        let r = reward(ECHO, 5000, 0);
        let got = r.grade_batch(&items(&["a", "b", "c"]));
        assert_eq!(got.len(), 3);
        for g in got {
            assert_eq!(
                g.unwrap(),
                Scored {
                    reward: 1.0,
                    extracted: Some("ok".into())
                }
            );
        }
    }

    #[test]
    fn a_hang_is_cut_at_the_deadline_and_the_next_item_gets_a_fresh_process() {
        let r = reward(ECHO, 300, 0);
        let t = Instant::now();
        let got = r.grade_batch(&items(&["a", "hang", "b"]));
        let took = t.elapsed();
        assert!(took < Duration::from_secs(3), "took {took:?}");
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(ExternalError::Timeout { ms: 300 }));
        assert!(got[2].is_ok(), "{:?}", got[2]);
    }

    #[test]
    fn a_reward_that_always_hangs_costs_a_batch_a_bounded_time() {
        let r = reward("read -r line; sleep 30", 200, 0);
        let t = Instant::now();
        let got = r.grade_batch(&items(&["a", "b", "c", "d", "e", "f"]));
        let took = t.elapsed();
        assert!(
            took < Duration::from_millis(200 * MAX_CONSECUTIVE_FAILURES as u64 + 1500),
            "took {took:?}"
        );
        assert_eq!(got.len(), 6);
        assert!(matches!(got[0], Err(ExternalError::Timeout { .. })));
        assert!(matches!(got[1], Err(ExternalError::Timeout { .. })));
        for g in &got[2..] {
            let Err(ExternalError::Skipped { count: 2, last }) = g else {
                panic!("{g:?}")
            };
            assert!(last.starts_with("no answer within 200 ms"), "{last}");
        }
    }

    #[test]
    fn a_crash_reports_status_and_stderr_and_the_next_item_restarts() {
        let r = reward(ECHO, 5000, 0);
        let got = r.grade_batch(&items(&["a", "crash", "b"]));
        assert!(got[0].is_ok());
        let e = got[1].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("the process exited with exit status 3 without answering"),
            "{e}"
        );
        assert!(e.contains("last stderr: dying on purpose"), "{e}");
        assert!(got[2].is_ok(), "{:?}", got[2]);
        // And a later batch is fine too.
        assert!(r.grade_batch(&items(&["c"]))[0].is_ok());
    }

    #[test]
    fn bad_lines_and_out_of_range_rewards_are_errors() {
        let r = reward(ECHO, 5000, 0);
        let got = r.grade_batch(&items(&["garbage", "big", "wrong-id", "a"]));
        let e = got[0].as_ref().unwrap_err().to_string();
        assert!(
            e.starts_with("bad reply line \"this is not json\": not a JSON object"),
            "{e}"
        );
        assert_eq!(got[1], Err(ExternalError::OutOfRange { reward: 2.5 }));
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("answers id 99999 where"), "{e}");
        assert!(got[3].is_ok(), "{:?}", got[3]);
    }

    #[test]
    fn replies_are_checked() {
        assert_eq!(
            parse_reply(
                r#"{"id": 4, "reward": 0.25, "note": "extra keys are fine"}"#,
                4
            ),
            Ok(Scored {
                reward: 0.25,
                extracted: None
            })
        );
        assert!(matches!(
            parse_reply(r#"{"id": 4, "reward": -0.1}"#, 4),
            Err(ExternalError::OutOfRange { .. })
        ));
        assert!(matches!(
            parse_reply(r#"{"id": 4, "reward": NaN}"#, 4),
            Err(ExternalError::BadReply { .. })
        ));
        assert!(matches!(
            parse_reply(r#"{"id": 4}"#, 4),
            Err(ExternalError::BadReply { .. })
        ));
        assert!(matches!(
            parse_reply(r#"{"id": 4, "reward": "1"}"#, 4),
            Err(ExternalError::BadReply { .. })
        ));
    }

    #[test]
    fn the_memory_bound_is_the_childs_rlimit_as() {
        // `ulimit -v` prints RLIMIT_AS in KiB: 64 MiB is 65536.
        let script =
            r#"read -r line; echo "{\"id\": 0, \"reward\": 0, \"extracted\": \"$(ulimit -v)\"}""#;
        let r = reward(script, 5000, 64);
        let got = r.grade_batch(&items(&["a"]));
        assert_eq!(got[0].as_ref().unwrap().extracted.as_deref(), Some("65536"));
        let r = reward(script, 5000, 0);
        let got = r.grade_batch(&items(&["a"]));
        assert_eq!(
            got[0].as_ref().unwrap().extracted.as_deref(),
            Some("unlimited")
        );
    }

    #[test]
    fn a_missing_program_is_a_start_error() {
        let r = ExternalReward::new(ExternalConfig {
            name: "missing".into(),
            command: vec!["/nonexistent/reward".into()],
            workdir: None,
            timeout: Duration::from_millis(1000),
            memory_bytes: None,
        });
        let got = r.grade_batch(&items(&["a", "b", "c"]));
        assert!(matches!(got[0], Err(ExternalError::Start { .. })));
        assert!(matches!(got[2], Err(ExternalError::Skipped { .. })));
    }

    #[test]
    fn the_cluster_token_is_not_passed_on() {
        // SAFETY: the variable is only read by the child below; tests that spawn children do
        // not depend on it.
        unsafe { std::env::set_var("LASER_TEST_SECRET_FOR_REWARDS", "s3cret") };
        let script = r#"read -r line; echo "{\"id\": 0, \"reward\": 0, \"extracted\": \"[${LASER_TEST_SECRET_FOR_REWARDS:-}]\"}""#;
        let got = reward(script, 5000, 0).grade_batch(&items(&["a"]));
        assert_eq!(got[0].as_ref().unwrap().extracted.as_deref(), Some("[]"));
    }
}
