//! The weight data plane: how a new policy version travels from the learner to the actors.
//!
//! - **gRPC stream** (`Learner.StreamWeights`): always available; chunked, CRC-checked.
//! - **NCCL broadcast**: when the binaries are built with the `nccl` feature, the NCCL and CUDA
//!   driver libraries load at run time, and the learner and every actor sit on a GPU. The learner
//!   (rank 0) makes the NCCL unique id and sends it with its `Register`; the coordinator forms the
//!   group (learner rank 0, actors 1..n, a new generation whenever the actor set changes) and hands
//!   each actor its rank and the id in `UpdateWeights`, and the learner the same group in
//!   `BroadcastWeights`.
//!
//! [`choose_collective`] makes the same choice for the learner ranks' gradient collective
//! (`laser_proto::collective`): NCCL when every rank can use it, else the gRPC ring.
//!
//! Which one is used is decided at run time by [`choose`] from `cluster.weight_transport` and what
//! each worker reported ([`probe`]), and logged. A missing library, a missing GPU or a build without
//! the feature falls back to the gRPC stream with the reason in the log; nothing here panics.

use laser_config::TransportPref;

use crate::v1::{NcclGroup, WeightPlaneCaps};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Nccl,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Nccl => "nccl",
        }
    }
}

/// A transport and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub transport: Transport,
    pub reason: String,
    /// The preference asked for NCCL explicitly and did not get it (log at warn).
    pub fell_back: bool,
}

impl Decision {
    /// gRPC for `reason`; a fallback when `pref` asked for NCCL.
    fn grpc(pref: TransportPref, reason: String) -> Self {
        Decision {
            transport: Transport::Grpc,
            fell_back: pref == TransportPref::Nccl,
            reason,
        }
    }

    /// The gRPC decisions that need no look at the workers: the key (`key`) says "grpc", or an
    /// NCCL operation (`what`) of this run failed already, so the run stays on `fallback`.
    fn settled(
        pref: TransportPref,
        key: &str,
        earlier_failure: Option<&str>,
        what: &str,
        fallback: &str,
    ) -> Option<Self> {
        if pref == TransportPref::Grpc {
            return Some(Decision {
                transport: Transport::Grpc,
                reason: format!("{key} = \"grpc\""),
                fell_back: false,
            });
        }
        earlier_failure.map(|why| {
            Decision::grpc(
                pref,
                format!("{what} failed earlier in this run ({why}); the run stays on {fallback}"),
            )
        })
    }

    /// Logs the decision for `what` (warn when NCCL was asked for and not used).
    pub fn log(&self, what: &str) {
        if self.fell_back {
            tracing::warn!(
                transport = self.transport.as_str(),
                reason = self.reason,
                "{what}: NCCL wanted, using gRPC"
            );
        } else {
            tracing::info!(
                transport = self.transport.as_str(),
                reason = self.reason,
                "{what} transport"
            );
        }
    }
}

/// Length of an NCCL unique id (NCCL_UNIQUE_ID_BYTES).
pub const NCCL_UNIQUE_ID_BYTES: usize = 128;

/// Chooses the weight transport for one broadcast to `actors` (name, caps) from `learner`.
/// `earlier_failure`: why an NCCL broadcast of this run failed, if one did. The run then stays on
/// the gRPC stream: ranks of a failed communicator can stay blocked in its setup, and the same
/// group would fail the same way (two ranks on one GPU, say), costing a deadline per step.
pub fn choose(
    pref: TransportPref,
    earlier_failure: Option<&str>,
    learner: &WeightPlaneCaps,
    actors: &[(&str, &WeightPlaneCaps)],
) -> Decision {
    let grpc = |reason: String| Decision::grpc(pref, reason);
    if let Some(d) = Decision::settled(
        pref,
        "cluster.weight_transport",
        earlier_failure,
        "an NCCL broadcast",
        "the gRPC stream",
    ) {
        return d;
    }
    if !learner.nccl {
        return grpc(format!(
            "the learner cannot use NCCL: {}",
            or_unknown(&learner.nccl_unavailable_reason)
        ));
    }
    if learner.nccl_unique_id.len() != NCCL_UNIQUE_ID_BYTES {
        return grpc(format!(
            "the learner sent an NCCL unique id of {} bytes, expected {NCCL_UNIQUE_ID_BYTES}",
            learner.nccl_unique_id.len()
        ));
    }
    if actors.is_empty() {
        return grpc("no actor to broadcast to".into());
    }
    if let Some((name, caps)) = actors.iter().find(|(_, c)| !c.nccl) {
        return grpc(format!(
            "actor {name} cannot use NCCL: {}",
            or_unknown(&caps.nccl_unavailable_reason)
        ));
    }
    Decision {
        transport: Transport::Nccl,
        reason: format!(
            "the learner and all {} actors report NCCL and a GPU",
            actors.len()
        ),
        fell_back: false,
    }
}

