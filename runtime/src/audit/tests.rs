//! Tests of the trail: its chain, checkpoints, gap markers and stop.

use std::path::{Path, PathBuf};

use crate::audit::{
    chain::{ChainWriter, Fsync, chain_hash},
    checkpoint::{self, Anchors, CheckpointSigner},
    trail::{AuditTrail, TrailSettings},
    verify::{ChainBreak, verify},
};

fn trail(name: &str, records: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("trail.log");
    let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
    for i in 0..records {
        w.append(&format!("{{\"call\":{i}}}")).unwrap();
    }
    w.commit().unwrap();
    path
}

fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    edit(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn an_intact_trail_verifies_and_a_reopened_one_continues_its_chain() {
    let path = trail("intact", 5);
    assert_eq!(verify(&path, None, None).map(|v| v.records), Ok(5));
    let mut w = ChainWriter::open(&path, Fsync::Never).unwrap();
    w.append("{\"call\":\"after restart\"}").unwrap();
    w.commit().unwrap();
    assert_eq!(verify(&path, None, None).map(|v| v.records), Ok(6));
}

#[test]
fn edits_deletions_and_reordering_are_found() {
    let path = trail("edited", 5);
    rewrite(&path, |l| l[2] = l[2].replace("\"call\":2", "\"call\":9"));
    assert_eq!(
        verify(&path, None, None).map(|v| v.records),
        Err(ChainBreak::Edited { line: 3, seq: 3 })
    );

    let path = trail("deleted", 5);
    rewrite(&path, |l| {
        l.remove(1);
    });
    assert_eq!(
        verify(&path, None, None).map(|v| v.records),
        Err(ChainBreak::Missing {
            line: 2,
            from: 2,
            to: 2
        })
    );

    let path = trail("reordered", 5);
    rewrite(&path, |l| l.swap(1, 2));
    assert_eq!(
        verify(&path, None, None).map(|v| v.records),
        Err(ChainBreak::Reordered {
            line: 2,
            seq: 3,
            expected: 2
        })
    );

    // Renumbered to hide a deletion: the hashes no longer chain.
    let path = trail("renumbered", 5);
    rewrite(&path, |l| {
        l.remove(1);
        for (i, line) in l.iter_mut().enumerate() {
            let rest = line.split_once('\t').unwrap().1.to_owned();
            *line = format!("{}\t{rest}", i + 1);
        }
    });
    assert_eq!(
        verify(&path, None, None).map(|v| v.records),
        Err(ChainBreak::Edited { line: 2, seq: 2 })
    );
}

/// The records of the trail at `path` once there are `n`, or after 2 s.
fn records_within_2s(path: &Path, n: u64) -> u64 {
    let mut found = 0;
    for _ in 0..200 {
        found = verify(path, None, None).map(|v| v.records).unwrap_or(0);
        if found == n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    found
}

#[test]
fn a_trail_thread_writes_everything_queued() {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-thread", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("trail.log");
    let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), None).unwrap();
    for i in 0..1000 {
        trail.record(format!("{{\"call\":{i}}}"));
    }
    drop(trail);
    assert_eq!(records_within_2s(&path, 1000), 1000);
}

