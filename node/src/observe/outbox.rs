//! How an outbox attempt settled: counted by kind and result, and for a case filed here
//! its acknowledgement or refusal per home province; handed-over and dead-letter
//! entries audited; retries and dead letters logged.

use std::time::Duration;

use tongban_proto::contract::retry::Retry;

use crate::{
    context::NodeContext,
    store::{OutboxEntry, OutboxKind, now_ms},
};

/// How an attempt settled.
pub enum Settled<'a> {
    /// Handed over (recorded by the attempt itself).
    Done,
    /// Tried again after `delay`; `class` says whether time or an operator is awaited.
    Retry {
        error: &'a str,
        class: Retry,
        delay: Duration,
    },
    /// Refused for good: a dead letter for an operator.
    Dead { error: &'a str },
}

/// Records how the attempt at `entry` settled.
pub fn settled(ctx: &NodeContext, entry: &OutboxEntry, settled: &Settled<'_>) {
    count(ctx, entry, settled);
    match settled {
        Settled::Done => ctx.audit.outbox(entry, "handed_over"),
        Settled::Retry {
            error,
            class,
            delay,
        } => tracing::warn!(
            case = %entry.case_number,
            target = %entry.target_region,
            trace_id = %entry.trace.trace_id_hex(),
            attempts = entry.attempts + 1,
            retry_in_ms = delay.as_millis() as u64,
            class = class.as_str(),
            %error,
            "outbox delivery failed; will retry"
        ),
        Settled::Dead { error } => {
            tracing::error!(
                case = %entry.case_number,
                trace_id = %entry.trace.trace_id_hex(),
                target = %entry.target_region,
                outbox_id = entry.id,
                %error,
                "outbox entry refused for good: a dead letter until an operator \
                 replays or closes it"
            );
            ctx.audit.outbox(entry, "dead_letter");
        }
    }
}

/// Counts an attempt, and for a case filed here its acknowledgement or refusal.
fn count(ctx: &NodeContext, entry: &OutboxEntry, settled: &Settled<'_>) {
    let Some(metrics) = &ctx.metrics else {
        return;
    };
    let result = match settled {
        Settled::Done => "done",
        Settled::Retry {
            class: Retry::Configuration,
            ..
        } => "blocked",
        Settled::Retry { .. } => "retry",
        Settled::Dead { .. } => "dead",
    };
    metrics.outbox_attempt(entry.kind, result);
    let home = entry.applicant_home.as_deref().unwrap_or_default();
    match (entry.kind, settled) {
        (OutboxKind::Deliver | OutboxKind::LocalSubmit, Settled::Done) => {
            let age_ms = now_ms().saturating_sub(entry.filed_ms).max(0);
            metrics.accepted(
                home,
                &entry.target_region,
                Duration::from_millis(age_ms as u64),
            );
        }
        (OutboxKind::Deliver, Settled::Dead { .. }) => metrics.refused(home, &entry.target_region),
        _ => {}
    }
}