/// Chooses the transport of the learner ranks' gradient collective (`ranks`: name and caps, by
/// rank) from `cluster.learner_collective`. NCCL needs every rank able to use it and rank 0's
/// gradient-group unique id; `earlier_failure` keeps the run on the gRPC ring after a failed
/// NCCL step (as [`choose`] does for the weights).
pub fn choose_collective(
    pref: TransportPref,
    earlier_failure: Option<&str>,
    ranks: &[(&str, &WeightPlaneCaps)],
) -> Decision {
    let grpc = |reason: String| Decision::grpc(pref, reason);
    if let Some(d) = Decision::settled(
        pref,
        "cluster.learner_collective",
        earlier_failure,
        "an NCCL collective",
        "the gRPC ring",
    ) {
        return d;
    }
    if ranks.len() < 2 {
        return grpc("one learner rank: no collective".into());
    }
    if let Some((rank, (name, caps))) = ranks.iter().enumerate().find(|(_, (_, c))| !c.nccl) {
        return grpc(format!(
            "learner rank {rank} ({name}) cannot use NCCL: {}",
            or_unknown(&caps.nccl_unavailable_reason)
        ));
    }
    let id = &ranks[0].1.collective_unique_id;
    if id.len() != NCCL_UNIQUE_ID_BYTES {
        return grpc(format!(
            "learner rank 0 sent a gradient-group NCCL unique id of {} bytes, expected {NCCL_UNIQUE_ID_BYTES}",
            id.len()
        ));
    }
    Decision {
        transport: Transport::Nccl,
        reason: format!("all {} learner ranks report NCCL and a GPU", ranks.len()),
        fell_back: false,
    }
}

/// Rank `rank`'s place in the learner ranks' gradient communicator (one generation per run: a
/// failed NCCL step moves the run to the gRPC ring for good).
pub fn collective_group(unique_id: &[u8], rank: u32, world_size: u32) -> NcclGroup {
    NcclGroup {
        unique_id: unique_id.to_vec(),
        rank,
        world_size,
        generation: 1,
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "no reason given" } else { s }
}

/// The NCCL group of one broadcast: the learner is rank 0, `actors` (in the given order) ranks
/// 1..=n. Returns the learner's group and each actor's.
pub fn nccl_groups(
    unique_id: &[u8],
    generation: u64,
    actors: usize,
) -> (NcclGroup, Vec<NcclGroup>) {
    let world_size = actors as u32 + 1;
    let group = |rank: u32| NcclGroup {
        unique_id: unique_id.to_vec(),
        rank,
        world_size,
        generation,
    };
    (group(0), (1..world_size).map(group).collect())
}

/// What this process can do on the weight data plane. `make_unique_id`: the learner also creates
/// the group's NCCL unique id (when NCCL is usable). Never panics; the reason for no-NCCL is
/// filled in.
pub fn probe(cuda_device: u32, make_unique_id: bool) -> WeightPlaneCaps {
    #[cfg(feature = "nccl")]
    {
        crate::nccl::probe(cuda_device, make_unique_id)
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = make_unique_id;
        WeightPlaneCaps {
            nccl: false,
            nccl_unavailable_reason: "built without the `nccl` feature".into(),
            cuda_device,
            ..Default::default()
        }
    }
}

