//! Replays the committed fuzz seeds (and every input a fuzz run saved as a crash or
//! finding under `fuzz/seeds/`) through the same bodies `cargo fuzz` runs, on stable:
//! a regression in a parser fails the ordinary test suite, not only a fuzz run.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../../../fuzz/src/bodies.rs"]
mod bodies;

use std::path::{Path, PathBuf};

fn seeds(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/seeds")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, body: fn(&[u8])) {
    let files = seeds(target);
    assert!(files.len() >= 5, "{target}: only {} seeds", files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| body(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
    }
}

#[test]
fn resident_id_seeds() {
    replay("resident_id", bodies::resident_id);
}

#[test]
fn portal_filing_seeds() {
    replay("portal_filing", bodies::portal_filing);
}

#[test]
fn gateway_call_seeds() {
    replay("gateway_call", bodies::gateway_call);
}

#[test]
fn license_seeds() {
    replay("license", bodies::license);
}

#[test]
fn license_id_seeds() {
    replay("license_id", bodies::license_id);
}
