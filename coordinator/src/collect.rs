//! Gathering one step's batch: prompt groups go to actors by load (`Actor.Generate`, streamed
//! back group by group), each finished group goes to the least-loaded verifier (`Verifier.Grade`),
//! and the step is complete when every group is graded exactly once.
//!
//! Faults: a Generate or Grade call that fails at the transport level marks its worker lost, and
//! every group it held goes back to the queue (counted as re-dispatched); the heartbeat monitor
//! does the same for workers that fall silent. A group delivered twice (a slow worker declared
//! lost that still answered) is counted once. Actors whose weights are outside the allowed version
//! window get `UpdateWeights` before any work.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use laser_proto::rt::{ClientOptions, next_within, request, with_deadline};
use laser_proto::v1::{
    GenerateRequest, GenerateResponse, GradeItem, GradeRequest, GradeResponse, PromptGroup, Role,
    RolloutGroup, SamplingConfig, UpdateWeightsRequest, UpdateWeightsResponse,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tonic::{Code, Status};

use crate::fault::is_transport_failure;
use crate::ledger::GroupLife;
use crate::registry::Shared;

/// Settings of one collection, fixed for the step.
#[derive(Debug, Clone)]
pub struct CollectPlan {
    pub step: u64,
    pub groups: Vec<PromptGroup>,
    pub sampling: SamplingConfig,
    /// Actors must hold weights in [min_version, max_version]; outside it they are updated first,
    /// and rollouts older than min_version are dropped as stale.
    pub min_version: u64,
    pub max_version: u64,
    /// host:port of the learner serving StreamWeights (for updating actors).
    pub learner_endpoint: String,
    pub groups_per_request: usize,
    pub generate_timeout: Duration,
    pub grade_timeout: Duration,
    pub weights_timeout: Duration,
    /// Fail when no actor or verifier has been alive for this long.
    pub no_worker_timeout: Duration,
}

/// A step's verified groups in group-id order, with what it took.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub groups: Vec<RolloutGroup>,
    pub generate_seconds: f64,
    pub verify_seconds: f64,
    pub generated_tokens: u64,
    pub dropped_stale: u64,
    pub redispatched: u64,
    pub duplicates: u64,
    /// Samples whose reward function itself failed (`GRADE_STATUS_ERROR`): trained with reward
    /// 0, counted in the step's `reward_errors`, each logged with its error.
    pub reward_errors: u64,
    /// Each group's life (dispatches, generator, graders), in `groups`' order: the ledger's.
    pub lives: Vec<GroupLife>,
}

enum Event {
    Generated {
        actor: String,
        resp: GenerateResponse,
    },
    GenerateEnded {
        actor: String,
        requested: Vec<u64>,
        error: Option<Status>,
    },
    Updated {
        actor: String,
        result: Result<UpdateWeightsResponse, Status>,
    },
    Graded {
        verifier: String,
        group: RolloutGroup,
        result: Result<GradeResponse, Status>,
    },
}

