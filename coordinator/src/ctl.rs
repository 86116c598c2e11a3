//! `laserctl`: renders the Monitor API as tables or JSON. Rendering is plain functions of the
//! messages so it is tested without a cluster.

use std::fmt::Write;

use laser_proto::v1::{ClusterStatus, Role, StepMetrics, WorkerInfo};
use serde_json::{Value, json};

pub fn role_name(role: i32) -> &'static str {
    match Role::try_from(role).unwrap_or(Role::Unspecified) {
        Role::Actor => "actor",
        Role::Verifier => "verifier",
        Role::Learner => "learner",
        Role::Unspecified => "?",
    }
}

pub fn status_json(s: &ClusterStatus) -> Value {
    json!({
        "run_dir": s.run_dir,
        "state": s.state,
        "step": s.step,
        "max_steps": s.max_steps,
        "policy_version": s.policy_version,
        "mode": s.mode,
        "async": s.r#async,
        "actors": s.actors,
        "verifiers": s.verifiers,
        "learners": s.learners,
        "uptime_seconds": s.uptime_seconds,
        "last": s.last.as_ref().map(|m| serde_json::to_value(m).unwrap_or(Value::Null)),
    })
}

pub fn status_table(s: &ClusterStatus) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "run        {}", s.run_dir);
    let _ = writeln!(
        o,
        "state      {}  ({} mode{})",
        s.state,
        s.mode,
        if s.r#async { ", async" } else { "" }
    );
    let _ = writeln!(
        o,
        "step       {}/{}   policy version {}",
        s.step, s.max_steps, s.policy_version
    );
    let _ = writeln!(
        o,
        "workers    {} actors, {} verifiers, {} learner(s) alive",
        s.actors, s.verifiers, s.learners
    );
    let _ = writeln!(o, "uptime     {:.0}s", s.uptime_seconds);
    if let Some(m) = &s.last {
        let _ = writeln!(o, "last step  {}", metrics_line(m));
    }
    o
}

pub fn workers_json(ws: &[WorkerInfo]) -> Value {
    Value::Array(
        ws.iter()
            .map(|w| {
                json!({
                    "worker_id": w.worker_id,
                    "name": w.name,
                    "role": role_name(w.role),
                    "endpoint": w.endpoint,
                    "state": w.state,
                    "policy_version": w.policy_version,
                    "in_flight": w.in_flight,
                    "completed": w.completed,
                    "last_heartbeat_age_seconds": w.last_heartbeat_age_seconds,
                })
            })
            .collect(),
    )
}

pub fn workers_table(ws: &[WorkerInfo]) -> String {
    let headers = [
        "NAME",
        "ROLE",
        "STATE",
        "ENDPOINT",
        "VERSION",
        "IN-FLIGHT",
        "DONE",
        "HEARTBEAT",
    ];
    let rows: Vec<[String; 8]> = ws
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                role_name(w.role).to_string(),
                w.state.clone(),
                w.endpoint.clone(),
                w.policy_version.to_string(),
                w.in_flight.to_string(),
                w.completed.to_string(),
                format!("{:.1}s ago", w.last_heartbeat_age_seconds),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut o = String::new();
    let line = |o: &mut String, cells: &[&str]| {
        let s: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(o, "{}", s.join("  ").trim_end());
    };
    line(&mut o, &headers);
    for r in &rows {
        line(&mut o, &r.iter().map(String::as_str).collect::<Vec<_>>());
    }
    o
}

/// One line per step, for `laserctl watch` and the coordinator's log.
pub fn metrics_line(m: &StepMetrics) -> String {
    format!(
        "step {} v{}  acc {:.3}  reward {:.3}  sv-f1 {:.3} (p {:.2} r {:.2})  mse {:.4}  clip {:.3}  len {:.1}  trunc {:.2}  {:.0} tok/s  gen {:.2}s ver {:.2}s train {:.2}s bcast {:.2}s  stale {:.2} dropped {} redisp {}",
        m.step,
        m.policy_version,
        m.accuracy,
        m.reward_mean,
        m.self_verify_f1,
        m.self_verify_precision,
        m.self_verify_recall,
        m.self_reward_mse,
        m.clip_fraction,
        m.mean_response_len,
        m.truncation_rate,
        m.gen_tokens_per_sec,
        m.generate_seconds,
        m.verify_seconds,
        m.train_seconds,
        m.broadcast_seconds,
        m.staleness_mean,
        m.dropped_stale,
        m.redispatched
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_table_aligns_columns_and_json_names_roles() {
        let ws = vec![
            WorkerInfo {
                name: "actor-0".into(),
                role: Role::Actor as i32,
                endpoint: "127.0.0.1:4000".into(),
                state: "alive".into(),
                policy_version: 3,
                ..Default::default()
            },
            WorkerInfo {
                name: "verifier-10".into(),
                role: Role::Verifier as i32,
                endpoint: "127.0.0.1:4001".into(),
                state: "lost".into(),
                ..Default::default()
            },
        ];
        let t = workers_table(&ws);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(col(lines[0], "STATE"), col(lines[1], "alive"));
        assert_eq!(col(lines[0], "STATE"), col(lines[2], "lost"));
        assert_eq!(col(lines[0], "ENDPOINT"), col(lines[2], "127.0.0.1:4001"));
        let j = workers_json(&ws);
        assert_eq!(j[1]["role"], "verifier");
        assert_eq!(j[0]["policy_version"], 3);
    }
}
