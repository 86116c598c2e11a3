//! The coordinator's side of the weight data plane ([`laser_proto::plane`]). Per broadcast it
//! chooses NCCL or the gRPC stream from `cluster.weight_transport` and what the workers reported at
//! registration, logs the choice when it changes, and:
//! - NCCL: forms the group (learner rank 0, the alive actors ranks 1..n; a new generation, with a
//!   fresh unique id from the learner, whenever the members change), then calls
//!   `Learner.BroadcastWeights` and every actor's `UpdateWeightsByNccl` at once;
//! - gRPC, and for every actor the NCCL broadcast did not reach: `Actor.UpdateWeights`, which makes
//!   the actor pull `Learner.StreamWeights`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use laser_config::TransportPref;
use laser_proto::plane::{self, Transport};
use laser_proto::rt::{ClientOptions, request, with_deadline};
use laser_proto::v1::{
    BroadcastWeightsRequest, Role, UpdateWeightsByNcclRequest, UpdateWeightsRequest,
    WeightPlaneCaps,
};

use crate::registry::Shared;

/// What one broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Broadcast {
    pub bytes: u64,
    pub updated: usize,
    pub nccl: bool,
}

/// Tells every alive actor to take `version` from the learner (`learner_id` at `learner_ep`).
pub async fn broadcast(
    shared: &Arc<Shared>,
    client: &ClientOptions,
    pref: TransportPref,
    timeout: Duration,
    version: u64,
    learner_id: &str,
    learner_ep: &str,
) -> Broadcast {
    let (learner_caps, actors, weights_epoch) = {
        let reg = shared.registry();
        let caps = reg
            .get(learner_id)
            .map(|w| w.weight_plane.clone())
            .unwrap_or_default();
        let actors: Vec<(String, String, WeightPlaneCaps)> = reg
            .alive(Role::Actor)
            .map(|w| (w.id.clone(), w.endpoint.clone(), w.weight_plane.clone()))
            .collect();
        (caps, actors, reg.weights_epoch())
    };
    let decision = {
        let mut g = shared.weight_group();
        // The id the learner registered with seeds the first generation.
        if g.generation == 0 && g.next_unique_id.is_empty() {
            g.next_unique_id = learner_caps.nccl_unique_id.clone();
        }
        let mut caps = learner_caps.clone();
        caps.nccl_unique_id = g.next_unique_id.clone();
        let refs: Vec<(&str, &WeightPlaneCaps)> =
            actors.iter().map(|(id, _, c)| (id.as_str(), c)).collect();
        let d = plane::choose(pref, g.nccl_failure.as_deref(), &caps, &refs);
        let key = (d.transport, d.reason.clone());
        if g.last.as_ref() != Some(&key) {
            d.log("weight broadcast");
            g.last = Some(key);
        }
        d
    };

    let mut out = Broadcast::default();
    let mut reached: HashSet<String> = HashSet::new();
    if decision.transport == Transport::Nccl {
        match nccl_broadcast(
            shared,
            client,
            timeout,
            (version, weights_epoch),
            learner_id,
            learner_ep,
            &actors,
        )
        .await
        {
            Ok((bytes, ids)) => {
                out.bytes += bytes;
                out.nccl = true;
                reached = ids;
            }
            Err(e) => {
                tracing::warn!(
                    "NCCL weight broadcast failed ({e}); this and every later broadcast of the \
                     run use the gRPC stream"
                );
                let mut g = shared.weight_group();
                g.members.clear();
                // An NCCL unique id serves one communicator: never reuse this one.
                g.next_unique_id.clear();
                g.nccl_failure = Some(e);
            }
        }
    }
    out.updated = reached.len();
    let mut calls = Vec::new();
    for (id, ep, _) in actors
        .into_iter()
        .filter(|(id, _, _)| !reached.contains(id))
    {
        let client = client.clone();
        let learner_ep = learner_ep.to_string();
        let shared = shared.clone();
        calls.push(tokio::spawn(async move {
            let call = async {
                let mut c = client.actor(
                    client
                        .lazy(&ep)
                        .map_err(|e| tonic::Status::unavailable(e.to_string()))?,
                );
                let msg = UpdateWeightsRequest {
                    policy_version: version,
                    source_endpoint: learner_ep,
                    weights_epoch,
                };
                with_deadline(
                    "Actor.UpdateWeights",
                    timeout,
                    c.update_weights(request(msg, timeout)),
                )
                .await
                .map(|r| (id.clone(), r.into_inner()))
                .map_err(|s| tonic::Status::new(s.code(), format!("{ep}: {}", s.message())))
            };
            // A partitioned actor answers nothing and closes nothing: without this the step
            // waited for the call's deadline or the HTTP/2 keep-alive (30 s, measured) although
            // the heartbeats had declared the actor lost after `worker_timeout_ms`.
            tokio::select! {
                r = call => r,
                () = declared_lost(&shared, &id) => Err(tonic::Status::unavailable(format!(
                    "{ep}: declared lost during the broadcast"
                ))),
            }
        }));
    }
    for c in calls {
        match c.await {
            Ok(Ok((id, r))) => {
                out.bytes += r.bytes;
                out.updated += 1;
                if let Some(w) = shared.registry().get_mut(&id) {
                    w.policy_version = r.policy_version;
                }
            }
            // The actor is updated before its next work instead (collect checks versions).
            Ok(Err(s)) => tracing::warn!("broadcast: {}", s.message()),
            Err(e) => tracing::warn!("broadcast task: {e}"),
        }
    }
    out
}

