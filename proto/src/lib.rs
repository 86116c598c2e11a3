//! laser-proto: the wire contract of the LaSeR cluster and the runtime pieces every role shares.
//!
//! The coordinator hands prompt groups to actors (`Actor.Generate`, a server stream of rollouts),
//! sends their answers to verifiers (`Verifier.Grade`), gives scored groups to the learner
//! (`Learner.TrainStep`) and tells actors when new weights exist (`Actor.UpdateWeights`). Those are
//! control-plane messages. The weights themselves travel on a separate data plane: actors pull
//! `Learner.StreamWeights`, a manifest plus checksummed byte chunks tagged with the policy version.
//! Workers join through `Coordinator.Register`/`Heartbeat`; `Monitor` is the read-only view.
//!
//! [`rt`] is the one place for what every server and client needs: the cluster token and its
//! constant-time check, message size limits, per-RPC deadlines, connection setup, tonic-health and
//! tonic-reflection on every server, and tracing setup; its settings types (`TokenSource`, `TlsFiles`,
//! `TransportPref`) come from laser-config, which also holds the run configuration (cluster.toml). [`weights`] packs and checks the chunked
//! weight payload; [`plane`] chooses between that gRPC stream and an NCCL broadcast at run time.
//! [`collective`] is the data-parallel learner's gradient plane: a ring all-reduce and all-gather
//! between learner ranks over `Learner.ReduceSegment`, or NCCL's when every rank has a GPU.
//! `nccl` (feature `nccl`) holds every call into NCCL and the CUDA driver.

pub mod collective;
#[cfg(feature = "nccl")]
mod nccl;
pub mod plane;
pub mod rt;
pub mod weights;

/// Generated messages and services of package `laser.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("laser.v1");
}

/// The encoded `FileDescriptorSet` of every laser.v1 file, served by tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/laser_descriptor.bin"));