pub async fn collect(
    shared: Arc<Shared>,
    client: ClientOptions,
    plan: CollectPlan,
) -> Result<Collected> {
    let (tx, mut rx) = mpsc::channel::<Event>(256);
    let total = plan.groups.len();
    let by_id: HashMap<u64, PromptGroup> = plan
        .groups
        .iter()
        .map(|g| (g.group_id, g.clone()))
        .collect();
    let mut pending: VecDeque<u64> = plan.groups.iter().map(|g| g.group_id).collect();
    let mut in_gen: HashMap<u64, String> = HashMap::new();
    let mut to_grade: VecDeque<RolloutGroup> = VecDeque::new();
    // Groups being graded, with a copy to re-queue if their verifier is lost.
    let mut in_grade: HashMap<u64, (String, RolloutGroup)> = HashMap::new();
    let mut received: HashSet<u64> = HashSet::new();
    let mut done: BTreeMap<u64, RolloutGroup> = BTreeMap::new();
    let mut tasks: HashMap<String, Vec<AbortHandle>> = HashMap::new();
    let mut out = Collected::default();
    let mut lives: HashMap<u64, GroupLife> = plan
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id,
                GroupLife {
                    group_id: g.group_id,
                    task_id: g.task_id.clone(),
                    ..GroupLife::default()
                },
            )
        })
        .collect();
    let start = Instant::now();
    let mut generated_at = start;
    let mut last_actor_seen = Instant::now();
    let mut last_verifier_seen = Instant::now();

    while done.len() < total {
        // Work held by workers that are now lost goes back to the queues.
        {
            let reg = shared.registry();
            let lost = |id: &String| {
                reg.get(id)
                    .is_none_or(|w| w.liveness != crate::registry::Liveness::Alive)
            };
            let gone: Vec<u64> = in_gen
                .iter()
                .filter(|(_, a)| lost(a))
                .map(|(g, _)| *g)
                .collect();
            for g in gone {
                if let Some(a) = in_gen.remove(&g) {
                    tracing::warn!(group = g, actor = a, "actor lost; re-dispatching its group");
                    abort_all(&mut tasks, &a);
                }
                pending.push_front(g);
                out.redispatched += 1;
            }
            let gone: Vec<u64> = in_grade
                .iter()
                .filter(|(_, (v, _))| lost(v))
                .map(|(g, _)| *g)
                .collect();
            for g in gone {
                if let Some((v, group)) = in_grade.remove(&g) {
                    tracing::warn!(
                        group = g,
                        verifier = v,
                        "verifier lost; re-grading its group"
                    );
                    abort_all(&mut tasks, &v);
                    to_grade.push_front(group);
                    out.redispatched += 1;
                }
            }
        }

        shared
            .telemetry
            .set_queue_depth(crate::telemetry::Queue::Generate, pending.len());
        shared
            .telemetry
            .set_queue_depth(crate::telemetry::Queue::Grade, to_grade.len());
        dispatch_generation(
            &shared,
            &client,
            &plan,
            &by_id,
            &mut pending,
            &mut in_gen,
            &mut tasks,
            &tx,
            &mut lives,
        );
        dispatch_grading(
            &shared,
            &client,
            &plan,
            &mut to_grade,
            &mut in_grade,
            &mut tasks,
            &tx,
            &mut lives,
        );

        {
            let reg = shared.registry();
            // Actors outside the version window fetch this step's weights from the learner; with
            // no learner alive that cannot finish (each failed fetch would mark a healthy actor
            // lost, it re-registers, and the loop goes round forever): hand the step back to the
            // runner, which restarts the learner and redoes the step from the last checkpoint.
            let needs_weights = reg.alive(Role::Actor).any(|w| {
                w.policy_version < plan.min_version || w.policy_version > plan.max_version
            });
            if needs_weights
                && reg.count_alive(Role::Learner) == 0
                && (!pending.is_empty() || !in_gen.is_empty())
            {
                return Err(crate::fault::LearnerLost(format!(
                    "step {}: no learner alive to serve policy version {} to the actors",
                    plan.step, plan.max_version
                ))
                .into());
            }
            if reg.count_alive(Role::Actor) > 0 {
                last_actor_seen = Instant::now();
            }
            if reg.count_alive(Role::Verifier) > 0 {
                last_verifier_seen = Instant::now();
            }
        }
        if last_actor_seen.elapsed() > plan.no_worker_timeout
            && (!pending.is_empty() || !in_gen.is_empty())
        {
            bail!(
                "step {}: no actor alive for {:?}",
                plan.step,
                plan.no_worker_timeout
            );
        }
        if last_verifier_seen.elapsed() > plan.no_worker_timeout && !to_grade.is_empty() {
            bail!(
                "step {}: no verifier alive for {:?}",
                plan.step,
                plan.no_worker_timeout
            );
        }

        let notified = shared.membership.notified();
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            _ = notified => None,
            _ = tokio::time::sleep(shared.heartbeat_interval) => None,
        };
        let Some(ev) = ev else { continue };
        match ev {
            Event::Generated { actor, resp } => {
                let Some(group) = resp.group else { continue };
                let gid = group.group_id;
                if !by_id.contains_key(&gid) || received.contains(&gid) {
                    out.duplicates += 1;
                    continue;
                }
                if in_gen.get(&gid) == Some(&actor) {
                    in_gen.remove(&gid);
                }
                if group.policy_version < plan.min_version {
                    tracing::info!(
                        group = gid,
                        version = group.policy_version,
                        "stale rollout dropped"
                    );
                    out.dropped_stale += 1;
                    if !in_gen.contains_key(&gid) && !pending.contains(&gid) {
                        pending.push_back(gid);
                    }
                    continue;
                }
                if let Some(expected) = by_id.get(&gid)
                    && group.samples.len() != plan.sampling.n as usize
                {
                    bail!(
                        "actor {actor} returned {} samples for group {gid} (task {}), expected {}",
                        group.samples.len(),
                        expected.task_id,
                        plan.sampling.n
                    );
                }
                // Another actor may still hold a re-dispatched copy; its answer becomes a duplicate.
                in_gen.remove(&gid);
                pending.retain(|g| *g != gid);
                received.insert(gid);
                if let Some(life) = lives.get_mut(&gid) {
                    life.generated_by = actor.clone();
                    life.policy_version = group.policy_version;
                }
                out.generated_tokens += resp.generated_tokens;
                generated_at = Instant::now();
                if let Some(w) = shared.registry().get_mut(&actor) {
                    w.completed += 1;
                }
                to_grade.push_back(group);
            }
            Event::GenerateEnded {
                actor,
                requested,
                error,
            } => {
                let unfinished: Vec<u64> = requested
                    .into_iter()
                    .filter(|g| in_gen.get(g) == Some(&actor))
                    .collect();
                if let Some(e) = &error {
                    if is_transport_failure(e) {
                        tracing::warn!(
                            actor,
                            "Generate failed ({}); marking the actor lost",
                            e.message()
                        );
                        shared.registry().mark_lost(&actor);
                    } else if e.code() == Code::FailedPrecondition {
                        // Its weights are not what we thought: refresh before the next dispatch.
                        if let Some(w) = shared.registry().get_mut(&actor) {
                            w.policy_version = crate::registry::UNKNOWN_VERSION;
                        }
                    } else {
                        bail!(
                            "actor {actor}: Generate refused: {} ({:?})",
                            e.message(),
                            e.code()
                        );
                    }
                }
                for g in unfinished {
                    in_gen.remove(&g);
                    pending.push_front(g);
                    out.redispatched += 1;
                }
            }
            Event::Updated { actor, result } => match result {
                Ok(r) => {
                    if let Some(w) = shared.registry().get_mut(&actor) {
                        w.policy_version = r.policy_version;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        actor,
                        "UpdateWeights failed ({}); marking the actor lost",
                        e.message()
                    );
                    shared.registry().mark_lost(&actor);
                }
            },
            Event::Graded {
                verifier,
                group,
                result,
            } => {
                let gid = group.group_id;
                if in_grade.get(&gid).is_some_and(|(v, _)| *v == verifier) {
                    in_grade.remove(&gid);
                }
                if done.contains_key(&gid) {
                    out.duplicates += 1;
                    continue;
                }
                match result {
                    Ok(resp) if resp.results.len() == group.samples.len() => {
                        let mut g = group;
                        for (s, r) in g.samples.iter_mut().zip(resp.results) {
                            if r.status == laser_proto::v1::GradeStatus::Error as i32 {
                                out.reward_errors += 1;
                                tracing::warn!(
                                    group = gid,
                                    sample = s.sample_index,
                                    error = r.error,
                                    "the reward function failed; the sample counts as reward 0"
                                );
                            }
                            s.verifier_reward = Some(r.reward);
                            s.extracted_answer = r.extracted;
                        }
                        if let Some(w) = shared.registry().get_mut(&verifier) {
                            w.completed += 1;
                        }
                        done.insert(gid, g);
                    }
                    Ok(resp) => bail!(
                        "verifier {verifier} returned {} grades for {} samples of group {gid}",
                        resp.results.len(),
                        group.samples.len()
                    ),
                    Err(e) => {
                        if is_transport_failure(&e) {
                            shared.registry().mark_lost(&verifier);
                        }
                        tracing::warn!(
                            verifier,
                            group = gid,
                            "Grade failed ({}); re-grading",
                            e.message()
                        );
                        out.redispatched += 1;
                        in_grade.remove(&gid);
                        to_grade.push_front(group);
                    }
                }
            }
        }
    }
    for (_, handles) in tasks.drain() {
        for h in handles {
            h.abort();
        }
    }
    out.generate_seconds = generated_at.duration_since(start).as_secs_f64();
    out.verify_seconds = generated_at.elapsed().as_secs_f64();
    out.lives = done.keys().filter_map(|g| lives.remove(g)).collect();
    out.groups = done.into_values().collect();
    Ok(out)
}

