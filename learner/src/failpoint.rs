//! Named places in the learner where a fault test can hold it still, so that a SIGKILL lands
//! exactly there (mid checkpoint write, mid weight stream) instead of wherever a timer happens to
//! fall. `LASER_FAILPOINTS="name=pause_ms:N,…"` pauses N ms at each hit of `name`, after logging
//! `failpoint hit name=…` (what the test waits for). Unset, a hit costs one look-up in an empty map.
//! Names: [`CHECKPOINT_WRITE`], [`WEIGHTS_STREAM`].

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

/// In a checkpoint's temporary directory, after the model and optimiser files, before
/// `trainer_state.json` and the completion marker.
pub const CHECKPOINT_WRITE: &str = "checkpoint_write";
/// In a weight stream to an actor, after the manifest chunk, before the weight bytes.
pub const WEIGHTS_STREAM: &str = "weights_stream";

pub const ENV: &str = "LASER_FAILPOINTS";

/// The pause configured for `name`, if any (logged at the hit).
pub fn pause(name: &str) -> Option<Duration> {
    static POINTS: OnceLock<HashMap<String, Duration>> = OnceLock::new();
    let points = POINTS.get_or_init(|| parse(&std::env::var(ENV).unwrap_or_default()));
    let d = points.get(name).copied()?;
    tracing::warn!(name, pause_ms = d.as_millis() as u64, "failpoint hit");
    Some(d)
}

/// Blocks the calling thread at failpoint `name` if it is configured.
pub fn hit(name: &str) {
    if let Some(d) = pause(name) {
        std::thread::sleep(d);
    }
}

/// `name=pause_ms:N` entries separated by commas; a malformed entry is reported and ignored (a
/// test hook must not take a production learner down).
fn parse(spec: &str) -> HashMap<String, Duration> {
    let mut points = HashMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(name, action)| {
            let ms = action.strip_prefix("pause_ms:")?.parse::<u64>().ok()?;
            Some((name.trim().to_string(), Duration::from_millis(ms)))
        });
        match parsed {
            Some((name, d)) => {
                points.insert(name, d);
            }
            None => eprintln!("{ENV}: ignoring {entry:?} (expected name=pause_ms:N)"),
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pauses_and_ignores_malformed_entries() {
        let p = parse("checkpoint_write=pause_ms:1500, weights_stream=pause_ms:20,bad,x=kill");
        assert_eq!(p.len(), 2);
        assert_eq!(p[CHECKPOINT_WRITE], Duration::from_millis(1500));
        assert_eq!(p[WEIGHTS_STREAM], Duration::from_millis(20));
        assert!(parse("").is_empty());
    }
}
