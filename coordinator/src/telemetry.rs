//! Prometheus metrics of a run, served as `/metrics` on `cluster.metrics_listen` (text
//! exposition format, `prometheus-client`). The runner publishes every step's metrics row
//! ([`Telemetry::observe_step`]); the scheduler times each Generate and Grade call and reports
//! its queue depths; worker health and the run's position are read from the registry at scrape
//! time, so a scrape always shows the cluster as it is.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use laser_proto::v1::{Role, StepMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::registry::{Liveness, Shared};

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    role: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

/// Queues of the step under way.
#[derive(Debug, Clone, Copy)]
pub enum Queue {
    /// Groups waiting for an actor.
    Generate,
    /// Generated groups waiting for a verifier.
    Grade,
}

pub struct Telemetry {
    registry: Registry,
    /// One gauge per numeric field of the last step's metrics row (`laser_step_<field>`).
    step_fields: Vec<(String, FloatGauge)>,
    steps: Counter,
    step_seconds: Histogram,
    broadcast_seconds: Histogram,
    generate_call_seconds: Histogram,
    grade_call_seconds: Histogram,
    grade_results: Family<StatusLabels, Counter>,
    queue_depth: Family<QueueLabels, Gauge>,
    workers: Family<WorkerLabels, Gauge>,
    run_step: Gauge,
    run_policy_version: Gauge,
    run_max_steps: Gauge,
    /// Serialises scrapes (each rewrites the scrape-time gauges, then encodes).
    scrape: Mutex<()>,
}

