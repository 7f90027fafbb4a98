//! `tongban outbox`: a node's dead letters (outbox entries refused for good), and the
//! operator's two answers to one: replay it once its cause is fixed, or close it with a
//! reason the citizen reads. Talks to the node's operator listener with the operator's
//! certificate (see `tongban_node::operator`): listing needs the `viewer` role, replaying
//! and closing the `operator` role.

use anyhow::Context;
use serde_json::{Value, json};

use crate::operator::Target;

/// What to do with a node's dead letters.
#[derive(clap::Subcommand, Debug)]
pub enum Action {
    /// List them (the default).
    List,
    /// Send one again, with its idempotency key unchanged.
    Replay { id: i64 },
    /// Give one up; a delivery's case is rejected with this reason.
    Close {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

/// Runs `action` against the node `target` names.
pub async fn run(target: &Target, action: Option<Action>) -> anyhow::Result<()> {
    let client = target.client()?;
    let base = format!("https://{}", client.addr());
    let answer = match &action {
        None | Some(Action::List) => client.get("/outbox").await,
        Some(Action::Replay { id }) => {
            client
                .post_json(&format!("/outbox/{id}/replay"), &json!({}))
                .await
        }
        Some(Action::Close { id, reason }) => {
            client
                .post_json(&format!("/outbox/{id}/close"), &json!({ "reason": reason }))
                .await
        }
    }?;
    let body = answer.json();
    let message = |body: &Value| {
        body["error"]["message"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned)
    };
    anyhow::ensure!(
        answer.status == 200,
        "{base} answered {}: {}",
        answer.status,
        message(&body)
    );
    match action {
        None | Some(Action::List) => print_list(&body),
        Some(_) => {
            println!(
                "outbox entry {} {}",
                body["id"],
                body["state"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

fn print_list(body: &Value) -> anyhow::Result<()> {
    let dead = body["dead_letters"]
        .as_array()
        .context("the node's answer has no dead_letters")?;
    if dead.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    println!(
        "{:>6} {:<12} {:<26} {:<7} {:>8} {:>7}  error",
        "id", "kind", "case", "target", "attempts", "replays"
    );
    for d in dead {
        println!(
            "{:>6} {:<12} {:<26} {:<7} {:>8} {:>7}  {}",
            d["id"],
            d["kind"].as_str().unwrap_or("?"),
            d["case_number"].as_str().unwrap_or("?"),
            d["target_region"].as_str().unwrap_or("?"),
            d["attempts"],
            d["replays"],
            d["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
