//! A revocation survives a crash between its two writes: the node revokes in its
//! register, then queues the publication in its store (two databases). Killed between
//! the two (a real abort of the node's process at that point), the revocation once
//! stayed in the register only and the federation went on recognizing the license; the
//! node now follows its register's own log of revocations, so the publication is queued
//! at the first turn after the restart.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use tongban_kit::{
    Member,
    testing::{TestFederation, eventually, processes, start_with},
};
use tongban_node::crash_point::{AFTER_REGISTER_REVOKE, CRASH_AT};
use tongban_proto::v1::VerdictOutcome;

use super::recognition::{client_at, license_of, lookup};

const WAIT: Duration = Duration::from_secs(30);

/// The outcome of a lookup of `license` for `holder`, asked by 31 at the gateway `url`.
async fn outcome_at_31(t: &TestFederation, url: &str, license: &str, holder: &str) -> i32 {
    let mut client = client_at(t, url, "31").await;
    let what = ("household_register", "household-transfer");
    lookup(&mut client, license, what.0, what.1, holder)
        .await
        .outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_cut_off_by_a_crash_is_published_after_the_restart() {
    let mut t = start_with(&["310000", "440000"], |spec| {
        spec.launch = processes("warn");
    })
    .await;
    let holder = t.residents("44")[4].id.as_str().to_owned();
    let license = license_of(&t, "44", &holder, "household_register").await;
    let url = format!("https://{}", t.fed.gateway().federation_addr);
    assert_eq!(
        outcome_at_31(&t, &url, &license, &holder).await,
        VerdictOutcome::Recognized as i32
    );

    // 44 dies between its register's revocation and the publication's queueing.
    let node = Member::Node("44".into());
    t.fed.stop(&node).await.unwrap();
    let crash = vec![(CRASH_AT.to_owned(), AFTER_REGISTER_REVOKE.to_owned())];
    t.fed.set_node_env("44", crash);
    t.fed.restart(&node).await.unwrap();
    let path = format!("/licenses/{license}/revoke");
    let reason = json!({"reason": "moved away"});
    let operator = t.fed.node("44").unwrap().operator.clone();
    let cut = operator.post_json(&path, &reason).await;
    assert!(
        cut.is_err(),
        "the node answered instead of crashing: {cut:?}"
    );
    assert!(
        t.fed
            .wait_exit(&node, Duration::from_secs(20))
            .await
            .unwrap()
    );
    // Nothing was published: the gateway still recognizes it (from its cache).
    assert_eq!(
        outcome_at_31(&t, &url, &license, &holder).await,
        VerdictOutcome::Recognized as i32
    );

    // Back without the crash point: the register's feed queues and publishes it.
    t.fed.set_node_env("44", Vec::new());
    t.fed.restart(&node).await.unwrap();
    eventually(
        WAIT,
        "the revocation published after the restart",
        || async {
            (outcome_at_31(&t, &url, &license, &holder).await == VerdictOutcome::Revoked as i32)
                .then_some(())
        },
    )
    .await;
    t.shutdown().await;
}
