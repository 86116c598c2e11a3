//! The weight data plane's payload: named f32 tensors packed row-major little-endian into one
//! buffer, described by a manifest, sent as CRC-checked chunks and reassembled on the receiver.
//! Model-agnostic on purpose: the learner and the actors convert to and from their model's
//! tensors (laser-model's `WeightMap`).

use bytes::Bytes;

use crate::v1::{TensorInfo, WeightChunk, WeightData, WeightManifest, weight_chunk};

/// Default chunk size: large enough to amortise per-message cost, small against the size limit.
pub const DEFAULT_CHUNK_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WeightError {
    #[error("weight stream: expected the manifest first, got a data chunk")]
    NoManifest,
    #[error("weight stream: second manifest (policy version {0})")]
    DuplicateManifest(u64),
    #[error("weight stream: chunk {index} has policy version {got}, the manifest says {expected}")]
    VersionMismatch { index: u32, got: u64, expected: u64 },
    #[error("weight stream: chunk {got} arrived where chunk {expected} was due")]
    OutOfOrder { got: u32, expected: u32 },
    #[error(
        "weight stream: chunk {index} at offset {offset} with {len} bytes overruns the {total}-byte payload"
    )]
    Overrun {
        index: u32,
        offset: u64,
        len: usize,
        total: u64,
    },
    #[error("weight stream: chunk {index} checksum {got:#010x} != {expected:#010x}")]
    ChunkChecksum { index: u32, got: u32, expected: u32 },
    #[error("weight stream: payload checksum {got:#010x} != {expected:#010x} (version {version})")]
    PayloadChecksum {
        version: u64,
        got: u32,
        expected: u32,
    },
    #[error("weight stream: ended after {got} of {total} bytes")]
    Truncated { got: u64, total: u64 },
    #[error("weight manifest: tensor {name:?} {detail}")]
    BadTensor { name: String, detail: String },
    #[error("weight stream: message without a body")]
    Empty,
}

/// `(name, shape, row-major data)`.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A packed payload ready to send: built once per policy version and shared by every stream.
#[derive(Debug, Clone)]
pub struct WeightPayload {
    pub policy_version: u64,
    pub tensors: Vec<TensorInfo>,
    pub bytes: Bytes,
    pub crc32: u32,
}

impl WeightPayload {
    /// Packs `(name, shape, data)` tensors in the given order.
    pub fn pack<'a>(
        policy_version: u64,
        tensors: impl IntoIterator<Item = (&'a str, &'a [usize], &'a [f32])>,
    ) -> Self {
        let mut infos = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for (name, shape, data) in tensors {
            let offset = buf.len() as u64;
            buf.reserve(data.len() * 4);
            for v in data {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            infos.push(TensorInfo {
                name: name.to_string(),
                shape: shape.iter().map(|&d| d as u64).collect(),
                offset,
                len: (data.len() * 4) as u64,
            });
        }
        let crc32 = crc32fast::hash(&buf);
        Self {
            policy_version,
            tensors: infos,
            bytes: Bytes::from(buf),
            crc32,
        }
    }

    pub fn total_chunks(&self, chunk_bytes: usize) -> u32 {
        self.bytes.len().div_ceil(chunk_bytes.max(1)) as u32
    }

    /// The manifest followed by the data chunks. Chunks share the payload's buffer (no copy).
    pub fn chunks(&self, chunk_bytes: usize) -> impl Iterator<Item = WeightChunk> + Send + 'static {
        let chunk_bytes = chunk_bytes.max(1);
        let version = self.policy_version;
        let manifest = WeightChunk {
            policy_version: version,
            body: Some(weight_chunk::Body::Manifest(WeightManifest {
                policy_version: version,
                total_bytes: self.bytes.len() as u64,
                total_chunks: self.total_chunks(chunk_bytes),
                payload_crc32: self.crc32,
                tensors: self.tensors.clone(),
            })),
        };
        let bytes = self.bytes.clone();
        let n = self.total_chunks(chunk_bytes) as usize;
        std::iter::once(manifest).chain((0..n).map(move |i| {
            let start = i * chunk_bytes;
            let end = (start + chunk_bytes).min(bytes.len());
            let data = bytes.slice(start..end);
            WeightChunk {
                policy_version: version,
                body: Some(weight_chunk::Body::Data(WeightData {
                    index: i as u32,
                    offset: start as u64,
                    crc32: crc32fast::hash(&data),
                    bytes: data,
                })),
            }
        }))
    }

