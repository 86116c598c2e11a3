//! Every call into NCCL and the CUDA driver (feature `nccl`), behind one boundary: cudarc's
//! bindings, loaded at run time, so a binary built here runs where libnccl is missing and says
//! so. Two communicators may be live in one process, each cached by (generation, rank):
//! - the weight group ([`broadcast`]: the learner is rank 0, the actors 1..n);
//! - the learner ranks' gradient group ([`all_reduce_sum`], [`all_gather`]).
//!
//! Deadlines: joining a communicator (`ncclCommInitRank` blocks until every rank has joined) runs
//! on its own thread and is waited for at most the deadline; a collective is enqueued, then its
//! completion is polled, and past the deadline the communicator is aborted (`ncclCommAbort`,
//! which is how NCCL ends operations stuck on a lost peer) and dropped from the cache.

use std::ops::Range;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};

use crate::plane::NCCL_UNIQUE_ID_BYTES;
use crate::v1::{NcclGroup, WeightPlaneCaps};

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

fn new_id() -> Result<Vec<u8>, String> {
    let id = Id::new().map_err(|e| nccl_error("ncclGetUniqueId", e))?;
    Ok(id.internal().iter().map(|c| *c as u8).collect())
}

pub fn unique_id_bytes() -> Result<Vec<u8>, String> {
    libraries()?;
    guarded("ncclGetUniqueId", new_id)
}

/// `make_unique_id`: a learner also makes the unique ids of its two groups (weights, gradients).
pub fn probe(cuda_device: u32, make_unique_id: bool) -> WeightPlaneCaps {
    let checked = libraries().and_then(|()| {
        guarded("probing GPUs", || {
            let n = CudaContext::device_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
            if n <= cuda_device as i32 {
                return Err(format!("CUDA device {cuda_device} requested, {n} visible"));
            }
            if !make_unique_id {
                return Ok((Vec::new(), Vec::new()));
            }
            Ok((new_id()?, new_id()?))
        })
    });
    match checked {
        Ok((weights, gradients)) => WeightPlaneCaps {
            nccl: true,
            nccl_unavailable_reason: String::new(),
            cuda_device,
            nccl_unique_id: weights,
            collective_unique_id: gradients,
        },
        Err(reason) => WeightPlaneCaps {
            nccl: false,
            nccl_unavailable_reason: reason,
            cuda_device,
            ..Default::default()
        },
    }
}

struct Member {
    generation: u64,
    rank: u32,
    stream: Arc<CudaStream>,
    comm: Comm,
}

// SAFETY: a communicator is used by one operation at a time (the mutexes below); NCCL allows a
// communicator to be driven from any thread as long as calls do not overlap.
unsafe impl Send for Member {}

static WEIGHT_GROUP: Mutex<Option<Member>> = Mutex::new(None);
static GRADIENT_GROUP: Mutex<Option<Member>> = Mutex::new(None);

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

/// Joins `group` on `cuda_device`, waiting at most `deadline` for the other ranks.
fn join(group: &NcclGroup, cuda_device: u32, deadline: Option<Duration>) -> Result<Member, String> {
    let (group, what) = (group.clone(), "ncclCommInitRank");
    let init = move || {
        guarded(what, || {
            let ctx = CudaContext::new(cuda_device as usize)
                .map_err(|e| format!("CUDA device {cuda_device}: {e:?}"))?;
            let stream = ctx.default_stream();
            let comm = Comm::from_rank(
                stream.clone(),
                group.rank as usize,
                group.world_size as usize,
                unique_id(&group.unique_id)?,
            )
            .map_err(|e| nccl_error(what, e))?;
            Ok(Member {
                generation: group.generation,
                rank: group.rank,
                stream,
                comm,
            })
        })
    };
    let Some(deadline) = deadline else {
        return init();
    };
    // A rank that never joins leaves the others blocked inside the call: wait on a thread, and
    // give up at the deadline (a communicator that forms later is dropped, which aborts it).
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("nccl-join".into())
        .spawn(move || {
            let _ = tx.send(init());
        })
        .map_err(|e| format!("starting the NCCL join thread: {e}"))?;
    rx.recv_timeout(deadline).unwrap_or_else(|_| {
        Err(format!(
            "{what}: the other ranks did not join within {deadline:?}"
        ))
    })
}