#[test]
fn records_are_one_line_each_and_reach_the_disk_within_their_batch_window() {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-window", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = dir.join("trail.log");
    let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), None).unwrap();
    // JSON may break a line between tokens; the trail keeps a record on one line.
    trail.record("{\"a\":\r\n1}".into());
    trail.record_with(|lines| lines.extend_from_slice(br#"{"b":2}"#));
    // Written while the handle lives (no stop): within the window, polled here.
    assert_eq!(records_within_2s(&path, 2), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let jsons: Vec<&str> = text
        .lines()
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .collect();
    assert_eq!(jsons, ["{\"a\":  1}", r#"{"b":2}"#]);
    drop(trail);
}

/// A signer with a certificate from a fresh CA in `dir`; the CA's anchors.
fn signer(dir: &Path) -> (CheckpointSigner, Anchors) {
    crate::trust::tls::install_crypto_provider();
    let ca = crate::trust::pki::DevCa::generate("trail test CA").unwrap();
    ca.write(dir).unwrap();
    let id = crate::trust::identity::PeerIdentity::Gateway;
    let leaf = ca.issue(&id, std::time::Duration::from_secs(600)).unwrap();
    let (cert, key) = crate::trust::pki::write_leaf(dir, &id, &leaf).unwrap();
    let anchors = checkpoint::anchors(&dir.join("ca.pem")).unwrap();
    (CheckpointSigner::from_files(&cert, &key).unwrap(), anchors)
}

/// Rewrites every hash from the first record on, as someone who edits a record and
/// knows the chain's rule would.
fn rehash(lines: &mut [String]) {
    let mut prev = String::new();
    for line in lines.iter_mut() {
        let mut parts = line.splitn(3, '\t');
        let (seq, _, json) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        let seq: u64 = seq.parse().unwrap();
        let hash = chain_hash(&prev, seq, json);
        *line = format!("{seq}\t{hash}\t{json}");
        prev = hash;
    }
}

#[test]
fn checkpoints_are_signed_and_show_a_cut_or_a_rewrite() {
    let path = trail("checkpointed", 5);
    let dir = path.parent().unwrap().to_owned();
    let (signer, anchors) = signer(&dir);
    let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
    let (covers, head) = w.checkpoint(&signer).unwrap().unwrap();
    assert_eq!(covers, 5);
    assert!(
        w.checkpoint(&signer).unwrap().is_none(),
        "nothing new to sign"
    );
    w.append("{\"call\":5}").unwrap();
    w.append("{\"call\":6}").unwrap();
    w.commit().unwrap();
    drop(w);

    let v = verify(&path, Some(&anchors), Some((5, &head))).unwrap();
    assert_eq!(v.records, 8);
    assert_eq!(v.checkpoints, 1);
    assert_eq!(v.last_checkpoint, Some((5, head.clone())));
    assert!(v.signers.contains("spiffe://tongban/gateway"));

    // Cut before the checkpoint: a valid shorter chain, but the logged head is gone.
    rewrite(&path, |l| l.truncate(3));
    assert_eq!(
        verify(&path, Some(&anchors), Some((5, &head))),
        Err(ChainBreak::Truncated {
            records: 3,
            expected: 5
        })
    );

    // An edit with every hash recomputed: the signed head no longer matches.
    let path = trail("rewritten", 5);
    let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
    w.checkpoint(&signer).unwrap();
    drop(w);
    rewrite(&path, |l| {
        l[1] = l[1].replace("\"call\":1", "\"call\":7");
        rehash(l);
    });
    let broken = verify(&path, None, None).unwrap_err();
    assert!(
        matches!(&broken, ChainBreak::Checkpoint { line: 6, seq: 6, reason } if reason.contains("the trail has 5")),
        "{broken}"
    );

    // A checkpoint signed by a stranger's certificate holds alone, not with the CA.
    let stranger_dir = dir.join("stranger");
    std::fs::create_dir_all(&stranger_dir).unwrap();
    let (stranger, _) = self::signer(&stranger_dir);
    let path = trail("stranger", 2);
    let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
    w.checkpoint(&stranger).unwrap();
    drop(w);
    assert!(verify(&path, None, None).is_ok());
    let broken = verify(&path, Some(&anchors), None).unwrap_err();
    assert!(
        broken.to_string().contains("not the federation's"),
        "{broken}"
    );

    // A forged signature.
    rewrite(&path, |l| {
        let sig = l[2].rfind("\"signature\":\"").unwrap() + 13;
        let flipped = if &l[2][sig..sig + 1] == "0" { "1" } else { "0" };
        l[2].replace_range(sig..sig + 1, flipped);
        rehash(l);
    });
    let broken = verify(&path, None, None).unwrap_err();
    assert!(broken.to_string().contains("does not verify"), "{broken}");
}

#[test]
fn a_trail_is_written_by_one_process_at_a_time() {
    let path = trail("locked", 1);
    let _first = ChainWriter::open(&path, Fsync::Batch).unwrap();
    let second = ChainWriter::open(&path, Fsync::Batch).err().unwrap();
    assert!(second.to_string().contains("another process"), "{second}");
}

#[test]
fn the_writer_signs_a_last_checkpoint_when_it_stops() {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-signed", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (signer, anchors) = signer(&dir);
    let path = dir.join("trail.log");
    let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), Some(signer)).unwrap();
    for i in 0..10 {
        trail.record(format!("{{\"call\":{i}}}"));
    }
    drop(trail);
    let mut last = None;
    for _ in 0..200 {
        if let Ok(v) = verify(&path, Some(&anchors), None)
            && v.checkpoints == 1
        {
            last = v.last_checkpoint;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(last.map(|(covers, _)| covers), Some(10));
}

#[test]
fn a_full_queue_is_counted_and_stated_in_the_trail_which_still_verifies() {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-full", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (signer, anchors) = signer(&dir);
    let path = dir.join("trail.log");
    let mut settings = TrailSettings::at("unused");
    settings.fsync = Fsync::Always;
    // A queue of 8 and a writer that syncs every record: a burst cannot all fit.
    let trail = AuditTrail::start_with_queue(&path, &settings, Some(signer), 8).unwrap();
    let sent = 20_000u64;
    for i in 0..sent {
        trail.record(format!("{{\"call\":{i}}}"));
    }
    let dropped = trail.dropped();
    assert!(dropped > 0, "nothing dropped");
    assert!(trail.stop(std::time::Duration::from_secs(30)));
    let v = verify(&path, Some(&anchors), None).unwrap();
    assert!(v.gaps >= 1);
    assert_eq!(v.lost.dropped, dropped, "every drop is stated in the trail");
    assert_eq!(v.lost.unwritten, 0);
    // Every record sent is either in the trail or stated as dropped.
    assert_eq!(v.records, sent - dropped + v.gaps + v.checkpoints);
    assert!(crate::audit::writer::process_losses().0 >= dropped);
}

#[test]
fn stop_joins_the_writer_with_the_last_checkpoint_on_disk() {
    let dir = std::env::temp_dir().join(format!("tongban-audit-{}-stop", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (signer, anchors) = signer(&dir);
    let path = dir.join("trail.log");
    let trail = AuditTrail::start(&path, &TrailSettings::at("unused"), Some(signer)).unwrap();
    // Handles elsewhere (relay, handlers) still alive: stop does not wait for them.
    let elsewhere = trail.clone();
    for i in 0..100 {
        elsewhere.record(format!("{{\"call\":{i}}}"));
    }
    assert!(trail.stop(std::time::Duration::from_secs(5)));
    // Read at once, no polling: the thread has ended.
    let v = verify(&path, Some(&anchors), None).unwrap();
    assert_eq!(v.last_checkpoint.map(|(covers, _)| covers), Some(100));
    assert_eq!(v.records, 101);
    assert!(
        trail.stop(std::time::Duration::from_secs(1)),
        "a second stop is a no-op"
    );
    elsewhere.record("{\"late\":1}".into());
    assert_eq!(elsewhere.dropped(), 1, "a record after stop is counted");
}

#[test]
fn a_partial_last_line_is_removed_and_the_chain_continues() {
    let path = trail("torn", 3);
    let mut text = std::fs::read(&path).unwrap();
    text.extend_from_slice(b"4\tdeadbe");
    std::fs::write(&path, text).unwrap();
    let mut w = ChainWriter::open(&path, Fsync::Batch).unwrap();
    w.append("{\"call\":3}").unwrap();
    w.commit().unwrap();
    assert_eq!(verify(&path, None, None).map(|v| v.records), Ok(4));
}
