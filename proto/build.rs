//! Compiles proto/laser/v1/*.proto with protox (pure Rust, no protoc binary) and tonic-prost-build,
//! and writes the encoded file descriptor set that tonic-reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "laser/v1/common.proto",
    "laser/v1/coordinator.proto",
    "laser/v1/actor.proto",
    "laser/v1/verifier.proto",
    "laser/v1/learner.proto",
    "laser/v1/monitor.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for p in PROTOS {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds_bytes = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("laser_descriptor.bin"), fds_bytes)?;
    tonic_prost_build::configure()
        // metrics.jsonl rows are StepMetrics: one struct for the file and the stream.
        .type_attribute(
            "laser.v1.StepMetrics",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]",
        )
        // Weight chunks slice one shared buffer instead of copying it per chunk.
        .bytes(".laser.v1.WeightData.bytes")
        .compile_fds(fds)?;
    Ok(())
}
