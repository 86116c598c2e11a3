//! The data-parallel gradient plane on CPUs: a ring all-reduce (sum) of one f32 buffer between
//! learner ranks over `Learner.ReduceSegment`, the same gRPC runtime (token, limits, deadlines)
//! as every other call.
//!
//! The buffer is cut into `world` segments. In reduce-scatter round `k` (0..world-1) rank `r`
//! sends segment `(r - k) mod world` to rank `r + 1` and adds the segment `(r - k - 1) mod world`
//! it receives from rank `r - 1`; after those rounds rank `r` holds the full sum of segment
//! `(r + 1) mod world`. In all-gather round `k` it forwards segment `(r + 1 - k) mod world` and
//! stores segment `(r - k) mod world`. Each rank sends `2 (world - 1) / world` of the buffer, the
//! bandwidth-optimal amount. Every rank adds the same operands in the same order for a given
//! segment, so all ranks end with bit-identical sums.
//!
//! With `DataParallel.nccl` set (every rank on a GPU with NCCL, see `plane::choose_collective`),
//! [`nccl_all_reduce`] and [`nccl_all_gather`] do the same over NCCL instead.
//!
//! Segments travel as a client stream of [`GradientChunk`]s, each CRC-checked; the receiving
//! server assembles them into its [`Mailbox`], where the ring waits for them with a deadline. A
//! lost or stopped peer therefore fails the round with an error naming it, never a hang.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::{Status, Streaming};

use crate::rt::ClientOptions;
use crate::rt::deadline::{request, with_deadline};
use crate::v1::{DataParallel, GradientChunk};

/// Elements per chunk: 1 MiB of f32, well under any message limit.
pub const CHUNK_ELEMENTS: usize = 1 << 18;

#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    #[error("data_parallel: {0}")]
    Invalid(String),
    #[error(
        "ring collective round {round} of step {step}: sending to rank {to} ({endpoint}): {message}"
    )]
    Send {
        step: u64,
        round: u32,
        to: u32,
        endpoint: String,
        message: String,
    },
    #[error(
        "ring collective round {round} of step {step}: nothing from rank {from} within {timeout:?} (lost or stopped peer)"
    )]
    Timeout {
        step: u64,
        round: u32,
        from: u32,
        timeout: Duration,
    },
    #[error(
        "ring collective round {round} of step {step}: rank {from} ({endpoint}) is gone: {message}"
    )]
    PeerGone {
        step: u64,
        round: u32,
        from: u32,
        endpoint: String,
        message: String,
    },
    #[error(
        "ring collective round {round} of step {step}: rank {from} sent {got} elements, expected {expected}"
    )]
    Length {
        step: u64,
        round: u32,
        from: u32,
        got: usize,
        expected: usize,
    },
}

/// Element range of `segment` when `len` elements are cut into `world` near-equal segments.
pub fn segment_range(len: usize, world: usize, segment: usize) -> Range<usize> {
    let base = len / world;
    let extra = len % world;
    let start = segment * base + segment.min(extra);
    start..start + base + usize::from(segment < extra)
}

/// One ring round for `rank`: the segment it sends, the one it receives, and whether the received
/// one is added (reduce-scatter) or stored (all-gather). Rounds run 0..2 (world - 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRound {
    pub send: usize,
    pub recv: usize,
    pub reduce: bool,
}

pub fn ring_round(rank: usize, world: usize, round: usize) -> RingRound {
    let m = |x: isize| x.rem_euclid(world as isize) as usize;
    let (r, n) = (rank as isize, world as isize - 1);
    if (round as isize) < n {
        let k = round as isize;
        RingRound {
            send: m(r - k),
            recv: m(r - k - 1),
            reduce: true,
        }
    } else {
        let k = round as isize - n;
        RingRound {
            send: m(r + 1 - k),
            recv: m(r - k),
            reduce: false,
        }
    }
}

/// Segments received by this rank's server, waiting for its ring to take them.
#[derive(Debug, Default)]
pub struct Mailbox {
    segments: Mutex<HashMap<(u64, u32), Vec<f32>>>,
    arrived: Notify,
}

impl Mailbox {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Stores a whole segment; segments of steps older than `step` are dropped (a redone step's
    /// leftovers never mix into a new one).
    pub fn deliver(&self, step: u64, round: u32, data: Vec<f32>) {
        let mut m = self.segments.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|(s, _), _| *s >= step);
        m.insert((step, round), data);
        drop(m);
        self.arrived.notify_waiters();
    }