/// The cached member of `group` in `slot`, joining it (and dropping an older generation's) first.
fn member<'a>(
    slot: &'a mut Option<Member>,
    group: &NcclGroup,
    cuda_device: u32,
    deadline: Option<Duration>,
) -> Result<&'a Member, String> {
    let fresh = slot
        .as_ref()
        .is_none_or(|m| m.generation != group.generation || m.rank != group.rank);
    if fresh {
        // Drop the old communicator (its generation is over) before joining the new one.
        *slot = None;
        let m = join(group, cuda_device, deadline)?;
        tracing::info!(
            generation = group.generation,
            rank = group.rank,
            world_size = group.world_size,
            "joined an NCCL group"
        );
        *slot = Some(m);
    }
    slot.as_ref().ok_or_else(|| "no NCCL communicator".into())
}

/// One broadcast of `len` bytes from rank 0 of the weight group. Rank 0 passes `send`; every
/// rank gets the bytes.
pub fn broadcast(
    group: &NcclGroup,
    cuda_device: u32,
    send: Option<&[u8]>,
    len: usize,
) -> Result<Vec<u8>, String> {
    libraries()?;
    guarded("NCCL broadcast", || {
        let mut slot = WEIGHT_GROUP.lock().unwrap_or_else(|p| p.into_inner());
        let m = member(&mut slot, group, cuda_device, None)?;
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

/// Waits for the work enqueued on `m`'s stream until `end`, polling; `Err` past it.
fn wait_until(m: &Member, what: &str, end: Instant) -> Result<(), String> {
    let done = m
        .stream
        .record_event(None)
        .map_err(|e| format!("{what}: recording an event: {e:?}"))?;
    loop {
        match done.try_is_complete() {
            Ok(true) => return Ok(()),
            Ok(false) if Instant::now() < end => std::thread::sleep(Duration::from_micros(200)),
            Ok(false) => return Err(format!("{what}: not done by the deadline (lost peer?)")),
            Err(e) => return Err(format!("{what}: {e:?}")),
        }
    }
}

/// Runs `op` on the gradient group's communicator with a deadline; on any failure the
/// communicator is dropped (aborted), so nothing is left half-done for the next call.
fn on_gradient_group<T>(
    group: &NcclGroup,
    cuda_device: u32,
    deadline: Duration,
    what: &str,
    op: impl FnOnce(&Member, Instant) -> Result<T, String>,
) -> Result<T, String> {
    libraries()?;
    let end = Instant::now() + deadline;
    let mut slot = GRADIENT_GROUP.lock().unwrap_or_else(|p| p.into_inner());
    let result = guarded(what, || {
        let m = member(&mut slot, group, cuda_device, Some(deadline))?;
        op(m, end)
    });
    if result.is_err() {
        // ncclCommAbort (cudarc's Drop) ends whatever is still in flight on the lost group.
        let _ = guarded("ncclCommAbort", || {
            *slot = None;
            Ok(())
        });
    }
    result
}

/// Sums `buffer` over the ranks of `group` in place (ncclAllReduce, f32).
pub fn all_reduce_sum(
    group: &NcclGroup,
    cuda_device: u32,
    buffer: &mut [f32],
    deadline: Duration,
) -> Result<(), String> {
    on_gradient_group(group, cuda_device, deadline, "ncclAllReduce", |m, end| {
        let mut dev = m
            .stream
            .clone_htod(buffer)
            .map_err(|e| format!("copy to GPU: {e:?}"))?;
        m.comm
            .all_reduce_in_place(&mut dev, &ReduceOp::Sum)
            .map_err(|e| nccl_error("ncclAllReduce", e))?;
        wait_until(m, "ncclAllReduce", end)?;
        m.stream
            .memcpy_dtoh(&dev, buffer)
            .map_err(|e| format!("copy from GPU: {e:?}"))?;
        m.stream
            .synchronize()
            .map_err(|e| format!("stream sync: {e:?}"))
    })
}

/// Gathers `buffer` over the ranks of `group`: rank r contributes `segments[r]`. NCCL's
/// all-gather takes equal parts, so each part is padded to the longest segment.
pub fn all_gather(
    group: &NcclGroup,
    cuda_device: u32,
    buffer: &mut [f32],
    segments: &[Range<usize>],
    deadline: Duration,
) -> Result<(), String> {
    let rank = group.rank as usize;
    let part = segments.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    let mut mine = vec![0.0f32; part];
    let own = segments
        .get(rank)
        .cloned()
        .ok_or_else(|| format!("no segment for rank {rank}"))?;
    mine[..own.len()].copy_from_slice(&buffer[own]);
    let gathered = on_gradient_group(group, cuda_device, deadline, "ncclAllGather", |m, end| {
        let send = m
            .stream
            .clone_htod(&mine)
            .map_err(|e| format!("copy to GPU: {e:?}"))?;
        let mut recv = m
            .stream
            .alloc_zeros::<f32>(part * segments.len())
            .map_err(|e| format!("cuMemAlloc: {e:?}"))?;
        m.comm
            .all_gather(&send, &mut recv)
            .map_err(|e| nccl_error("ncclAllGather", e))?;
        wait_until(m, "ncclAllGather", end)?;
        m.stream
            .clone_dtoh(&recv)
            .map_err(|e| format!("copy from GPU: {e:?}"))
    })?;
    for (r, s) in segments.iter().enumerate() {
        buffer[s.clone()].copy_from_slice(&gathered[r * part..r * part + s.len()]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Runs where NCCL and a GPU are present (`bench/gpu_check.sh` part g); elsewhere it checks
    //! that the absence is reported, not panicked on.
    use super::*;

    #[test]
    fn a_one_rank_group_reduces_and_gathers_and_a_missing_rank_fails_by_the_deadline() {
        let caps = probe(0, true);
        if !caps.nccl {
            assert!(!caps.nccl_unavailable_reason.is_empty());
            let mut b = vec![1.0];
            let group = NcclGroup::default();
            assert!(all_reduce_sum(&group, 0, &mut b, Duration::from_secs(1)).is_err());
            eprintln!("NOT RUN on NCCL: {}", caps.nccl_unavailable_reason);
            return;
        }
        assert_eq!(caps.collective_unique_id.len(), NCCL_UNIQUE_ID_BYTES);
        assert_ne!(caps.collective_unique_id, caps.nccl_unique_id);
        let group = NcclGroup {
            unique_id: caps.collective_unique_id.clone(),
            rank: 0,
            world_size: 1,
            generation: 1,
        };
        let d = Duration::from_secs(60);
        let values = vec![1.5f32, -2.0, 3.25, f32::MIN_POSITIVE];
        for _ in 0..2 {
            // Twice: the second call reuses the cached communicator.
            let mut b = values.clone();
            all_reduce_sum(&group, 0, &mut b, d).expect("one-rank all-reduce");
            assert_eq!(b, values, "the sum over one rank is the buffer");
        }
        let mut g = values.clone();
        let whole = 0..values.len();
        all_gather(&group, 0, &mut g, std::slice::from_ref(&whole), d)
            .expect("one-rank all-gather");
        assert_eq!(g, values);
        // A second rank that never joins: the deadline ends the wait with an error naming it.
        let lonely = NcclGroup {
            unique_id: unique_id_bytes().expect("unique id"),
            rank: 0,
            world_size: 2,
            generation: 2,
        };
        let mut b = values.clone();
        let e = all_reduce_sum(&lonely, 0, &mut b, Duration::from_secs(3)).unwrap_err();
        assert!(e.contains("did not join"), "{e}");
        eprintln!("NCCL one-rank all-reduce and all-gather: ok; missing rank: {e}");
    }
}
