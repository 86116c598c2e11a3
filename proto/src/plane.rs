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
    let grpc = |reason: String| Decision {
        transport: Transport::Grpc,
        fell_back: pref == TransportPref::Nccl,
        reason,
    };
    if pref == TransportPref::Grpc {
        return Decision {
            transport: Transport::Grpc,
            reason: "cluster.weight_transport = \"grpc\"".into(),
            fell_back: false,
        };
    }
    if let Some(why) = earlier_failure {
        return grpc(format!(
            "an NCCL broadcast failed earlier in this run ({why}); the run stays on the gRPC stream"
        ));
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
        nccl::probe(cuda_device, make_unique_id)
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = make_unique_id;
        WeightPlaneCaps {
            nccl: false,
            nccl_unavailable_reason: "built without the `nccl` feature".into(),
            cuda_device,
            nccl_unique_id: Vec::new(),
        }
    }
}

/// A fresh NCCL unique id (rank 0 makes one per communicator).
pub fn new_unique_id() -> Result<Vec<u8>, String> {
    #[cfg(feature = "nccl")]
    {
        nccl::unique_id_bytes()
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
        nccl::broadcast(group, cuda_device, Some(payload), payload.len()).map(|_| ())
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
        nccl::broadcast(group, cuda_device, None, len)
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (group, cuda_device, len);
        Err("built without the `nccl` feature".into())
    }
}

#[cfg(feature = "nccl")]
mod nccl {
    //! cudarc's NCCL bindings (dynamically loaded: a binary built here runs where libnccl is
    //! missing, and says so). Communicators are cached per (generation, rank).

    use std::sync::{Arc, Mutex};

    use cudarc::driver::{CudaContext, CudaStream};
    use cudarc::nccl::{Comm, Id};

    use super::{NCCL_UNIQUE_ID_BYTES, NcclGroup, WeightPlaneCaps};

    fn libraries() -> Result<(), String> {
        // SAFETY: only tries to dlopen the libraries; nothing is called through them.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err("the CUDA driver library (libcuda.so) is not present".into());
        }
        // SAFETY: as above.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return Err("the NCCL library (libnccl.so) is not present".into());
        }
        Ok(())
    }

    /// An NCCL failure as text: the call, the result code and NCCL's own words for it
    /// (cudarc's `NcclError` prints as a bare "NcclError").
    fn nccl_error(call: &str, e: cudarc::nccl::result::NcclError) -> String {
        // SAFETY: ncclGetErrorString returns a static string for any result code (or null).
        let text = unsafe { cudarc::nccl::sys::ncclGetErrorString(e.0) };
        let text = if text.is_null() {
            String::new()
        } else {
            // SAFETY: non-null, NUL-terminated, static.
            unsafe { std::ffi::CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        format!("{call}: {:?} ({text})", e.0)
    }

    /// Runs `f`, turning a panic inside the bindings into an error.
    fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(format!("{what}: the CUDA/NCCL bindings panicked")))
    }

    pub fn unique_id_bytes() -> Result<Vec<u8>, String> {
        libraries()?;
        guarded("ncclGetUniqueId", || {
            let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
            Ok(id.internal().iter().map(|c| *c as u8).collect())
        })
    }

    pub fn probe(cuda_device: u32, make_unique_id: bool) -> WeightPlaneCaps {
        let checked = libraries().and_then(|()| {
            guarded("probing GPUs", || {
                let n =
                    CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
                if n <= cuda_device as i32 {
                    return Err(format!("CUDA device {cuda_device} requested, {n} visible"));
                }
                if !make_unique_id {
                    return Ok(Vec::new());
                }
                let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
                Ok(id.internal().iter().map(|c| *c as u8).collect())
            })
        });
        match checked {
            Ok(id) => WeightPlaneCaps {
                nccl: true,
                nccl_unavailable_reason: String::new(),
                cuda_device,
                nccl_unique_id: id,
            },
            Err(reason) => WeightPlaneCaps {
                nccl: false,
                nccl_unavailable_reason: reason,
                cuda_device,
                nccl_unique_id: Vec::new(),
            },
        }
    }

    struct Member {
        generation: u64,
        rank: u32,
        stream: Arc<CudaStream>,
        comm: Comm,
    }

    // SAFETY: a communicator is used by one broadcast at a time (the mutex below); NCCL allows a
    // communicator to be driven from any thread as long as calls do not overlap.
    unsafe impl Send for Member {}

    static MEMBER: Mutex<Option<Member>> = Mutex::new(None);

    fn unique_id(bytes: &[u8]) -> Result<Id, String> {
        if bytes.len() != NCCL_UNIQUE_ID_BYTES {
            return Err(format!(
                "NCCL unique id of {} bytes, expected {NCCL_UNIQUE_ID_BYTES}",
                bytes.len()
            ));
        }
        let mut internal = [0 as std::ffi::c_char; NCCL_UNIQUE_ID_BYTES];
        for (d, s) in internal.iter_mut().zip(bytes) {
            *d = *s as std::ffi::c_char;
        }
        Ok(Id::uninit(internal))
    }

    /// One broadcast of `len` bytes from rank 0. Rank 0 passes `send`; every rank gets the bytes.
    pub fn broadcast(
        group: &NcclGroup,
        cuda_device: u32,
        send: Option<&[u8]>,
        len: usize,
    ) -> Result<Vec<u8>, String> {
        libraries()?;
        guarded("NCCL broadcast", || {
            let mut slot = MEMBER.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = slot
                .as_ref()
                .is_none_or(|m| m.generation != group.generation || m.rank != group.rank);
            if fresh {
                // Drop the old communicator (its generation is over) before joining the new one.
                *slot = None;
                let ctx = CudaContext::new(cuda_device as usize)
                    .map_err(|e| format!("CUDA device {cuda_device}: {e:?}"))?;
                let stream = ctx.default_stream();
                let comm = Comm::from_rank(
                    stream.clone(),
                    group.rank as usize,
                    group.world_size as usize,
                    unique_id(&group.unique_id)?,
                )
                .map_err(|e| nccl_error("ncclCommInitRank", e))?;
                tracing::info!(
                    generation = group.generation,
                    rank = group.rank,
                    world_size = group.world_size,
                    "joined the NCCL weight group"
                );
                *slot = Some(Member {
                    generation: group.generation,
                    rank: group.rank,
                    stream,
                    comm,
                });
            }
            let m = slot.as_ref().ok_or("no NCCL communicator")?;
            let mut recv = m
                .stream
                .alloc_zeros::<u8>(len)
                .map_err(|e| format!("cuMemAlloc({len}): {e:?}"))?;
            let send = match send {
                Some(bytes) => Some(
                    m.stream
                        .clone_htod(bytes)
                        .map_err(|e| format!("copy to GPU: {e:?}"))?,
                ),
                None => None,
            };
            m.comm
                .broadcast(send.as_ref(), &mut recv, 0)
                .map_err(|e| nccl_error("ncclBroadcast", e))?;
            let out = m
                .stream
                .clone_dtoh(&recv)
                .map_err(|e| format!("copy from GPU: {e:?}"))?;
            m.stream
                .synchronize()
                .map_err(|e| format!("stream sync: {e:?}"))?;
            Ok(out)
        })
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
