//! Rewards beyond math (issue 28): a real `verifier serve --cluster cluster.toml` whose
//! `[rewards]` routes data sources to exact match and to an external Python reward
//! (tests/fixtures/rewards/word_overlap.py, JSON lines on stdin/stdout). A reward that works
//! grades; one that hangs, crashes or runs out of memory gives GRADE_STATUS_ERROR with the reason
//! for its own items only, within its deadline, and the next request works again. No model.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use laser_integration_tests::{
    Proc, TEST_TOKEN, bin, run_bounded, spawn_server, temp_dir, workspace,
};
use laser_proto::rt::{ClientOptions, ClusterToken, request, with_deadline};
use laser_proto::v1::{GradeItem, GradeRequest, GradeResult, GradeStatus};

/// The external route's per-item deadline.
const TIMEOUT_MS: u64 = 1500;
/// Grade calls' own deadline: far above anything a passing test needs.
const D: Duration = Duration::from_secs(60);

fn fixture() -> PathBuf {
    workspace().join("tests/fixtures/rewards/word_overlap.py")
}

fn python_present() {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "these tests need python3 on PATH");
}

fn cluster_toml() -> String {
    let script = format!("{:?}", fixture().display().to_string());
    format!(
        r#"[model]
init = "tiny"

[rewards]
default = "math"

[[rewards.routes]]
data_source = "test/exact"
kind = "exact_match"

[[rewards.routes]]
data_source = "test/py"
kind = "external"
command = ["python3", {script}]
timeout_ms = {TIMEOUT_MS}
memory_mb = 256

[[rewards.routes]]
data_source = "test/always-hangs"
kind = "external"
command = ["python3", {script}, "--hang"]
timeout_ms = {TIMEOUT_MS}
"#
    )
}

struct Verifier {
    _proc: Proc,
    addr: String,
    dir: PathBuf,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str) -> Verifier {
    python_present();
    let dir = temp_dir(tag);
    let path = dir.join("cluster.toml");
    std::fs::write(&path, cluster_toml()).unwrap();
    let path = path.display().to_string();
    let (proc, addr) = spawn_server(
        &bin("verifier"),
        &["serve", "--listen", "127.0.0.1:0", "--cluster", &path],
        &[],
        Duration::from_secs(30),
    );
    Verifier {
        _proc: proc,
        addr,
        dir,
    }
}

/// Sends (data_source, gold, response) items with ids 0, 1, …; the results and how long it took.
async fn grade(v: &Verifier, items: &[(&str, &str, &str)]) -> (Vec<GradeResult>, Duration) {
    let opts = ClientOptions::new(ClusterToken::new(TEST_TOKEN).unwrap());
    let channel = opts.connect(&v.addr).await.expect("connect");
    let msg = GradeRequest {
        items: items
            .iter()
            .enumerate()
            .map(|(i, (data_source, gold, response))| GradeItem {
                id: 100 + i as u64,
                gold: gold.to_string(),
                response: response.to_string(),
                data_source: data_source.to_string(),
            })
            .collect(),
    };
    let t = Instant::now();
    let r = with_deadline("Grade", D, opts.verifier(channel).grade(request(msg, D)))
        .await
        .expect("Grade completes even when a reward fails")
        .into_inner();
    let took = t.elapsed();
    assert_eq!(r.results.len(), items.len(), "one result per item");
    let ids: Vec<u64> = r.results.iter().map(|r| r.id).collect();
    let want: Vec<u64> = (0..items.len() as u64).map(|i| 100 + i).collect();
    assert_eq!(ids, want, "results in request order");
    (r.results, took)
}

fn status(r: &GradeResult) -> GradeStatus {
    GradeStatus::try_from(r.status).unwrap_or(GradeStatus::Unspecified)
}

fn assert_graded(r: &GradeResult, reward: f32, s: GradeStatus) {
    assert_eq!((r.reward, status(r)), (reward, s), "{r:?}");
    assert!(r.error.is_empty(), "{r:?}");
}