    /// Drops every segment (the learner was restored: step numbers repeat with other gradients).
    pub fn clear(&self) {
        self.segments
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Waits at most `timeout` for the segment of (`step`, `round`).
    pub async fn take(&self, step: u64, round: u32, timeout: Duration) -> Option<Vec<f32>> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(v) = self
                .segments
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(step, round))
            {
                return Some(v);
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// The server side of `ReduceSegment`: reads one segment's chunks (in order, CRC-checked, covering
/// the segment exactly) and delivers it to `mailbox`. Returns the element count.
pub async fn receive_segment(
    mut chunks: Streaming<GradientChunk>,
    mailbox: &Mailbox,
) -> Result<u64, Status> {
    let mut key: Option<(u64, u32, u32)> = None;
    let mut data: Vec<f32> = Vec::new();
    let mut segment_len = 0usize;
    while let Some(c) = chunks.message().await? {
        let this = (c.step, c.round, c.from_rank);
        match key {
            None => {
                key = Some(this);
                segment_len = c.segment_len as usize;
                data.reserve_exact(segment_len);
            }
            Some(k) if k != this => {
                return Err(Status::invalid_argument(format!(
                    "gradient chunk for step {} round {} from rank {} inside the segment of step {} round {} from rank {}",
                    c.step, c.round, c.from_rank, k.0, k.1, k.2
                )));
            }
            Some(_) => {}
        }
        if c.offset as usize != data.len() || c.data.len() % 4 != 0 {
            return Err(Status::invalid_argument(format!(
                "gradient chunk at element {} ({} bytes): expected element {} and whole f32s",
                c.offset,
                c.data.len(),
                data.len()
            )));
        }
        let crc = crc32fast::hash(&c.data);
        if crc != c.crc32 {
            return Err(Status::data_loss(format!(
                "gradient chunk of step {} round {} at element {}: CRC {crc:08x}, sent {:08x}",
                c.step, c.round, c.offset, c.crc32
            )));
        }
        data.extend(
            c.data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        if data.len() > segment_len {
            return Err(Status::invalid_argument(format!(
                "gradient segment longer than its stated {segment_len} elements"
            )));
        }
    }
    let Some((step, round, _)) = key else {
        return Err(Status::invalid_argument("empty gradient segment"));
    };
    if data.len() != segment_len {
        return Err(Status::data_loss(format!(
            "gradient segment of step {step} round {round}: {} of {segment_len} elements arrived",
            data.len()
        )));
    }
    let n = data.len() as u64;
    mailbox.deliver(step, round, data);
    Ok(n)
}

fn chunks_of(step: u64, round: u32, from_rank: u32, segment: &[f32]) -> Vec<GradientChunk> {
    let mut out = Vec::with_capacity(segment.len().div_ceil(CHUNK_ELEMENTS).max(1));
    let mut offset = 0usize;
    loop {
        let part = &segment[offset..(offset + CHUNK_ELEMENTS).min(segment.len())];
        let mut bytes = Vec::with_capacity(part.len() * 4);
        for v in part {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        out.push(GradientChunk {
            step,
            round,
            from_rank,
            offset: offset as u64,
            segment_len: segment.len() as u64,
            crc32: crc32fast::hash(&bytes),
            data: bytes,
        });
        offset += part.len();
        if offset >= segment.len() {
            return out;
        }
    }
}

/// What one all-reduce moved.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AllReduceStats {
    pub bytes_sent: u64,
    pub seconds: f64,
}

/// How often a rank waiting for its previous rank's segment checks that the peer still listens.
pub const PEER_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A TCP connect to a peer's endpoint (`host:port`, optionally with an http(s):// scheme):
/// refused means its process is gone. A peer that is only slow, stopped or cut off by a
/// partition still accepts or hangs, and the round's deadline covers it.
async fn probe_peer(endpoint: &str) -> std::io::Result<()> {
    let addr = endpoint
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    match tokio::time::timeout(PEER_PROBE_INTERVAL, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) | Err(_) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(e),
        // Name resolution and other errors: not proof of death; leave it to the deadline.
        Ok(Err(_)) => Ok(()),
    }
}

/// The rounds one ring all-reduce takes over `world` ranks (reduce-scatter, then all-gather).
/// A step's later collectives number their rounds from `pass * rounds_per_pass(world)`, so two
/// collectives of one step never meet in a mailbox.
pub fn rounds_per_pass(world: u32) -> u32 {
    2 * world.saturating_sub(1)
}

/// Sums `buffer` over the ranks of `dp` in place (ring all-reduce, the step's first collective);
/// `mailbox` is this rank's server-side inbox. World 1 returns at once.
pub async fn ring_all_reduce(
    buffer: &mut [f32],
    step: u64,
    dp: &DataParallel,
    mailbox: &Mailbox,
    client: &ClientOptions,
) -> Result<AllReduceStats, CollectiveError> {
    let (rank, world) = check_world(dp)?;
    let len = buffer.len();
    let plan: Vec<RingStep> = (0..rounds_per_pass(dp.world) as usize)
        .map(|round| {
            let r = ring_round(rank, world, round);
            RingStep {
                send: segment_range(len, world, r.send),
                recv: segment_range(len, world, r.recv),
                reduce: r.reduce,
            }
        })
        .collect();
    run_ring(buffer, step, 0, &plan, dp, mailbox, client).await
}

/// The all-gather rounds for `rank` when rank `r` holds the final values of `segments[r]`: in
/// round `k` (0..world-1) it forwards segment `(rank - k) mod world` (its own first, then each one
/// it has just received) and stores segment `(rank - k - 1) mod world`. Segments may differ in
/// length (ZeRO-1's are whole parameter tensors) or be empty.
pub fn all_gather_plan(rank: usize, segments: &[Range<usize>]) -> Vec<RingStep> {
    let world = segments.len();
    let m = |x: isize| x.rem_euclid(world as isize) as usize;
    (0..world.saturating_sub(1) as isize)
        .map(|k| RingStep {
            send: segments[m(rank as isize - k)].clone(),
            recv: segments[m(rank as isize - k - 1)].clone(),
            reduce: false,
        })
        .collect()
}

/// Gathers `buffer` over the ranks of `dp`: rank `r` contributes `segments[r]` (ranges of
/// `buffer`, one per rank, disjoint) and ends with every rank's. Each rank sends
/// `(world - 1) / world` of the buffer on average, half of what an all-reduce of the same buffer
/// moves, and the values arrive as their owner's bits (copies, no arithmetic). Runs as the
/// `pass`-th collective of `step` (see [`rounds_per_pass`]).
pub async fn ring_all_gather(
    buffer: &mut [f32],
    segments: &[Range<usize>],
    step: u64,
    pass: u32,
    dp: &DataParallel,
    mailbox: &Mailbox,
    client: &ClientOptions,
) -> Result<AllReduceStats, CollectiveError> {
    let (rank, world) = check_world(dp)?;
    if segments.len() != world || segments.iter().any(|s| s.end > buffer.len()) {
        return Err(CollectiveError::Invalid(format!(
            "all-gather of {} elements with {} segments ({segments:?}) over {world} ranks",
            buffer.len(),
            segments.len()
        )));
    }
    let plan = all_gather_plan(rank, segments);
    run_ring(buffer, step, pass, &plan, dp, mailbox, client).await
}

/// [`ring_all_reduce`] over NCCL (`dp.nccl`, the learner ranks' communicator on GPU
/// `cuda_device`), deadline `dp.round_timeout_ms`. Blocking: call it off the async runtime.
/// `bytes_sent` counts what NCCL's ring algorithm sends per rank, `2 (world - 1) / world` of the
/// buffer (NCCL does not report it). Without the `nccl` feature: an error naming it.
pub fn nccl_all_reduce(
    buffer: &mut [f32],
    dp: &DataParallel,
    cuda_device: u32,
) -> Result<AllReduceStats, String> {
    let t = std::time::Instant::now();
    let group = nccl_group(dp)?;
    let world = u64::from(dp.world);
    #[cfg(feature = "nccl")]
    {
        crate::nccl::all_reduce_sum(group, cuda_device, buffer, deadline(dp))?;
        Ok(AllReduceStats {
            bytes_sent: 2 * (world - 1) * buffer.len() as u64 * 4 / world,
            seconds: t.elapsed().as_secs_f64(),
        })
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (group, cuda_device, world, t, buffer);
        Err(WITHOUT_NCCL.into())
    }
}

/// [`ring_all_gather`] over NCCL (see [`nccl_all_reduce`]); each rank's part is padded to the
/// longest segment, and `bytes_sent` counts the padded parts a rank forwards.
pub fn nccl_all_gather(
    buffer: &mut [f32],
    segments: &[Range<usize>],
    dp: &DataParallel,
    cuda_device: u32,
) -> Result<AllReduceStats, String> {
    let t = std::time::Instant::now();
    let group = nccl_group(dp)?;
    if segments.len() != dp.world as usize || segments.iter().any(|s| s.end > buffer.len()) {
        return Err(format!(
            "all-gather of {} elements with segments {segments:?} over {} ranks",
            buffer.len(),
            dp.world
        ));
    }
    let part = segments.iter().map(|s| s.len()).max().unwrap_or(0) as u64;
    #[cfg(feature = "nccl")]
    {
        crate::nccl::all_gather(group, cuda_device, buffer, segments, deadline(dp))?;
        Ok(AllReduceStats {
            bytes_sent: (u64::from(dp.world) - 1) * part * 4,
            seconds: t.elapsed().as_secs_f64(),
        })
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (group, cuda_device, part, t);
        Err(WITHOUT_NCCL.into())
    }
}

fn nccl_group(dp: &DataParallel) -> Result<&crate::v1::NcclGroup, String> {
    let group = dp
        .nccl
        .as_ref()
        .ok_or("data_parallel.nccl: no NCCL group was given")?;
    if group.rank != dp.rank || group.world_size != dp.world {
        return Err(format!(
            "data_parallel.nccl: rank {} of {} in the NCCL group, rank {} of {} in the step",
            group.rank, group.world_size, dp.rank, dp.world
        ));
    }
    Ok(group)
}

#[cfg(feature = "nccl")]
fn deadline(dp: &DataParallel) -> Duration {
    Duration::from_millis(dp.round_timeout_ms.max(1))
}

#[cfg(not(feature = "nccl"))]
const WITHOUT_NCCL: &str = "NCCL collective: this learner was built without the `nccl` feature";

/// One round of a ring collective: what this rank sends to the next rank, and what it receives
/// from the previous one (added or stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingStep {
    pub send: Range<usize>,
    pub recv: Range<usize>,
    pub reduce: bool,
}

fn check_world(dp: &DataParallel) -> Result<(usize, usize), CollectiveError> {
    let world = dp.world as usize;
    let rank = dp.rank as usize;
    if world == 0 || rank >= world || dp.peers.len() != world {
        return Err(CollectiveError::Invalid(format!(
            "rank {rank} of world {world} with {} peers",
            dp.peers.len()
        )));
    }
    Ok((rank, world))
}

/// Runs `plan` round by round: send to the next rank and receive from the previous one at once,
/// each round with `dp.round_timeout_ms`, a dead previous rank detected by [`probe_peer`].
async fn run_ring(
    buffer: &mut [f32],
    step: u64,
    pass: u32,
    plan: &[RingStep],
    dp: &DataParallel,
    mailbox: &Mailbox,
    client: &ClientOptions,
) -> Result<AllReduceStats, CollectiveError> {
    let t = std::time::Instant::now();
    let (rank, world) = check_world(dp)?;
    if world == 1 {
        return Ok(AllReduceStats::default());
    }
    let timeout = Duration::from_millis(dp.round_timeout_ms.max(1));
    let next = (rank + 1) % world;
    let prev = (rank + world - 1) % world;
    let endpoint = dp.peers[next].clone();
    let send_error = |round: u32, message: String| CollectiveError::Send {
        step,
        round,
        to: next as u32,
        endpoint: endpoint.clone(),
        message,
    };
    let channel = client
        .lazy(&endpoint)
        .map_err(|e| send_error(0, e.to_string()))?;
    let mut peer = client.learner(channel);
    let mut bytes_sent = 0u64;
    let first_round = pass * rounds_per_pass(dp.world);
    for (round, r) in plan.iter().enumerate() {
        let round = first_round + round as u32;
        let chunks = chunks_of(step, round, rank as u32, &buffer[r.send.clone()]);
        bytes_sent += (r.send.len() * 4) as u64;
        // Send and receive at once: every rank sends first, so waiting for the send to finish
        // before receiving would be fine too, but overlapping halves the round's latency.
        let sending = with_deadline(
            "Learner.ReduceSegment",
            timeout,
            peer.reduce_segment(request(tokio_stream::iter(chunks), timeout)),
        );
        let receiving = mailbox.take(step, round, timeout);
        // Whichever half fails first ends the round: a dead next rank must not leave this one
        // waiting out the receive deadline, nor a dead previous rank (whose process is gone, so
        // connecting to it is refused) the whole round deadline.
        tokio::pin!(sending, receiving);
        let mut sent = false;
        let mut incoming = None;
        let mut probe = tokio::time::interval(PEER_PROBE_INTERVAL);
        probe.tick().await;
        while !sent || incoming.is_none() {
            tokio::select! {
                s = &mut sending, if !sent => {
                    s.map_err(|s| send_error(round, s.message().to_string()))?;
                    sent = true;
                }
                r = &mut receiving, if incoming.is_none() => {
                    incoming = Some(r.ok_or(CollectiveError::Timeout {
                        step,
                        round,
                        from: prev as u32,
                        timeout,
                    })?);
                }
                _ = probe.tick(), if incoming.is_none() => {
                    if let Err(e) = probe_peer(&dp.peers[prev]).await {
                        return Err(CollectiveError::PeerGone {
                            step,
                            round,
                            from: prev as u32,
                            endpoint: dp.peers[prev].clone(),
                            message: e.to_string(),
                        });
                    }
                }
            }
        }
        let incoming = incoming.unwrap_or_default();
        if incoming.len() != r.recv.len() {
            return Err(CollectiveError::Length {
                step,
                round,
                from: prev as u32,
                got: incoming.len(),
                expected: r.recv.len(),
            });
        }
        let target = &mut buffer[r.recv.clone()];
        if r.reduce {
            // One float add per element per round, the same on whichever rank owns the segment
            // (IEEE addition is commutative), so every rank ends with the same bits.
            for (t, v) in target.iter_mut().zip(incoming) {
                *t += v;
            }
        } else {
            target.copy_from_slice(&incoming);
        }
    }
    Ok(AllReduceStats {
        bytes_sent,
        seconds: t.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Simulates the ring on plain vectors: every rank ends with the elementwise sum.
    fn simulate(inputs: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let world = inputs.len();
        let len = inputs[0].len();
        let mut bufs = inputs.to_vec();
        for round in 0..2 * (world - 1) {
            let sent: Vec<Vec<f32>> = (0..world)
                .map(|r| {
                    bufs[r][segment_range(len, world, ring_round(r, world, round).send)].to_vec()
                })
                .collect();
            for (r, buf) in bufs.iter_mut().enumerate() {
                let rr = ring_round(r, world, round);
                let prev = (r + world - 1) % world;
                assert_eq!(
                    rr.recv,
                    ring_round(prev, world, round).send,
                    "rank {r} receives what rank {prev} sends"
                );
                let range = segment_range(len, world, rr.recv);
                let incoming = &sent[prev];
                for (t, v) in buf[range].iter_mut().zip(incoming) {
                    *t = if rr.reduce { *t + v } else { *v };
                }
            }
        }
        bufs
    }

    /// Runs per-rank plans on plain vectors, rank r receiving what rank r-1 sends each round.
    fn simulate_plans(inputs: &[Vec<f32>], plans: &[Vec<RingStep>]) -> Vec<Vec<f32>> {
        let world = inputs.len();
        let mut bufs = inputs.to_vec();
        for round in 0..plans[0].len() {
            let sent: Vec<Vec<f32>> = (0..world)
                .map(|r| bufs[r][plans[r][round].send.clone()].to_vec())
                .collect();
            for (r, buf) in bufs.iter_mut().enumerate() {
                let step = &plans[r][round];
                let prev = (r + world - 1) % world;
                assert_eq!(
                    step.recv, plans[prev][round].send,
                    "round {round}: rank {r} receives what rank {prev} sends"
                );
                for (t, v) in buf[step.recv.clone()].iter_mut().zip(&sent[prev]) {
                    *t = if step.reduce { *t + v } else { *v };
                }
            }
        }
        bufs
    }

    #[test]
    fn the_all_gather_gives_every_rank_each_owners_bits() {
        // Uneven segments, an empty one among them (a rank that owns no parameter).
        for cuts in [vec![0, 5, 6, 20], vec![0, 7, 7, 9, 30], vec![0, 1, 2]] {
            let world = cuts.len() - 1;
            let segments: Vec<Range<usize>> = cuts.windows(2).map(|w| w[0]..w[1]).collect();
            let len = *cuts.last().unwrap();
            // Rank r holds the true values in its own segment and garbage elsewhere.
            let truth: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin()).collect();
            let inputs: Vec<Vec<f32>> = (0..world)
                .map(|r| {
                    (0..len)
                        .map(|i| {
                            if segments[r].contains(&i) {
                                truth[i]
                            } else {
                                f32::NAN
                            }
                        })
                        .collect()
                })
                .collect();
            let plans: Vec<Vec<RingStep>> =
                (0..world).map(|r| all_gather_plan(r, &segments)).collect();
            let out = simulate_plans(&inputs, &plans);
            for (r, buf) in out.iter().enumerate() {
                let bits: Vec<u32> = buf.iter().map(|v| v.to_bits()).collect();
                let want: Vec<u32> = truth.iter().map(|v| v.to_bits()).collect();
                assert_eq!(bits, want, "cuts {cuts:?}: rank {r}");
            }
            // Each rank sends every segment but the next rank's own: (world - 1) / world of the
            // buffer when the segments are equal.
            for (r, plan) in plans.iter().enumerate() {
                let sent: usize = plan.iter().map(|s| s.send.len()).sum();
                assert_eq!(sent, len - segments[(r + 1) % world].len(), "rank {r}");
            }
        }
    }

    #[test]
    fn segments_cover_the_buffer_once() {
        for (len, world) in [(10, 3), (2, 4), (0, 2), (1000, 7)] {
            let mut next = 0;
            for s in 0..world {
                let r = segment_range(len, world, s);
                assert_eq!(r.start, next);
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }

    #[test]
    fn the_ring_sums_on_every_rank_bit_identically() {
        for world in 2..=5 {
            let len = 37;
            let inputs: Vec<Vec<f32>> = (0..world)
                .map(|r| {
                    (0..len)
                        .map(|i| ((r * 31 + i * 7) % 13) as f32 * 0.1 - 0.6)
                        .collect()
                })
                .collect();
            let out = simulate(&inputs);
            for i in 0..len {
                let exact: f64 = inputs.iter().map(|v| v[i] as f64).sum();
                assert!(
                    (out[0][i] as f64 - exact).abs() < 1e-5,
                    "world {world} element {i}"
                );
                for r in 1..world {
                    assert_eq!(
                        out[r][i].to_bits(),
                        out[0][i].to_bits(),
                        "rank {r} element {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn chunks_cover_a_segment_in_order() {
        let seg: Vec<f32> = (0..(CHUNK_ELEMENTS * 2 + 5)).map(|i| i as f32).collect();
        let chunks = chunks_of(3, 1, 0, &seg);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].offset as usize, CHUNK_ELEMENTS * 2);
        assert_eq!(chunks[2].data.len(), 20);
        assert!(chunks.iter().all(|c| c.crc32 == crc32fast::hash(&c.data)));
        assert_eq!(
            chunks_of(0, 0, 0, &[]).len(),
            1,
            "an empty segment still announces itself"
        );
    }

    /// A dead peer (its port refuses connections) ends the ring with an error naming it, not a
    /// wait for the round deadline: the Timeout variant would mean the deadline ran out.
    #[tokio::test]
    async fn a_dead_peer_fails_the_ring_instead_of_waiting_out_the_deadline() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        assert!(
            probe_peer(&closed).await.is_err(),
            "nothing listens on {closed}"
        );
        let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open_addr = open.local_addr().unwrap().to_string();
        assert!(probe_peer(&format!("http://{open_addr}")).await.is_ok());

        let dp = DataParallel {
            rank: 0,
            world: 2,
            peers: vec![open_addr, closed.clone()],
            round_timeout_ms: 600_000,
            zero_stage: 0,
            nccl: None,
        };
        let mailbox = Mailbox::new();
        let client = ClientOptions::new(crate::rt::ClusterToken::generate());
        let mut buffer = vec![1.0f32; 1000];
        let err = ring_all_reduce(&mut buffer, 7, &dp, &mailbox, &client)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                CollectiveError::Send { to: 1, .. } | CollectiveError::PeerGone { from: 1, .. }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&closed), "{err}");
    }

    #[tokio::test]
    async fn the_mailbox_times_out_and_drops_old_steps() {
        let m = Mailbox::new();
        assert!(m.take(1, 0, Duration::from_millis(20)).await.is_none());
        m.deliver(1, 0, vec![1.0]);
        m.deliver(2, 0, vec![2.0]);
        assert!(m.take(1, 0, Duration::from_millis(20)).await.is_none());
        assert_eq!(
            m.take(2, 0, Duration::from_millis(20)).await,
            Some(vec![2.0])
        );
        let m2 = Arc::clone(&m);
        let waiter = tokio::spawn(async move { m2.take(3, 1, Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        m.deliver(3, 1, vec![3.0]);
        assert_eq!(waiter.await.unwrap(), Some(vec![3.0]));
    }
}