    /// Unpacks into `(name, shape, data)` tensors, checking the manifest against the buffer.
    pub fn unpack(&self) -> Result<Vec<NamedTensor>, WeightError> {
        let mut out = Vec::with_capacity(self.tensors.len());
        for t in &self.tensors {
            let bad = |detail: String| WeightError::BadTensor {
                name: t.name.clone(),
                detail,
            };
            let shape: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
            let numel: usize = shape.iter().product();
            if t.len != (numel * 4) as u64 {
                return Err(bad(format!("has {} bytes for shape {shape:?}", t.len)));
            }
            let end = t
                .offset
                .checked_add(t.len)
                .filter(|&e| e <= self.bytes.len() as u64);
            let Some(end) = end else {
                return Err(bad(format!(
                    "lies outside the {}-byte payload",
                    self.bytes.len()
                )));
            };
            let raw = &self.bytes[t.offset as usize..end as usize];
            let data = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            out.push((t.name.clone(), shape, data));
        }
        Ok(out)
    }
}

/// Receiver side: feeds chunks in order, yields the verified payload at the end.
#[derive(Debug, Default)]
pub struct WeightAssembler {
    manifest: Option<WeightManifest>,
    buf: Vec<u8>,
    next_index: u32,
}

impl WeightAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn manifest(&self) -> Option<&WeightManifest> {
        self.manifest.as_ref()
    }

    pub fn received_bytes(&self) -> u64 {
        self.buf.len() as u64
    }

    pub fn push(&mut self, chunk: WeightChunk) -> Result<(), WeightError> {
        match chunk.body.ok_or(WeightError::Empty)? {
            weight_chunk::Body::Manifest(m) => {
                if self.manifest.is_some() {
                    return Err(WeightError::DuplicateManifest(m.policy_version));
                }
                self.buf = Vec::with_capacity(m.total_bytes as usize);
                self.manifest = Some(m);
                Ok(())
            }
            weight_chunk::Body::Data(d) => {
                let m = self.manifest.as_ref().ok_or(WeightError::NoManifest)?;
                if chunk.policy_version != m.policy_version {
                    return Err(WeightError::VersionMismatch {
                        index: d.index,
                        got: chunk.policy_version,
                        expected: m.policy_version,
                    });
                }
                if d.index != self.next_index || d.offset != self.buf.len() as u64 {
                    return Err(WeightError::OutOfOrder {
                        got: d.index,
                        expected: self.next_index,
                    });
                }
                if d.offset + d.bytes.len() as u64 > m.total_bytes {
                    return Err(WeightError::Overrun {
                        index: d.index,
                        offset: d.offset,
                        len: d.bytes.len(),
                        total: m.total_bytes,
                    });
                }
                let got = crc32fast::hash(&d.bytes);
                if got != d.crc32 {
                    return Err(WeightError::ChunkChecksum {
                        index: d.index,
                        got,
                        expected: d.crc32,
                    });
                }
                self.buf.extend_from_slice(&d.bytes);
                self.next_index += 1;
                Ok(())
            }
        }
    }

    /// The NCCL path: the manifest came over gRPC, the bytes in one broadcast. Takes them whole;
    /// [`finish`](Self::finish) then checks length and the payload checksum as for a stream.
    pub fn push_payload(&mut self, bytes: Vec<u8>) -> Result<(), WeightError> {
        let m = self.manifest.as_ref().ok_or(WeightError::NoManifest)?;
        if !self.buf.is_empty() || self.next_index != 0 {
            return Err(WeightError::OutOfOrder {
                got: 0,
                expected: self.next_index,
            });
        }
        if bytes.len() as u64 > m.total_bytes {
            return Err(WeightError::Overrun {
                index: 0,
                offset: 0,
                len: bytes.len(),
                total: m.total_bytes,
            });
        }
        self.buf = bytes;
        self.next_index = m.total_chunks;
        Ok(())
    }

    /// Ends the stream: checks completeness and the whole-payload checksum.
    pub fn finish(self) -> Result<WeightPayload, WeightError> {
        let m = self.manifest.ok_or(WeightError::NoManifest)?;
        if self.buf.len() as u64 != m.total_bytes {
            return Err(WeightError::Truncated {
                got: self.buf.len() as u64,
                total: m.total_bytes,
            });
        }
        let got = crc32fast::hash(&self.buf);
        if got != m.payload_crc32 {
            return Err(WeightError::PayloadChecksum {
                version: m.policy_version,
                got,
                expected: m.payload_crc32,
            });
        }
        Ok(WeightPayload {
            policy_version: m.policy_version,
            tensors: m.tensors,
            bytes: Bytes::from(self.buf),
            crc32: got,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_payload_after_a_manifest_is_checked_like_a_stream() {
        let p = sample();
        let manifest = p.chunks(1 << 20).next().unwrap();
        let mut asm = WeightAssembler::new();
        asm.push(manifest.clone()).unwrap();
        asm.push_payload(p.bytes.to_vec()).unwrap();
        let got = asm.finish().unwrap();
        assert_eq!(got.bytes, p.bytes);

        let mut corrupt = p.bytes.to_vec();
        corrupt[3] ^= 1;
        let mut asm = WeightAssembler::new();
        asm.push(manifest.clone()).unwrap();
        asm.push_payload(corrupt).unwrap();
        assert!(matches!(
            asm.finish(),
            Err(WeightError::PayloadChecksum { .. })
        ));

        let mut asm = WeightAssembler::new();
        assert!(matches!(
            asm.push_payload(vec![0; 4]),
            Err(WeightError::NoManifest)
        ));
        asm.push(manifest).unwrap();
        asm.push_payload(p.bytes[..8].to_vec()).unwrap();
        assert!(matches!(asm.finish(), Err(WeightError::Truncated { .. })));
    }

    fn sample() -> WeightPayload {
        let a: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = vec![-1.0, f32::MIN_POSITIVE, 3.25];
        WeightPayload::pack(
            7,
            [
                ("a", &[10usize, 100][..], &a[..]),
                ("b", &[3usize][..], &b[..]),
            ],
        )
    }

    #[test]
    fn round_trip_through_chunks_restores_every_tensor_bit_for_bit() {
        let p = sample();
        for chunk_bytes in [1, 7, 1000, 4012, 1 << 20] {
            let mut asm = WeightAssembler::new();
            for c in p.chunks(chunk_bytes) {
                asm.push(c).unwrap();
            }
            let got = asm.finish().unwrap();
            assert_eq!(got.policy_version, 7);
            let t = got.unpack().unwrap();
            assert_eq!(t[0].0, "a");
            assert_eq!(t[0].1, vec![10, 100]);
            assert_eq!(t[0].2[999], 499.5);
            assert_eq!(t[1].2, vec![-1.0, f32::MIN_POSITIVE, 3.25]);
        }
    }

    #[test]
    fn corrupt_missing_and_reordered_chunks_are_named() {
        let p = sample();
        let chunks: Vec<_> = p.chunks(1000).collect();
        // Flip one byte of data chunk 2 but keep its recorded CRC.
        let Some(weight_chunk::Body::Data(d2)) = chunks[3].body.clone() else {
            panic!("chunk 3 is data")
        };
        let mut flipped = d2.bytes.to_vec();
        flipped[5] ^= 1;
        let mut asm = WeightAssembler::new();
        for c in &chunks[..3] {
            asm.push(c.clone()).unwrap();
        }
        let corrupt = WeightChunk {
            policy_version: 7,
            body: Some(weight_chunk::Body::Data(WeightData {
                bytes: Bytes::from(flipped.clone()),
                ..d2.clone()
            })),
        };
        assert_eq!(
            asm.push(corrupt).unwrap_err(),
            WeightError::ChunkChecksum {
                index: 2,
                got: crc32fast::hash(&flipped),
                expected: d2.crc32
            }
        );
        // Skip a chunk.
        let mut asm = WeightAssembler::new();
        asm.push(chunks[0].clone()).unwrap();
        assert_eq!(
            asm.push(chunks[2].clone()).unwrap_err(),
            WeightError::OutOfOrder {
                got: 1,
                expected: 0
            }
        );
        // Stop early.
        let mut asm = WeightAssembler::new();
        asm.push(chunks[0].clone()).unwrap();
        asm.push(chunks[1].clone()).unwrap();
        assert!(matches!(
            asm.finish().unwrap_err(),
            WeightError::Truncated { got: 1000, .. }
        ));
        // Data before manifest.
        let mut asm = WeightAssembler::new();
        assert_eq!(
            asm.push(chunks[1].clone()).unwrap_err(),
            WeightError::NoManifest
        );
    }
}
