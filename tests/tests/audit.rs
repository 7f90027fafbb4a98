//! The gateway's audit trail as a record: every call lands in the hash-chained file
//! whatever the log level (the tests run at `warn`), and `tongban audit verify` finds an
//! edited, a deleted and a reordered record.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command, time::Duration};

use tongban_tests::{eventually, medical_filing, start};

fn verify(file: &Path) -> (bool, String) {
    let out = Command::new(tongban_tests::cli_binary())
        .args(["audit", "verify"])
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A copy of the trail with its lines changed by `edit`.
fn tampered(trail: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> std::path::PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(trail)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let copy = trail.with_file_name(format!("tampered-{name}.log"));
    std::fs::write(&copy, lines.join("\n") + "\n").unwrap();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trail_records_every_call_and_verify_finds_tampering() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    for resident in t.residents("44").iter().take(3) {
        let r = n31.portal.file(&medical_filing(resident)).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let trail = t.dir.path().join("gateway-audit.log");
    // Lookups and deliveries of three filings: at least six records, written by batch.
    let records = eventually(Duration::from_secs(20), "records in the trail", || async {
        let text = std::fs::read_to_string(&trail).ok()?;
        let delivered = text.matches("\"method\":\"DeliverApplication\"").count();
        (delivered >= 3).then_some(text.lines().count())
    })
    .await;
    let (ok, text) = verify(&trail);
    assert!(ok, "{text}");
    assert!(text.contains("chain intact"), "{text}");
    // Records name parties and keys, never the applicant.
    let content = std::fs::read_to_string(&trail).unwrap();
    for resident in t.residents("44").iter().take(3) {
        assert!(
            !content.contains(resident.id.as_str()),
            "an ID number in the trail"
        );
        assert!(!content.contains(&resident.name), "a name in the trail");
    }

    let edited = tampered(&trail, "edited", |l| {
        l[1] = l[1].replace("\"caller\":\"31\"", "\"caller\":\"11\"")
    });
    let deleted = tampered(&trail, "deleted", |l| {
        l.remove(1);
    });
    let reordered = tampered(&trail, "reordered", |l| l.swap(1, 2));
    for (file, expect) in [
        (&edited, "was edited"),
        (&deleted, "missing"),
        (&reordered, "out of order"),
    ] {
        let (ok, text) = verify(file);
        assert!(!ok, "{} verified: {text}", file.display());
        assert!(text.contains(expect) && text.contains("line 2"), "{text}");
    }
    println!("{records} records in the trail; edited, deleted and reordered copies refused");
    t.shutdown().await;
}
