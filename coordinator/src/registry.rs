//! Who is in the cluster: workers by id, their role, endpoint, liveness and load, plus the run's
//! status and metrics history that the Monitor service reads, and the NCCL weight group the weight
//! plane keeps. One `Shared` value is owned by the scheduler and the gRPC services together.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use laser_proto::plane::Transport;
use laser_proto::v1::{ClusterStatus, Role, StepMetrics, WeightPlaneCaps, WorkerInfo};
use tokio::sync::{Notify, broadcast};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Lost,
    /// Deregistered on purpose (SIGTERM); treated like lost for its in-flight work.
    Left,
}

#[derive(Debug, Clone)]
pub struct Worker {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub endpoint: String,
    pub capacity: u32,
    pub liveness: Liveness,
    /// Weights the worker holds, from its registration, heartbeats and UpdateWeights answers.
    pub policy_version: u64,
    /// Work the worker reports in progress.
    pub reported_in_flight: u32,
    /// Work the coordinator has handed it and not yet seen finish.
    pub assigned: u32,
    pub completed: u64,
    pub last_heartbeat: Instant,
    /// What the worker can do on the weight data plane (NCCL or the gRPC stream only).
    pub weight_plane: WeightPlaneCaps,
    /// Learners: the data-parallel rank they registered with.
    pub learner_rank: u32,
}

/// An actor's `policy_version` when its weights are not known to be this epoch's: outside every
/// version window, so the actor is updated before its next work.
pub const UNKNOWN_VERSION: u64 = u64::MAX;

#[derive(Debug, Default)]
pub struct Registry {
    workers: BTreeMap<String, Worker>,
    next_id: u64,
    /// The run's weights epoch (see `UpdateWeightsRequest.weights_epoch`).
    weights_epoch: u64,
}

impl Registry {
    /// The version to record for weights an actor reports as (`version`, `epoch`): the version
    /// when it is this epoch's, else [`UNKNOWN_VERSION`] (the same version number of an earlier
    /// epoch names other weights). Learners' versions are the run's own and pass through.
    pub fn held_version(&self, role: Role, version: u64, epoch: u64) -> u64 {
        if role == Role::Actor && epoch != self.weights_epoch {
            UNKNOWN_VERSION
        } else {
            version
        }
    }

    pub fn weights_epoch(&self) -> u64 {
        self.weights_epoch
    }

    /// Starts a new weights epoch (the learner was restored, so versions repeat): every actor's
    /// weights become unknown until it is updated in this epoch.
    pub fn set_weights_epoch(&mut self, epoch: u64) {
        if epoch == self.weights_epoch {
            return;
        }
        self.weights_epoch = epoch;
        for w in self.workers.values_mut().filter(|w| w.role == Role::Actor) {
            w.policy_version = UNKNOWN_VERSION;
        }
    }

    /// Adds a worker; an alive worker of the same name is replaced (marked lost), since a
    /// restarted process keeps its name. Returns the new id and the id it replaced.
    pub fn register(
        &mut self,
        role: Role,
        name: &str,
        endpoint: &str,
        capacity: u32,
        version: u64,
    ) -> (String, Option<String>) {
        let replaced = self
            .workers
            .values_mut()
            .find(|w| w.name == name && w.liveness == Liveness::Alive)
            .map(|w| {
                w.liveness = Liveness::Lost;
                w.id.clone()
            });
        self.next_id += 1;
        let id = format!("{}-{}", name, self.next_id);
        self.workers.insert(
            id.clone(),
            Worker {
                id: id.clone(),
                name: name.to_string(),
                role,
                endpoint: endpoint.to_string(),
                capacity: capacity.max(1),
                liveness: Liveness::Alive,
                policy_version: version,
                reported_in_flight: 0,
                assigned: 0,
                completed: 0,
                last_heartbeat: Instant::now(),
                weight_plane: WeightPlaneCaps::default(),
                learner_rank: 0,
            },
        );
        (id, replaced)
    }

    /// Records a heartbeat; false when the id is unknown or was declared lost (it must re-register).
    pub fn heartbeat(&mut self, id: &str, version: u64, in_flight: u32) -> bool {
        match self.workers.get_mut(id) {
            Some(w) if w.liveness == Liveness::Alive => {
                w.last_heartbeat = Instant::now();
                w.policy_version = version;
                w.reported_in_flight = in_flight;
                true
            }
            _ => false,
        }
    }