/// A fresh NCCL unique id (rank 0 makes one per communicator).
pub fn new_unique_id() -> Result<Vec<u8>, String> {
    #[cfg(feature = "nccl")]
    {
        crate::nccl::unique_id_bytes()
    }
    #[cfg(not(feature = "nccl"))]
    {
        Err("built without the `nccl` feature".into())
    }
}

/// Reads `LASER_CUDA_DEVICE` (default 0): the GPU ordinal for NCCL.
pub fn cuda_device_from_env() -> u32 {
    std::env::var("LASER_CUDA_DEVICE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether this build has the NCCL code path at all.
pub const NCCL_COMPILED: bool = cfg!(feature = "nccl");

/// Broadcasts `payload` as rank 0 of `group` (the learner). Without the `nccl` feature: an error
/// naming it, so the caller falls back to the gRPC stream.
pub fn broadcast_send(group: &NcclGroup, cuda_device: u32, payload: &[u8]) -> Result<(), String> {
    #[cfg(feature = "nccl")]
    {
        crate::nccl::broadcast(group, cuda_device, Some(payload), payload.len()).map(|_| ())
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (group, cuda_device, payload);
        Err("built without the `nccl` feature".into())
    }
}

/// Receives `len` bytes broadcast by rank 0 of `group` (an actor).
pub fn broadcast_recv(group: &NcclGroup, cuda_device: u32, len: usize) -> Result<Vec<u8>, String> {
    #[cfg(feature = "nccl")]
    {
        crate::nccl::broadcast(group, cuda_device, None, len)
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (group, cuda_device, len);
        Err("built without the `nccl` feature".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(nccl: bool, reason: &str, id: usize) -> WeightPlaneCaps {
        WeightPlaneCaps {
            nccl,
            nccl_unavailable_reason: reason.into(),
            cuda_device: 0,
            nccl_unique_id: vec![7; id],
            collective_unique_id: vec![8; id],
        }
    }

    #[test]
    fn grpc_when_configured() {
        let l = caps(true, "", 128);
        let a = caps(true, "", 0);
        let d = choose(TransportPref::Grpc, None, &l, &[("actor-0", &a)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(!d.fell_back);
        assert!(d.reason.contains("\"grpc\""), "{}", d.reason);
    }

    #[test]
    fn nccl_when_everyone_can() {
        let l = caps(true, "", 128);
        let a = caps(true, "", 0);
        for pref in [TransportPref::Auto, TransportPref::Nccl] {
            let d = choose(pref, None, &l, &[("actor-0", &a), ("actor-1", &a)]);
            assert_eq!(d.transport, Transport::Nccl, "{pref:?}");
            assert!(!d.fell_back);
        }
    }

    #[test]
    fn stays_on_grpc_after_an_nccl_failure() {
        let l = caps(true, "", 128);
        let a = caps(true, "", 0);
        for pref in [TransportPref::Auto, TransportPref::Nccl] {
            let d = choose(
                pref,
                Some("ncclCommInitRank: NcclError"),
                &l,
                &[("actor-0", &a)],
            );
            assert_eq!(d.transport, Transport::Grpc, "{pref:?}");
            assert_eq!(d.fell_back, pref == TransportPref::Nccl);
            assert!(d.reason.contains("ncclCommInitRank"), "{}", d.reason);
        }
    }

    #[test]
    fn falls_back_naming_who_and_why() {
        let l = caps(true, "", 128);
        let ok = caps(true, "", 0);
        let no_lib = caps(false, "the NCCL library (libnccl.so) is not present", 0);
        let d = choose(
            TransportPref::Auto,
            None,
            &l,
            &[("actor-0", &ok), ("actor-1", &no_lib)],
        );
        assert_eq!(d.transport, Transport::Grpc);
        assert!(!d.fell_back, "auto asked for nothing in particular");
        assert!(
            d.reason.contains("actor-1") && d.reason.contains("libnccl"),
            "{}",
            d.reason
        );
        let d = choose(TransportPref::Nccl, None, &l, &[("actor-1", &no_lib)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.fell_back, "nccl was asked for: a warning, not an error");

        let cpu_learner = caps(false, "built without the `nccl` feature", 0);
        let d = choose(TransportPref::Nccl, None, &cpu_learner, &[("actor-0", &ok)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.reason.contains("learner") && d.reason.contains("feature"));

        let bad_id = caps(true, "", 16);
        let d = choose(TransportPref::Auto, None, &bad_id, &[("actor-0", &ok)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.reason.contains("16 bytes"), "{}", d.reason);

        let d = choose(TransportPref::Auto, None, &l, &[]);
        assert_eq!(d.transport, Transport::Grpc);

        // Old workers that sent no caps at all.
        let none = WeightPlaneCaps::default();
        let d = choose(TransportPref::Auto, None, &none, &[("actor-0", &none)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.reason.contains("no reason given"), "{}", d.reason);
    }

    #[test]
    fn the_gradient_collective_needs_every_rank_on_nccl() {
        let ok = caps(true, "", 128);
        let no_gpu = caps(false, "CUDA device 0 requested, 0 visible", 0);
        let d = choose_collective(TransportPref::Auto, None, &[("l0", &ok), ("l1", &ok)]);
        assert_eq!(d.transport, Transport::Nccl, "{}", d.reason);

        let d = choose_collective(TransportPref::Nccl, None, &[("l0", &ok), ("l1", &no_gpu)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.fell_back);
        assert!(
            d.reason.contains("rank 1 (l1)") && d.reason.contains("0 visible"),
            "{}",
            d.reason
        );

        let d = choose_collective(TransportPref::Grpc, None, &[("l0", &ok), ("l1", &ok)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(!d.fell_back && d.reason.contains("learner_collective"));

        let d = choose_collective(
            TransportPref::Auto,
            Some("ncclAllReduce: not done"),
            &[("l0", &ok), ("l1", &ok)],
        );
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.reason.contains("ncclAllReduce"), "{}", d.reason);

        // Rank 0's id makes the group; a short one (an old learner) is refused.
        let mut short = caps(true, "", 128);
        short.collective_unique_id = vec![1; 5];
        let d = choose_collective(TransportPref::Auto, None, &[("l0", &short), ("l1", &ok)]);
        assert_eq!(d.transport, Transport::Grpc);
        assert!(d.reason.contains("5 bytes"), "{}", d.reason);

        let d = choose_collective(TransportPref::Nccl, None, &[("l0", &ok)]);
        assert_eq!(d.transport, Transport::Grpc);

        let g = collective_group(&[3; 128], 1, 2);
        assert_eq!((g.rank, g.world_size, g.generation), (1, 2, 1));
    }

    #[test]
    fn groups_rank_the_learner_first() {
        let (l, a) = nccl_groups(&[1; 128], 3, 2);
        assert_eq!((l.rank, l.world_size, l.generation), (0, 3, 3));
        assert_eq!(
            a.iter().map(|g| (g.rank, g.world_size)).collect::<Vec<_>>(),
            [(1, 3), (2, 3)]
        );
        assert!(a.iter().all(|g| g.unique_id == l.unique_id));
    }

    #[test]
    fn probe_never_panics_and_explains() {
        // On this machine (no GPU, no NCCL, or no `nccl` feature) the probe says why not.
        let c = probe(0, true);
        if !c.nccl {
            assert!(!c.nccl_unavailable_reason.is_empty());
            assert!(c.nccl_unique_id.is_empty());
        }
        if !NCCL_COMPILED {
            assert!(c.nccl_unavailable_reason.contains("feature"));
            assert!(broadcast_send(&NcclGroup::default(), 0, b"x").is_err());
            assert!(broadcast_recv(&NcclGroup::default(), 0, 1).is_err());
        }
    }
}
