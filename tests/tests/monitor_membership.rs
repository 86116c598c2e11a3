//! Must-show 5 (membership half, no model needed): an external-mode coordinator, a verifier that
//! registers itself, and `laserctl status|workers` (tables and JSON) showing it. Also checks that
//! a worker killed outright is marked lost by the heartbeat monitor and that Ctrl-C stops the
//! coordinator.

use std::process::Command;
use std::time::Duration;

use laser_integration_tests::{
    TEST_TOKEN, TOKEN_ENV, bin, run_bounded, spawn_server, temp_dir, wait_for,
};

fn laserctl(addr: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("laserctl"));
    cmd.arg("--addr")
        .arg(addr)
        .args(args)
        .env(TOKEN_ENV, TEST_TOKEN);
    let (status, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    (status.code().unwrap_or(-1), out, err)
}

#[test]
fn laserctl_shows_registered_workers_and_lost_ones() {
    let dir = temp_dir("monitor");
    let cfg = dir.join("cluster.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {ws:?}\n[cluster]\nmode = \"external\"\nactors = 1\nverifiers = 1\n\
             token = {{ env = \"{TOKEN_ENV}\" }}\nheartbeat_ms = 100\nworker_timeout_ms = 1000\nstartup_timeout_s = 120\n\
             [run]\ndir = {run:?}\nmax_steps = 1\n",
            ws = laser_integration_tests::workspace().display().to_string(),
            run = dir.join("run").display().to_string(),
        ),
    )
    .unwrap();
    let (mut coord, addr) = spawn_server(
        &bin("coordinator"),
        &["--cluster", cfg.to_str().unwrap(), "--no-progress"],
        &[],
        Duration::from_secs(30),
    );
    let (mut verifier, vaddr) = spawn_server(
        &bin("verifier"),
        &["serve", "--coordinator", &addr, "--name", "verifier-it"],
        &[],
        Duration::from_secs(30),
    );

    let workers = wait_for("the verifier to register", Duration::from_secs(30), || {
        let (code, out, _) = laserctl(&addr, &["workers", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        (code == 0 && v.as_array().is_some_and(|a| !a.is_empty())).then_some(v)
    });
    let w = &workers[0];
    assert_eq!(w["name"], "verifier-it");
    assert_eq!(w["role"], "verifier");
    assert_eq!(w["state"], "alive");
    assert_eq!(w["endpoint"], vaddr.as_str());

    let (code, table, _) = laserctl(&addr, &["workers"]);
    assert_eq!(code, 0);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table.contains("verifier-it") && table.contains("alive"),
        "{table}"
    );

    let (code, out, _) = laserctl(&addr, &["status", "--json"]);
    assert_eq!(code, 0);
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["state"], "starting", "waiting for its actor: {s}");
    assert_eq!(s["mode"], "external");
    assert_eq!(s["verifiers"], 1);
    assert_eq!(s["actors"], 0);
    let (code, out, _) = laserctl(&addr, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("1 verifiers"), "{out}");

    // Without the token laserctl is refused, and says why.
    let mut cmd = Command::new(bin("laserctl"));
    cmd.args(["--addr", &addr, "status"])
        .env_remove(TOKEN_ENV)
        .arg("--run-dir")
        .arg(&dir);
    let (status, _, err) = run_bounded(&mut cmd, Duration::from_secs(30));
    assert!(!status.success());
    assert!(err.contains("no cluster token"), "{err}");

    // SIGKILL the verifier: the heartbeat monitor marks it lost.
    verifier.kill();
    wait_for(
        "the verifier to be marked lost",
        Duration::from_secs(30),
        || {
            let (_, out, _) = laserctl(&addr, &["workers", "--json"]);
            let v: serde_json::Value = serde_json::from_str(&out).ok()?;
            (v[0]["state"] == "lost").then_some(())
        },
    );

    // Ctrl-C stops the coordinator with a non-zero status.
    coord.signal(libc::SIGINT);
    let status = coord.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let _ = std::fs::remove_dir_all(&dir);
}
