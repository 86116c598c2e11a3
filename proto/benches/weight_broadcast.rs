//! Weight-broadcast bandwidth on loopback: one learner-side server streams a versioned,
//! checksummed payload (`Learner.StreamWeights`, 4 MiB chunks) to 1, 2 and 4 actor-side clients
//! pulling at once. Each client does what an actor does before building its model: receive,
//! check every chunk's CRC and the payload CRC (`WeightAssembler`), and unpack to f32 tensors.
//! Prints a table; `WEIGHT_BENCH_MB` sets the payload size (default 256).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use laser_proto::rt::{
    ClientOptions, ClusterToken, RoleServer, ServerOptions, next_within, request, with_deadline,
};
use laser_proto::v1::learner_server::Learner;
use laser_proto::v1::{
    BroadcastWeightsRequest, BroadcastWeightsResponse, CheckpointRequest, CheckpointResponse,
    GradientChunk, ReduceSegmentAck, RestoreRequest, RestoreResponse, StreamWeightsRequest,
    TrainStepRequest, TrainStepResponse, WeightChunk,
};
use laser_proto::weights::{DEFAULT_CHUNK_BYTES, WeightAssembler, WeightPayload};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

struct WeightsOnly(Arc<WeightPayload>);

type ChunkStream = Pin<Box<dyn Stream<Item = Result<WeightChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Learner for WeightsOnly {
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
        _: Request<Streaming<GradientChunk>>,
    ) -> Result<Response<ReduceSegmentAck>, Status> {
        Err(Status::unimplemented("bench"))
    }
    type StreamWeightsStream = ChunkStream;
    async fn stream_weights(
        &self,
        _: Request<StreamWeightsRequest>,
    ) -> Result<Response<Self::StreamWeightsStream>, Status> {
        let chunks = self.0.chunks(DEFAULT_CHUNK_BYTES).map(Ok);
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

async fn pull(opts: ClientOptions, addr: String) -> (u64, f64) {
    let d = Duration::from_secs(300);
    let t = Instant::now();
    let mut c = opts.learner(opts.connect(&addr).await.expect("connect"));
    let mut s = with_deadline(
        "StreamWeights",
        d,
        c.stream_weights(request(StreamWeightsRequest::default(), d)),
    )
    .await
    .expect("stream")
    .into_inner();
    let mut asm = WeightAssembler::new();
    while let Some(chunk) = next_within("StreamWeights", d, &mut s)
        .await
        .expect("chunk")
    {
        asm.push(chunk).expect("valid chunk");
    }
    let payload = asm.finish().expect("complete payload");
    let tensors = payload.unpack().expect("unpack");
    assert!(!tensors.is_empty());
    (payload.bytes.len() as u64, t.elapsed().as_secs_f64())
}

fn main() {
    let mb: usize = std::env::var("WEIGHT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        // A model-like payload: 64 tensors of equal size.
        let floats = (mb << 20) / 4;
        let per = floats / 64;
        let data: Vec<Vec<f32>> = (0..64).map(|t| (0..per).map(|i| (i ^ t) as f32 * 1e-3).collect()).collect();
        let names: Vec<String> = (0..64).map(|t| format!("model.layers.{t}.weight")).collect();
        let shapes: Vec<Vec<usize>> = (0..64).map(|_| vec![per]).collect();
        let payload = Arc::new(WeightPayload::pack(
            1,
            (0..64).map(|t| (names[t].as_str(), shapes[t].as_slice(), data[t].as_slice())),
        ));
        drop(data);
        let token = ClusterToken::new("bench-token-0123456789").unwrap();
        let mut sopts = ServerOptions::new(token.clone());
        sopts.max_message_bytes = 64 << 20;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = RoleServer::new(sopts.clone()).service(sopts.learner(WeightsOnly(payload.clone())));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let srv = tokio::spawn(server.serve(listener, async {
            let _ = stop_rx.await;
        }));
        let copts = ClientOptions::new(token);
        // Warm-up (connection set-up, allocator).
        pull(copts.clone(), addr.clone()).await;

        println!("weight broadcast on loopback: payload {} MiB, {} chunks of {} MiB, CRC-checked and unpacked", payload.bytes.len() >> 20, payload.total_chunks(DEFAULT_CHUNK_BYTES), DEFAULT_CHUNK_BYTES >> 20);
        println!("| actors | wall s | aggregate GB/s | per-actor GB/s (mean) |");
        println!("| --- | --- | --- | --- |");
        for n in [1usize, 2, 4] {
            let t = Instant::now();
            let handles: Vec<_> = (0..n).map(|_| tokio::spawn(pull(copts.clone(), addr.clone()))).collect();
            let mut per = Vec::new();
            let mut bytes = 0u64;
            for h in handles {
                let (b, s) = h.await.unwrap();
                bytes += b;
                per.push(b as f64 / s / 1e9);
            }
            let wall = t.elapsed().as_secs_f64();
            println!(
                "| {n} | {wall:.3} | {:.2} | {:.2} |",
                bytes as f64 / wall / 1e9,
                per.iter().sum::<f64>() / per.len() as f64
            );
        }
        let _ = stop_tx.send(());
        let _ = srv.await;
    });
}
