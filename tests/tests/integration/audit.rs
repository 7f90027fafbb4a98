//! The audit trails as records: every call lands in the gateway's hash-chained file
//! whatever the log level (the tests run at `warn`), and `tongban audit verify` finds an
//! edited, a deleted and a reordered record; each trail ends with a checkpoint signed
//! by its writer's certificate, which shows records cut off the end; nodes keep a trail
//! of what they accepted and handed over.

#![allow(clippy::unwrap_used)]

use std::{path::Path, process::Command, time::Duration};

use tongban_kit::testing::{eventually, medical_filing, start};

fn verify(file: &Path) -> (bool, String) {
    verify_with(file, &[])
}

fn verify_with(file: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tongban_kit::testing::cli_binary())
        .args(["audit", "verify"])
        .arg(file)
        .args(args)
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

/// The head a checkpoint record states, from the trail's last checkpoint line.
fn last_checkpoint(trail: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(trail).unwrap();
    let line = text
        .lines()
        .rfind(|l| l.contains("\t{\"checkpoint\":"))
        .expect("a checkpoint in the trail");
    let json: serde_json::Value =
        serde_json::from_str(line.splitn(3, '\t').nth(2).unwrap()).unwrap();
    let c = &json["checkpoint"];
    (
        c["covers"].as_u64().unwrap(),
        c["head"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trails_end_signed_and_nodes_keep_their_own() {
    let t = start(&["310000", "440000"]).await;
    let n31 = t.fed.node("31").unwrap();
    for resident in t.residents("44").iter().take(2) {
        let r = n31.portal.file(&medical_filing(resident)).await.unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let node_trail = t.dir.path().join("node-44-audit.log");
    eventually(
        Duration::from_secs(20),
        "deliveries in 44's trail",
        || async {
            let text = std::fs::read_to_string(&node_trail).ok()?;
            (text.matches("\"method\":\"DeliverApplication\"").count() >= 2).then_some(())
        },
    )
    .await;
    let residents: Vec<_> = t.residents("44").into_iter().take(2).collect();
    let tongban_kit::testing::TestFederation { fed, dir } = t;
    // Stopping writes each trail's last checkpoint.
    fed.shutdown().await;
    let ca = dir.path().join("pki/ca.pem");
    let ca = ca.to_str().unwrap();
    let trails = [
        dir.path().join("gateway-audit.log"),
        dir.path().join("node-31-audit.log"),
        node_trail.clone(),
    ];
    for trail in &trails {
        let (ok, text) = verify_with(trail, &["--ca", ca]);
        assert!(ok, "{}: {text}", trail.display());
        assert!(
            text.contains("signed checkpoints hold (signers' certificates checked against the CA"),
            "{text}"
        );
        let content = std::fs::read_to_string(trail).unwrap();
        for resident in &residents {
            assert!(
                !content.contains(resident.id.as_str()),
                "an ID number in {}",
                trail.display()
            );
            assert!(
                !content.contains(&resident.name),
                "a name in {}",
                trail.display()
            );
        }
    }
    let filed = std::fs::read_to_string(&trails[1]).unwrap();
    assert_eq!(filed.matches("\"event\":\"filed\"").count(), 2, "{filed}");
    assert!(filed.contains("\"event\":\"handed_over\""), "{filed}");
    assert!(
        std::fs::read_to_string(&node_trail)
            .unwrap()
            .contains("\"signer\":\"spiffe://tongban/region/44\"")
    );

    // Records cut off the end, checkpoint and all: a valid shorter chain, but not the
    // one whose head the writer signed (and logged).
    let (covers, head) = last_checkpoint(&trails[0]);
    let cut = tampered(&trails[0], "cut", |l| l.truncate(l.len() - 2));
    let (ok, text) = verify_with(&cut, &["--checkpoint", &format!("{covers}:{head}")]);
    assert!(!ok && text.contains("cut off the end"), "{text}");
    let (ok, text) = verify_with(&trails[0], &["--checkpoint", &format!("{covers}:{head}")]);
    assert!(ok, "{text}");
    // A trail signed by a stranger to the federation is refused with the CA.
    let stranger = tongban_kit::testing::foreign_identity(
        &dir.path().join("stranger"),
        &tongban_runtime::trust::identity::PeerIdentity::Gateway,
    );
    let (ok, text) = verify_with(&trails[0], &["--ca", stranger.ca.to_str().unwrap()]);
    assert!(!ok && text.contains("not the federation's"), "{text}");
}