    pub fn get(&self, id: &str) -> Option<&Worker> {
        self.workers.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Worker> {
        self.workers.get_mut(id)
    }

    /// Marks a worker lost; true when it was alive.
    pub fn mark_lost(&mut self, id: &str) -> bool {
        match self.workers.get_mut(id) {
            Some(w) if w.liveness == Liveness::Alive => {
                w.liveness = Liveness::Lost;
                true
            }
            _ => false,
        }
    }

    /// A worker leaving on purpose (Deregister): out of the pool at once, its in-flight work goes
    /// back to the queues like a lost worker's (a worker already declared lost, e.g. because its
    /// stream ended first, is recorded as left too). False when the id is unknown or already left.
    pub fn deregister(&mut self, id: &str) -> bool {
        match self.workers.get_mut(id) {
            Some(w) if w.liveness != Liveness::Left => {
                w.liveness = Liveness::Left;
                true
            }
            _ => false,
        }
    }

    /// Declares lost every alive worker silent for longer than `timeout`; returns their ids.
    pub fn expire(&mut self, timeout: Duration) -> Vec<String> {
        let now = Instant::now();
        let mut lost = Vec::new();
        for w in self.workers.values_mut() {
            if w.liveness == Liveness::Alive && now.duration_since(w.last_heartbeat) > timeout {
                w.liveness = Liveness::Lost;
                lost.push(w.id.clone());
            }
        }
        lost
    }

    pub fn alive(&self, role: Role) -> impl Iterator<Item = &Worker> {
        self.workers
            .values()
            .filter(move |w| w.role == role && w.liveness == Liveness::Alive)
    }

    pub fn count_alive(&self, role: Role) -> usize {
        self.alive(role).count()
    }

    pub fn all(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    /// The alive worker of `role` with spare capacity and the least load (ties: fewest completed).
    pub fn least_loaded(&self, role: Role) -> Option<&Worker> {
        self.alive(role)
            .filter(|w| w.assigned < w.capacity)
            .min_by_key(|w| (w.assigned, w.completed, w.id.clone()))
    }
}

/// Run-level state shown by `GetStatus`.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub run_dir: String,
    pub state: String,
    pub step: u64,
    pub max_steps: u64,
    pub policy_version: u64,
    pub mode: String,
    pub async_mode: bool,
}

/// The NCCL group the coordinator last set up ([`crate::weight_plane`] forms it).
#[derive(Debug, Default)]
pub struct WeightGroup {
    pub generation: u64,
    /// Learner id, then actor ids in rank order.
    pub members: Vec<String>,
    /// The unique id for the next generation (from the learner's Register, then from each
    /// BroadcastWeights answer: an NCCL unique id serves one communicator only).
    pub next_unique_id: Vec<u8>,
    /// The last decision logged (transport, reason), to log changes only.
    pub last: Option<(Transport, String)>,
    /// Why an NCCL broadcast of this run failed: the rest of the run uses the gRPC stream.
    pub nccl_failure: Option<String>,
}

pub struct Shared {
    pub registry: Mutex<Registry>,
    pub run: Mutex<RunInfo>,
    pub history: Mutex<Vec<StepMetrics>>,
    pub metrics_tx: broadcast::Sender<StepMetrics>,
    /// Wakes the scheduler when membership changes.
    pub membership: Notify,
    /// Signals the end of the run to WatchMetrics streams.
    pub finished: tokio::sync::watch::Sender<bool>,
    pub started: Instant,
    pub heartbeat_interval: Duration,
    /// The NCCL weight group ([`crate::weight_plane`] forms and updates it).
    pub weight_group: Mutex<WeightGroup>,
    /// What `/metrics` serves ([`crate::telemetry`]).
    pub telemetry: crate::telemetry::Telemetry,
}

impl Shared {
    pub fn new(run: RunInfo, heartbeat_interval: Duration) -> Self {
        let (metrics_tx, _) = broadcast::channel(1024);
        let (finished, _) = tokio::sync::watch::channel(false);
        Self {
            registry: Mutex::new(Registry::default()),
            run: Mutex::new(run),
            history: Mutex::new(Vec::new()),
            metrics_tx,
            membership: Notify::new(),
            finished,
            started: Instant::now(),
            heartbeat_interval,
            weight_group: Mutex::new(Default::default()),
            telemetry: crate::telemetry::Telemetry::new(),
        }
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn weight_group(&self) -> std::sync::MutexGuard<'_, WeightGroup> {
        self.weight_group.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn run_info(&self) -> std::sync::MutexGuard<'_, RunInfo> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn history(&self) -> std::sync::MutexGuard<'_, Vec<StepMetrics>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a finished step's row and streams it to watchers.
    pub fn publish(&self, row: StepMetrics) {
        self.telemetry.observe_step(&row);
        self.history().push(row);
        let _ = self.metrics_tx.send(row);
    }

    pub fn set_state(&self, state: &str) {
        self.run_info().state = state.to_string();
        if state == "finished" || state == "failed" {
            let _ = self.finished.send(true);
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let run = self.run_info().clone();
        let reg = self.registry();
        ClusterStatus {
            run_dir: run.run_dir,
            state: run.state,
            step: run.step,
            max_steps: run.max_steps,
            policy_version: run.policy_version,
            mode: run.mode,
            r#async: run.async_mode,
            actors: reg.count_alive(Role::Actor) as u32,
            verifiers: reg.count_alive(Role::Verifier) as u32,
            learners: reg.count_alive(Role::Learner) as u32,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            last: self.history().last().cloned(),
        }
    }

    pub fn workers(&self) -> Vec<WorkerInfo> {
        let reg = self.registry();
        reg.all()
            .map(|w| WorkerInfo {
                worker_id: w.id.clone(),
                name: w.name.clone(),
                role: w.role as i32,
                endpoint: w.endpoint.clone(),
                state: match w.liveness {
                    Liveness::Alive => "alive".into(),
                    Liveness::Lost => "lost".into(),
                    Liveness::Left => "left".into(),
                },
                policy_version: w.policy_version,
                in_flight: w.assigned.max(w.reported_in_flight),
                last_heartbeat_age_seconds: w.last_heartbeat.elapsed().as_secs_f64(),
                completed: w.completed,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_weights_epoch_makes_every_actors_weights_unknown() {
        let mut r = Registry::default();
        let (a, _) = r.register(Role::Actor, "actor-0", "h:1", 1, 5);
        let (l, _) = r.register(Role::Learner, "learner-0", "h:2", 1, 5);
        r.set_weights_epoch(1);
        assert_eq!(r.get(&a).unwrap().policy_version, UNKNOWN_VERSION);
        assert_eq!(
            r.get(&l).unwrap().policy_version,
            5,
            "the learner's version is the run's"
        );
        // Version 5 of epoch 0 is not version 5 of epoch 1; a learner has no epoch of its own.
        assert_eq!(r.held_version(Role::Actor, 5, 0), UNKNOWN_VERSION);
        assert_eq!(r.held_version(Role::Actor, 5, 1), 5);
        assert_eq!(r.held_version(Role::Learner, 5, 0), 5);
    }

    #[test]
    fn reregistering_a_name_replaces_the_old_entry() {
        let mut r = Registry::default();
        let (a, none) = r.register(Role::Actor, "actor-0", "127.0.0.1:1", 1, 0);
        assert!(none.is_none());
        let (b, replaced) = r.register(Role::Actor, "actor-0", "127.0.0.1:2", 1, 0);
        assert_eq!(replaced.as_deref(), Some(a.as_str()));
        assert_ne!(a, b);
        assert!(!r.heartbeat(&a, 0, 0), "the replaced id must re-register");
        assert!(r.heartbeat(&b, 3, 1));
        assert_eq!(r.count_alive(Role::Actor), 1);
        assert_eq!(r.get(&b).unwrap().policy_version, 3);
    }

    #[test]
    fn deregistered_workers_leave_the_pool_once() {
        let mut r = Registry::default();
        let (a, _) = r.register(Role::Actor, "a", "x:1", 1, 0);
        assert!(r.deregister(&a));
        assert_eq!(r.get(&a).unwrap().liveness, Liveness::Left);
        assert_eq!(r.count_alive(Role::Actor), 0);
        assert!(!r.deregister(&a), "a second Deregister is a no-op");
        assert!(!r.heartbeat(&a, 0, 0), "a left worker must register again");
        let (b, _) = r.register(Role::Actor, "b", "x:2", 1, 0);
        r.mark_lost(&b);
        assert!(
            r.deregister(&b),
            "lost first (its stream failed), then deregistered"
        );
        assert!(!r.deregister("nobody"));
    }

    #[test]
    fn least_loaded_respects_capacity_and_expiry_marks_lost() {
        let mut r = Registry::default();
        let (a, _) = r.register(Role::Actor, "a", "x:1", 1, 0);
        let (b, _) = r.register(Role::Actor, "b", "x:2", 2, 0);
        r.get_mut(&a).unwrap().assigned = 1;
        assert_eq!(r.least_loaded(Role::Actor).unwrap().id, b);
        r.get_mut(&b).unwrap().assigned = 2;
        assert!(r.least_loaded(Role::Actor).is_none());
        std::thread::sleep(Duration::from_millis(5));
        r.heartbeat(&b, 0, 0);
        let lost = r.expire(Duration::from_millis(3));
        assert_eq!(lost, vec![a.clone()]);
        assert_eq!(r.count_alive(Role::Actor), 1);
    }
}