/// The numeric fields of a metrics row, by name (what metrics.jsonl holds).
pub fn numeric_fields(row: &StepMetrics) -> Vec<(String, f64)> {
    match serde_json::to_value(row) {
        Ok(serde_json::Value::Object(m)) => m
            .into_iter()
            .filter_map(|(k, v)| v.as_f64().map(|x| (k, x)))
            .collect(),
        _ => Vec::new(),
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("laser");
        let mut step_fields = Vec::new();
        for (name, _) in numeric_fields(&StepMetrics::default()) {
            let g = FloatGauge::default();
            registry.register(
                format!("step_{name}"),
                format!("`{name}` of the last completed step (metrics.jsonl)"),
                g.clone(),
            );
            step_fields.push((name, g));
        }
        let seconds = || Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let t = Self {
            step_fields,
            steps: Counter::default(),
            step_seconds: seconds(),
            broadcast_seconds: seconds(),
            generate_call_seconds: seconds(),
            grade_call_seconds: seconds(),
            grade_results: Family::default(),
            queue_depth: Family::default(),
            workers: Family::default(),
            run_step: Gauge::default(),
            run_policy_version: Gauge::default(),
            run_max_steps: Gauge::default(),
            scrape: Mutex::new(()),
            registry: Registry::default(),
        };
        registry.register(
            "steps",
            "RL steps completed by this coordinator",
            t.steps.clone(),
        );
        registry.register(
            "step_duration_seconds",
            "Wall time of each RL step",
            t.step_seconds.clone(),
        );
        registry.register(
            "weight_broadcast_seconds",
            "Time to bring the actors to each new policy version",
            t.broadcast_seconds.clone(),
        );
        registry.register(
            "actor_generate_call_seconds",
            "Latency of each Actor.Generate call, to its last group or its failure",
            t.generate_call_seconds.clone(),
        );
        registry.register(
            "verifier_grade_call_seconds",
            "Latency of each Verifier.Grade call (one group's samples)",
            t.grade_call_seconds.clone(),
        );
        registry.register(
            "verifier_results",
            "Graded samples by verdict (error: the reward function itself failed)",
            t.grade_results.clone(),
        );
        registry.register(
            "queue_depth",
            "Groups of the step under way waiting for an actor (generate) or a verifier (grade)",
            t.queue_depth.clone(),
        );
        registry.register(
            "workers",
            "Registered workers by role and state",
            t.workers.clone(),
        );
        registry.register(
            "run_step",
            "Steps the run has completed",
            t.run_step.clone(),
        );
        registry.register(
            "run_policy_version",
            "The learner's policy version",
            t.run_policy_version.clone(),
        );
        registry.register("run_max_steps", "run.max_steps", t.run_max_steps.clone());
        Self { registry, ..t }
    }

    /// A completed step's metrics row.
    pub fn observe_step(&self, row: &StepMetrics) {
        // By name: a NaN field serialises as null and drops out of `numeric_fields`.
        let values = numeric_fields(row);
        for (name, g) in &self.step_fields {
            if let Some((_, v)) = values.iter().find(|(k, _)| k == name) {
                g.set(*v);
            }
        }
        self.steps.inc();
        self.step_seconds.observe(row.step_seconds);
        self.broadcast_seconds.observe(row.broadcast_seconds);
    }

    pub fn observe_generate_call(&self, d: Duration) {
        self.generate_call_seconds.observe(d.as_secs_f64());
    }

    pub fn observe_grade_call(&self, d: Duration) {
        self.grade_call_seconds.observe(d.as_secs_f64());
    }

    /// Graded samples by their wire status name (`correct`, `error`, ...).
    pub fn count_grade_result(&self, status: &str) {
        self.grade_results
            .get_or_create(&StatusLabels {
                status: status.to_string(),
            })
            .inc();
    }

    pub fn set_queue_depth(&self, queue: Queue, depth: usize) {
        let name = match queue {
            Queue::Generate => "generate",
            Queue::Grade => "grade",
        };
        self.queue_depth
            .get_or_create(&QueueLabels { queue: name.into() })
            .set(depth as i64);
    }

    /// The text exposition of every metric, with worker health and the run's position read from
    /// `shared` now.
    pub fn render(&self, shared: &Shared) -> String {
        let _one = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        let run = shared.run_info().clone();
        self.run_step.set(run.step as i64);
        self.run_policy_version.set(run.policy_version as i64);
        self.run_max_steps.set(run.max_steps as i64);
        self.workers.clear();
        {
            let reg = shared.registry();
            for role in [Role::Learner, Role::Actor, Role::Verifier] {
                for state in [Liveness::Alive, Liveness::Lost, Liveness::Left] {
                    let n = reg
                        .all()
                        .filter(|w| w.role == role && w.liveness == state)
                        .count();
                    self.workers
                        .get_or_create(&WorkerLabels {
                            role: role
                                .as_str_name()
                                .trim_start_matches("ROLE_")
                                .to_lowercase(),
                            state: format!("{state:?}").to_lowercase(),
                        })
                        .set(n as i64);
                }
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `GET /metrics` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shared: std::sync::Arc<Shared>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let shared = shared.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    shared.telemetry.render(&shared),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_row_shows_up_as_gauges_and_histograms() {
        let t = Telemetry::new();
        let row = StepMetrics {
            step: 3,
            accuracy: 0.25,
            step_seconds: 0.5,
            broadcast_seconds: 0.01,
            ..Default::default()
        };
        t.observe_step(&row);
        t.observe_grade_call(Duration::from_millis(20));
        t.count_grade_result("error");
        t.set_queue_depth(Queue::Grade, 3);
        let shared = Shared::new(Default::default(), Duration::from_millis(100));
        shared
            .registry()
            .register(Role::Actor, "actor-0", "h:1", 1, 0);
        let text = t.render(&shared);
        for needle in [
            "laser_step_accuracy 0.25",
            "laser_step_step 3.0",
            "laser_steps_total 1",
            "laser_step_duration_seconds_count 1",
            "laser_step_duration_seconds_sum 0.5",
            "laser_verifier_grade_call_seconds_count 1",
            "laser_verifier_results_total{status=\"error\"} 1",
            "laser_queue_depth{queue=\"grade\"} 3",
            "laser_workers{role=\"actor\",state=\"alive\"} 1",
            "laser_workers{role=\"verifier\",state=\"alive\"} 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}