fn abort_all(tasks: &mut HashMap<String, Vec<AbortHandle>>, worker: &str) {
    if let Some(hs) = tasks.remove(worker) {
        for h in hs {
            h.abort();
        }
    }
}

fn release(shared: &Shared, worker: &str) {
    if let Some(w) = shared.registry().get_mut(worker) {
        w.assigned = w.assigned.saturating_sub(1);
    }
}

/// One unit of a worker's `assigned` load, held by the task doing that work and released when the
/// task lets go of it *or is aborted*. (Releasing on the task's end event instead leaked a unit
/// whenever a step completed and its leftover tasks were aborted before their end events were
/// read: an actor of capacity 1 then looked busy forever and the next step never started.)
struct Assignment {
    shared: Arc<Shared>,
    worker: String,
}

impl Assignment {
    fn new(shared: &Arc<Shared>, worker: &str) -> Self {
        Self {
            shared: Arc::clone(shared),
            worker: worker.to_string(),
        }
    }
}

impl Drop for Assignment {
    fn drop(&mut self) {
        release(&self.shared, &self.worker);
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_generation(
    shared: &Arc<Shared>,
    client: &ClientOptions,
    plan: &CollectPlan,
    by_id: &HashMap<u64, PromptGroup>,
    pending: &mut VecDeque<u64>,
    in_gen: &mut HashMap<u64, String>,
    tasks: &mut HashMap<String, Vec<AbortHandle>>,
    tx: &mpsc::Sender<Event>,
    lives: &mut HashMap<u64, GroupLife>,
) {
    while !pending.is_empty() {
        let (actor, endpoint, version, weights_epoch) = {
            let mut reg = shared.registry();
            let Some(w) = reg.least_loaded(Role::Actor) else {
                return;
            };
            let (id, ep, v) = (w.id.clone(), w.endpoint.clone(), w.policy_version);
            if let Some(w) = reg.get_mut(&id) {
                w.assigned += 1;
            }
            (id, ep, v, reg.weights_epoch())
        };
        let channel = match client.lazy(&endpoint) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(actor, "{e}");
                shared.registry().mark_lost(&actor);
                release(shared, &actor);
                continue;
            }
        };
        let mut c = client.actor(channel);
        let tx = tx.clone();
        let actor_id = actor.clone();
        let assignment = Assignment::new(shared, &actor);
        let handle = if version < plan.min_version || version > plan.max_version {
            let msg = UpdateWeightsRequest {
                policy_version: plan.max_version,
                source_endpoint: plan.learner_endpoint.clone(),
                weights_epoch,
            };
            let d = plan.weights_timeout;
            tokio::spawn(async move {
                let result =
                    with_deadline("Actor.UpdateWeights", d, c.update_weights(request(msg, d)))
                        .await
                        .map(|r| r.into_inner());
                // Free the actor before saying so, so the scheduler can hand it work at once.
                drop(assignment);
                let _ = tx
                    .send(Event::Updated {
                        actor: actor_id,
                        result,
                    })
                    .await;
            })
        } else {
            let n = plan.groups_per_request.max(1).min(pending.len());
            let ids: Vec<u64> = pending.drain(..n).collect();
            for g in &ids {
                in_gen.insert(*g, actor.clone());
                if let Some(life) = lives.get_mut(g) {
                    life.dispatched_to.push(actor.clone());
                }
            }
            let msg = GenerateRequest {
                groups: ids.iter().filter_map(|g| by_id.get(g).cloned()).collect(),
                sampling: Some(plan.sampling),
                min_policy_version: plan.min_version,
            };
            let d = plan.generate_timeout;
            let shared = shared.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let error = async {
                    let mut stream =
                        with_deadline("Actor.Generate", d, c.generate(request(msg, d)))
                            .await?
                            .into_inner();
                    while let Some(resp) = next_within("Actor.Generate", d, &mut stream).await? {
                        let _ = tx
                            .send(Event::Generated {
                                actor: actor_id.clone(),
                                resp,
                            })
                            .await;
                    }
                    Ok::<(), Status>(())
                }
                .await
                .err();
                shared.telemetry.observe_generate_call(t.elapsed());
                drop(assignment);
                let _ = tx
                    .send(Event::GenerateEnded {
                        actor: actor_id,
                        requested: ids,
                        error,
                    })
                    .await;
            })
        };
        tasks.entry(actor).or_default().push(handle.abort_handle());
    }
}