/// Resolves once the registry no longer holds worker `id` as alive (missed heartbeats or a failed
/// call), checked every heartbeat interval.
async fn declared_lost(shared: &Shared, id: &str) {
    loop {
        let alive = shared
            .registry()
            .get(id)
            .is_some_and(|w| w.liveness == crate::registry::Liveness::Alive);
        if !alive {
            return;
        }
        tokio::time::sleep(shared.heartbeat_interval).await;
    }
}

/// The NCCL path. Returns the payload bytes and the actors that swapped in `version`.
async fn nccl_broadcast(
    shared: &Arc<Shared>,
    client: &ClientOptions,
    timeout: Duration,
    (version, weights_epoch): (u64, u64),
    learner_id: &str,
    learner_ep: &str,
    actors: &[(String, String, WeightPlaneCaps)],
) -> Result<(u64, HashSet<String>), String> {
    let (learner_group, actor_groups) = {
        let mut g = shared.weight_group();
        let members: Vec<String> = std::iter::once(learner_id.to_string())
            .chain(actors.iter().map(|(id, _, _)| id.clone()))
            .collect();
        if g.members != members {
            g.generation += 1;
            g.members = members;
            tracing::info!(
                generation = g.generation,
                world_size = g.members.len(),
                "new NCCL weight group"
            );
        }
        plane::nccl_groups(&g.next_unique_id, g.generation, actors.len())
    };
    let mut learner = client.learner(client.lazy(learner_ep).map_err(|e| e.to_string())?);
    let send = BroadcastWeightsRequest {
        policy_version: version,
        group: Some(learner_group),
    };
    let root = tokio::spawn(async move {
        with_deadline(
            "Learner.BroadcastWeights",
            timeout,
            learner.broadcast_weights(request(send, timeout)),
        )
        .await
        .map(|r| r.into_inner())
    });
    let mut calls = Vec::new();
    for ((id, ep, _), group) in actors.iter().zip(actor_groups) {
        let (client, id, ep, source) = (
            client.clone(),
            id.clone(),
            ep.clone(),
            learner_ep.to_string(),
        );
        calls.push(tokio::spawn(async move {
            let mut c = client.actor(
                client
                    .lazy(&ep)
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?,
            );
            let msg = UpdateWeightsByNcclRequest {
                policy_version: version,
                source_endpoint: source,
                group: Some(group),
                weights_epoch,
            };
            with_deadline(
                "Actor.UpdateWeightsByNccl",
                timeout,
                c.update_weights_by_nccl(request(msg, timeout)),
            )
            .await
            .map(|r| (id, r.into_inner()))
        }));
    }
    let sent = root
        .await
        .map_err(|e| e.to_string())?
        .map_err(|s| format!("Learner.BroadcastWeights: {}", s.message()))?;
    if !sent.next_unique_id.is_empty() {
        shared.weight_group().next_unique_id = sent.next_unique_id.clone();
    }
    let mut reached = HashSet::new();
    for c in calls {
        match c.await {
            Ok(Ok((id, r))) if r.policy_version == version => {
                if let Some(w) = shared.registry().get_mut(&id) {
                    w.policy_version = r.policy_version;
                }
                reached.insert(id);
            }
            Ok(Ok((id, r))) => tracing::warn!(
                actor = id,
                got = r.policy_version,
                "NCCL update answered another version"
            ),
            Ok(Err(s)) => tracing::warn!("Actor.UpdateWeightsByNccl: {}", s.message()),
            Err(e) => tracing::warn!("NCCL update task: {e}"),
        }
    }
    Ok((sent.bytes, reached))
}
