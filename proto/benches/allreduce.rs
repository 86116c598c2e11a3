//! Gradient all-reduce bandwidth on loopback: 2 and 4 learner-side servers, each serving only
//! `Learner.ReduceSegment` into its own `Mailbox`, sum an f32 buffer with
//! `laser_proto::collective::ring_all_reduce` (1 MiB CRC-checked chunks), the data-parallel
//! learner's gradient plane. Checks the sum, then prints a table. Bus bandwidth is what each rank
//! sent per second (`2 (N - 1) / N` of the buffer), the figure NCCL's tests call busbw.
//! `ALLREDUCE_BENCH_MB` sets the buffer (default 128; SmolLM2-135M's gradients are 513 MiB).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use laser_proto::collective::{Mailbox, receive_segment, ring_all_reduce};
use laser_proto::rt::{ClientOptions, ClusterToken, RoleServer, ServerOptions};
use laser_proto::v1::learner_server::Learner;
use laser_proto::v1::{
    BroadcastWeightsRequest, BroadcastWeightsResponse, CheckpointRequest, CheckpointResponse,
    DataParallel, GradientChunk, ReduceSegmentAck, RestoreRequest, RestoreResponse,
    StreamWeightsRequest, TrainStepRequest, TrainStepResponse, WeightChunk,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

struct SegmentsOnly(Arc<Mailbox>);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<WeightChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Learner for SegmentsOnly {
    async fn train_step(
        &self,
        _: Request<TrainStepRequest>,
    ) -> Result<Response<TrainStepResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn checkpoint(
        &self,
        _: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn restore(
        &self,
        _: Request<RestoreRequest>,
    ) -> Result<Response<RestoreResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn broadcast_weights(
        &self,
        _: Request<BroadcastWeightsRequest>,
    ) -> Result<Response<BroadcastWeightsResponse>, Status> {
        Err(Status::unimplemented("bench"))
    }
    async fn reduce_segment(
        &self,
        r: Request<Streaming<GradientChunk>>,
    ) -> Result<Response<ReduceSegmentAck>, Status> {
        let elements = receive_segment(r.into_inner(), &self.0).await?;
        Ok(Response::new(ReduceSegmentAck { elements }))
    }
    type StreamWeightsStream = ChunkStream;
    async fn stream_weights(
        &self,
        _: Request<StreamWeightsRequest>,
    ) -> Result<Response<Self::StreamWeightsStream>, Status> {
        Err(Status::unimplemented("bench"))
    }
}

fn main() {
    let mb: usize = std::env::var("ALLREDUCE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let floats = (mb << 20) / 4;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let token = ClusterToken::new("bench-token-0123456789").unwrap();
        let mut sopts = ServerOptions::new(token.clone());
        sopts.max_message_bytes = 64 << 20;
        let copts = ClientOptions::new(token);
        println!(
            "gradient ring all-reduce on loopback: {mb} MiB of f32 per rank, 1 MiB CRC-checked chunks"
        );
        println!("| ranks | step | wall s | sent per rank MiB | bus GB/s | algorithm GB/s |");
        println!("| --- | --- | --- | --- | --- | --- |");
        for world in [2usize, 4] {
            let mut mailboxes = Vec::new();
            let mut peers = Vec::new();
            let mut stops = Vec::new();
            for _ in 0..world {
                let mailbox = Mailbox::new();
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                peers.push(listener.local_addr().unwrap().to_string());
                let server = RoleServer::new(sopts.clone())
                    .service(sopts.learner(SegmentsOnly(mailbox.clone())));
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(server.serve(listener, async {
                    let _ = rx.await;
                }));
                mailboxes.push(mailbox);
                stops.push(tx);
            }
            // Step 0 warms up connections and the allocator; steps 1-2 are measured.
            for step in 0..3u64 {
                let t = Instant::now();
                let tasks: Vec<_> = (0..world)
                    .map(|rank| {
                        let dp = DataParallel {
                            rank: rank as u32,
                            world: world as u32,
                            peers: peers.clone(),
                            round_timeout_ms: 120_000,
                            zero_stage: 0,
                            nccl: None,
                        };
                        let mailbox = mailboxes[rank].clone();
                        let copts = copts.clone();
                        tokio::spawn(async move {
                            let mut buf: Vec<f32> =
                                (0..floats).map(|i| ((i + rank) % 7) as f32).collect();
                            let stats = ring_all_reduce(&mut buf, step, &dp, &mailbox, &copts)
                                .await
                                .expect("all-reduce");
                            (buf, stats)
                        })
                    })
                    .collect();
                let mut results = Vec::new();
                for h in tasks {
                    results.push(h.await.unwrap());
                }
                let wall = t.elapsed().as_secs_f64();
                for (buf, _) in &results {
                    for i in [0, floats / 3, floats - 1] {
                        let want: f32 = (0..world).map(|r| ((i + r) % 7) as f32).sum();
                        assert_eq!(buf[i], want, "element {i}");
                    }
                }
                if step == 0 {
                    continue;
                }
                let sent = results[0].1.bytes_sent;
                let slowest = results.iter().map(|r| r.1.seconds).fold(0.0, f64::max);
                println!(
                    "| {world} | {step} | {wall:.3} | {:.0} | {:.2} | {:.2} |",
                    sent as f64 / (1 << 20) as f64,
                    sent as f64 / slowest / 1e9,
                    (floats * 4) as f64 / slowest / 1e9
                );
            }
            for s in stops {
                let _ = s.send(());
            }
        }
    });
}