fn assert_error(r: &GradeResult, contains: &[&str]) {
    assert_eq!((r.reward, status(r)), (0.0, GradeStatus::Error), "{r:?}");
    for c in contains {
        assert!(r.error.contains(c), "error should say {c:?}: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_data_source_and_an_external_reward_grades() {
    let v = start("rewards-ok");
    let (r, _) = grade(
        &v,
        &[
            ("test/py", "red green", "red green"),
            ("", "4", "so it is \\boxed{4}"),
            ("test/py", "red green", "only red"),
            ("test/exact", "Paris", " Paris \n"),
            ("test/py", "red green", "blue"),
            ("unlisted/tag", "1/2", "\\boxed{0.5}"),
            ("test/exact", "Paris", "\\boxed{Paris}"),
        ],
    )
    .await;
    assert_graded(&r[0], 1.0, GradeStatus::Correct);
    assert_eq!(r[0].extracted, "red green");
    assert_graded(&r[1], 1.0, GradeStatus::Correct);
    assert_graded(&r[2], 0.5, GradeStatus::Incorrect);
    assert_graded(&r[3], 1.0, GradeStatus::Correct);
    assert_graded(&r[4], 0.0, GradeStatus::Incorrect);
    assert_graded(&r[5], 1.0, GradeStatus::Correct);
    assert_graded(&r[6], 0.0, GradeStatus::Incorrect);
    // The process is long-lived: a second request reuses it and still answers.
    let (r, _) = grade(&v, &[("test/py", "a b c d", "a b c")]).await;
    assert_graded(&r[0], 0.75, GradeStatus::Incorrect);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_reward_errors_its_items_within_the_deadline() {
    let v = start("rewards-hang");
    let (r, took) = grade(
        &v,
        &[
            ("", "4", "\\boxed{4}"),
            ("test/py", "x", "hang"),
            ("test/exact", "a", "a"),
            ("test/py", "x y", "x y"),
            ("", "4", "\\boxed{5}"),
        ],
    )
    .await;
    // One deadline, a fresh python for the next item, and slack for a loaded machine.
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 5000),
        "Grade took {took:?}"
    );
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS),
        "the deadline was waited: {took:?}"
    );
    assert_graded(&r[0], 1.0, GradeStatus::Correct);
    assert_error(
        &r[1],
        &[
            "reward `test/py`",
            &format!("no answer within {TIMEOUT_MS} ms"),
        ],
    );
    assert_graded(&r[2], 1.0, GradeStatus::Correct);
    assert_graded(&r[3], 1.0, GradeStatus::Correct);
    assert_graded(&r[4], 0.0, GradeStatus::Incorrect);

    // A reward that hangs on everything costs a batch two deadlines, not one per item; the
    // math items of the same request are not held back by more than that.
    let (r, took) = grade(
        &v,
        &[
            ("test/always-hangs", "x", "a"),
            ("test/always-hangs", "x", "b"),
            ("", "4", "\\boxed{4}"),
            ("test/always-hangs", "x", "c"),
            ("test/always-hangs", "x", "d"),
            ("test/always-hangs", "x", "e"),
        ],
    )
    .await;
    assert!(
        took < Duration::from_millis(2 * TIMEOUT_MS + 5000),
        "Grade took {took:?}"
    );
    assert_error(&r[0], &["reward `test/always-hangs`", "no answer within"]);
    assert_error(&r[1], &["no answer within"]);
    assert_graded(&r[2], 1.0, GradeStatus::Correct);
    for x in &r[3..] {
        assert_error(
            x,
            &["reward `test/always-hangs`", "not sent", "2 times in a row"],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_an_error_with_its_status_and_the_reward_restarts() {
    let v = start("rewards-crash");
    let (r, _) = grade(
        &v,
        &[
            ("test/py", "x", "x"),
            ("test/py", "x", "crash"),
            ("", "2", "\\boxed{2}"),
            ("test/py", "x", "x"),
        ],
    )
    .await;
    assert_graded(&r[0], 1.0, GradeStatus::Correct);
    assert_error(
        &r[1],
        &[
            "reward `test/py`",
            "exited with exit status 3",
            "crashing on purpose",
        ],
    );
    assert_graded(&r[2], 1.0, GradeStatus::Correct);
    assert_graded(&r[3], 1.0, GradeStatus::Correct);
    // The next request works again.
    let (r, _) = grade(&v, &[("test/py", "x", "x"), ("test/py", "x", "garbage")]).await;
    assert_graded(&r[0], 1.0, GradeStatus::Correct);
    assert_error(
        &r[1],
        &["reward `test/py`", "bad reply line \"this is not json\""],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reward_past_its_memory_bound_is_an_error() {
    let v = start("rewards-mem");
    // memory_mb = 256: python's 1 GiB bytearray fails with MemoryError and the script dies.
    let (r, _) = grade(&v, &[("test/py", "x", "alloc"), ("test/py", "x", "x")]).await;
    assert_error(
        &r[0],
        &[
            "reward `test/py`",
            "exited with exit status 1",
            "MemoryError",
        ],
    );
    assert_graded(&r[1], 1.0, GradeStatus::Correct);
}

#[test]
fn a_bad_rewards_section_stops_serve_naming_the_field() {
    let dir = temp_dir("rewards-bad");
    let path = dir.join("cluster.toml");
    std::fs::write(
        &path,
        "[[rewards.routes]]\ndata_source = \"a\"\nkind = \"math\"\n\
         [[rewards.routes]]\ndata_source = \"b\"\nkind = \"regex\"\npattern = '(?P<answer>'\n",
    )
    .unwrap();
    let mut cmd = Command::new(bin("verifier"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--cluster"])
        .arg(&path)
        .env(laser_integration_tests::TOKEN_ENV, TEST_TOKEN);
    let (status, _, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("`rewards.routes[1].pattern` = \"(?P<answer>\": invalid regex"),
        "{err}"
    );
    assert!(err.contains("cluster.toml"), "names the file: {err}");
}

#[test]
fn verifier_grade_uses_the_registry_with_a_data_source() {
    python_present();
    let dir = temp_dir("rewards-cli");
    let path = dir.join("cluster.toml");
    std::fs::write(&path, cluster_toml()).unwrap();
    let mut cmd = Command::new(bin("verifier"));
    cmd.args(["grade", "--json", "--gold", "red green", "--answer", "red"])
        .args(["--data-source", "test/py", "--cluster"])
        .arg(&path);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["reward"], 0.5, "{v}");
    assert_eq!(v["status"], "incorrect", "{v}");
}
