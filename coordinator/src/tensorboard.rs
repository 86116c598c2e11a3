//! TensorBoard event files under `run_dir/tb/`: every numeric field of each metrics.jsonl row as
//! a `train/<field>` scalar and every evaluation row as `eval/<field>` scalars, so
//! `tensorboard --logdir RUN_DIR/tb` watches a run. The format is TensorFlow's documented one:
//! `Event` protobufs (encoded with prost from the field numbers of tensorflow/core/util/event.proto
//! and summary.proto) in TFRecord framing (length, masked CRC-32C of the length, data, masked
//! CRC-32C of the data). Each (re)start writes a new file that opens with a `SessionLog START`
//! at the step it continues from, which is how TensorBoard drops the points a rolled-back run
//! redoes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use prost::Message;

/// `run_dir/tb`: the `--logdir` of a run.
pub const TB_DIR: &str = "tb";

#[derive(Clone, PartialEq, Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "6")]
    pub session_log: Option<SessionLog>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SessionLog {
    /// 1 = START.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

const SESSION_START: i32 = 1;

/// TFRecord's checksum: CRC-32C, rotated and offset so that a CRC of CRCs stays well mixed.
fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its masked CRC, the data, its masked CRC.
pub fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    w.write_all(&len)?;
    w.write_all(&masked_crc(&len).to_le_bytes())?;
    w.write_all(data)?;
    w.write_all(&masked_crc(data).to_le_bytes())
}

/// Every record of a TFRecord file, each checksum verified; an error names the record.
pub fn read_records(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let bytes = std::fs::read(path)?;
    let bad = |i: usize, what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: record {i}: {what}", path.display()),
        )
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let i = out.len();
        let head = bytes
            .get(at..at + 12)
            .ok_or_else(|| bad(i, "torn header"))?;
        let len_bytes: [u8; 8] = head[..8].try_into().expect("8 bytes");
        if u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) != masked_crc(&len_bytes) {
            return Err(bad(i, "length checksum mismatch"));
        }
        let len = u64::from_le_bytes(len_bytes) as usize;
        let data = bytes
            .get(at + 12..at + 12 + len)
            .ok_or_else(|| bad(i, "torn data"))?;
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .ok_or_else(|| bad(i, "torn data checksum"))?;
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != masked_crc(data) {
            return Err(bad(i, "data checksum mismatch"));
        }
        out.push(data.to_vec());
        at += 16 + len;
    }
    Ok(out)
}

/// Every scalar of an event file as (step, tag, value), in file order; session starts as
/// (step, "", NaN). Checksums are verified.
pub fn read_scalars(path: &Path) -> std::io::Result<Vec<(i64, String, f32)>> {
    let mut out = Vec::new();
    for (i, r) in read_records(path)?.iter().enumerate() {
        let e = Event::decode(r.as_slice()).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: record {i}: {err}", path.display()),
            )
        })?;
        if e.session_log.is_some() {
            out.push((e.step, String::new(), f32::NAN));
        }
        for v in e.summary.map(|s| s.value).unwrap_or_default() {
            out.push((e.step, v.tag, v.simple_value.unwrap_or(f32::NAN)));
        }
    }
    Ok(out)
}

/// The numeric leaves of a JSON row, nested objects joined with `/` (arrays are skipped: they
/// are curves, not scalars).
pub fn scalars(prefix: &str, value: &serde_json::Value) -> Vec<(String, f64)> {
    fn walk(path: String, v: &serde_json::Value, out: &mut Vec<(String, f64)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    walk(format!("{path}/{k}"), v, out);
                }
            }
            serde_json::Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.push((path, x));
                }
            }
            serde_json::Value::Bool(b) => out.push((path, f64::from(u8::from(*b)))),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(prefix.to_string(), value, &mut out);
    out
}

/// Appends events to one `events.out.tfevents.*` file of `run_dir/tb`.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// A new event file for a run (re)starting at `step`.
    pub fn open(run_dir: &Path, step: u64) -> std::io::Result<Self> {
        let dir = run_dir.join(TB_DIR);
        std::fs::create_dir_all(&dir)?;
        let now = crate::runner::unix_now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        // The pid keeps two starts within one second apart.
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}",
            now as u64,
            std::process::id()
        ));
        let mut w = Self {
            out: BufWriter::new(File::create(&path)?),
            path,
        };
        w.event(&Event {
            wall_time: now,
            file_version: Some("brain.Event:2".into()),
            ..Default::default()
        })?;
        w.event(&Event {
            wall_time: now,
            step: step as i64,
            session_log: Some(SessionLog {
                status: SESSION_START,
            }),
            ..Default::default()
        })?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn event(&mut self, e: &Event) -> std::io::Result<()> {
        write_record(&mut self.out, &e.encode_to_vec())?;
        // Flushed per event: TensorBoard tails the file while the run goes on.
        self.out.flush()
    }

    /// One event holding `values` as scalars at `step`.
    pub fn scalars(
        &mut self,
        step: u64,
        wall_time: f64,
        values: &[(String, f64)],
    ) -> std::io::Result<()> {
        self.event(&Event {
            wall_time,
            step: step as i64,
            summary: Some(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.clone(),
                        simple_value: Some(*v as f32),
                    })
                    .collect(),
            }),
            ..Default::default()
        })
    }

    /// A new session from `step` (a restore): TensorBoard drops the later points it had.
    pub fn restart(&mut self, step: u64) -> std::io::Result<()> {
        self.event(&Event {
            wall_time: crate::runner::unix_now(),
            step: step as i64,
            session_log: Some(SessionLog {
                status: SESSION_START,
            }),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_crc32c_masked_as_tfrecord_specifies() {
        // CRC-32C's check value, then TFRecord's mask: rotate right by 15, add 0xa282ead8.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn events_round_trip_through_the_record_framing() {
        let dir = std::env::temp_dir().join(format!("laser-tb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut w = EventWriter::open(&dir, 0).unwrap();
        let row = serde_json::json!({"step": 1, "accuracy": 0.5, "report": {"maj@8": 0.25}, "curve": [1, 2]});
        w.scalars(1, 10.0, &scalars("train", &row)).unwrap();
        let records = read_records(w.path()).unwrap();
        let events: Vec<Event> = records
            .iter()
            .map(|r| Event::decode(r.as_slice()).unwrap())
            .collect();
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(
            events[1].session_log.as_ref().unwrap().status,
            SESSION_START
        );
        let s = events[2].summary.as_ref().unwrap();
        let tags: Vec<(&str, f32)> = s
            .value
            .iter()
            .map(|v| (v.tag.as_str(), v.simple_value.unwrap()))
            .collect();
        assert_eq!(
            tags,
            [
                ("train/accuracy", 0.5),
                ("train/report/maj@8", 0.25),
                ("train/step", 1.0)
            ]
        );
        // A flipped byte is caught.
        let mut bytes = std::fs::read(w.path()).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(w.path(), bytes).unwrap();
        assert!(
            read_records(w.path())
                .unwrap_err()
                .to_string()
                .contains("record 2")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