#[allow(clippy::too_many_arguments)]
fn dispatch_grading(
    shared: &Arc<Shared>,
    client: &ClientOptions,
    plan: &CollectPlan,
    to_grade: &mut VecDeque<RolloutGroup>,
    in_grade: &mut HashMap<u64, (String, RolloutGroup)>,
    tasks: &mut HashMap<String, Vec<AbortHandle>>,
    tx: &mpsc::Sender<Event>,
    lives: &mut HashMap<u64, GroupLife>,
) {
    while let Some(group) = to_grade.front() {
        let (verifier, endpoint) = {
            let mut reg = shared.registry();
            let Some(w) = reg.least_loaded(Role::Verifier) else {
                return;
            };
            let (id, ep) = (w.id.clone(), w.endpoint.clone());
            if let Some(w) = reg.get_mut(&id) {
                w.assigned += 1;
            }
            (id, ep)
        };
        let channel = match client.lazy(&endpoint) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(verifier, "{e}");
                shared.registry().mark_lost(&verifier);
                release(shared, &verifier);
                continue;
            }
        };
        let group = group.clone();
        to_grade.pop_front();
        in_grade.insert(group.group_id, (verifier.clone(), group.clone()));
        if let Some(life) = lives.get_mut(&group.group_id) {
            life.graded_by.push(verifier.clone());
        }
        let (gold, data_source) = plan
            .groups
            .iter()
            .find(|g| g.group_id == group.group_id)
            .map(|g| (g.gold.clone(), g.data_source.clone()))
            .unwrap_or_default();
        let msg = GradeRequest {
            items: group
                .samples
                .iter()
                .map(|s| GradeItem {
                    id: u64::from(s.sample_index),
                    gold: gold.clone(),
                    response: s.text.clone(),
                    data_source: data_source.clone(),
                })
                .collect(),
        };
        let mut c = client.verifier(channel);
        let tx = tx.clone();
        let d = plan.grade_timeout;
        let vid = verifier.clone();
        let assignment = Assignment::new(shared, &verifier);
        let shared = shared.clone();
        let handle = tokio::spawn(async move {
            let t = Instant::now();
            let result = with_deadline("Verifier.Grade", d, c.grade(request(msg, d)))
                .await
                .map(|r| r.into_inner());
            shared.telemetry.observe_grade_call(t.elapsed());
            if let Ok(r) = &result {
                for g in &r.results {
                    let status = laser_proto::v1::GradeStatus::try_from(g.status)
                        .unwrap_or(laser_proto::v1::GradeStatus::Unspecified);
                    shared.telemetry.count_grade_result(
                        &status
                            .as_str_name()
                            .trim_start_matches("GRADE_STATUS_")
                            .to_lowercase(),
                    );
                }
            }
            drop(assignment);
            let _ = tx
                .send(Event::Graded {
                    verifier: vid,
                    group,
                    result,
                })
                .await;
        });
        tasks
            .entry(verifier)
            .or_default()
            .push(handle.abort_handle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RunInfo;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            RunInfo {
                run_dir: String::new(),
                state: "running".into(),
                step: 0,
                max_steps: 1,
                policy_version: 0,
                mode: "local".into(),
                async_mode: false,
            },
            Duration::from_millis(100),
        ))
    }

    #[tokio::test]
    async fn an_aborted_task_gives_its_worker_back() {
        let shared = shared();
        let (id, _) = shared
            .registry()
            .register(Role::Actor, "actor-0", "127.0.0.1:1", 1, 0);
        shared.registry().get_mut(&id).unwrap().assigned += 1;
        let held = Assignment::new(&shared, &id);
        let task = tokio::spawn(async move {
            let _held = held;
            std::future::pending::<()>().await;
        });
        assert!(shared.registry().least_loaded(Role::Actor).is_none());
        task.abort();
        let _ = task.await;
        assert_eq!(shared.registry().get(&id).unwrap().assigned, 0);
        assert_eq!(
            shared
                .registry()
                .least_loaded(Role::Actor)
                .map(|w| w.id.clone()),
            Some(id),
            "the actor takes work again after its task was aborted"
        );
    }

    #[tokio::test]
    async fn a_lost_learner_hands_the_step_back_instead_of_churning_the_actors() {
        // An actor behind on its weights and no learner to fetch them from (it died after its
        // last step): collect must return LearnerLost, not mark the actor lost forever.
        let shared = shared();
        shared
            .registry()
            .register(Role::Actor, "actor-0", "127.0.0.1:1", 1, 2);
        let plan = CollectPlan {
            step: 3,
            groups: vec![PromptGroup {
                group_id: 7,
                ..PromptGroup::default()
            }],
            sampling: SamplingConfig::default(),
            min_version: 3,
            max_version: 3,
            learner_endpoint: "127.0.0.1:1".into(),
            groups_per_request: 1,
            generate_timeout: Duration::from_secs(5),
            grade_timeout: Duration::from_secs(5),
            weights_timeout: Duration::from_secs(5),
            no_worker_timeout: Duration::from_secs(30),
        };
        let client = ClientOptions::new(laser_proto::rt::ClusterToken::generate());
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            collect(shared.clone(), client, plan),
        )
        .await
        .expect("collect returns instead of looping");
        let err = result.expect_err("no learner: the step cannot be collected");
        assert!(
            err.downcast_ref::<crate::fault::LearnerLost>().is_some(),
            "{err:#}"
        );
    }
}
