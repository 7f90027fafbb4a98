//! Which failed attempts at a platform call are tried again, and after how long.
//!
//! Every call of the contract may be repeated: a take-over is idempotent by case
//! number (a repeat answers the first answer, and the adapter sends the case number as
//! its `Idempotency-Key`), the reads change nothing, and each other call keeps one
//! `Idempotency-Key` over all its attempts. So an attempt may be retried whenever its
//! failure says the platform did not (or may not have) handled it: it could not be
//! reached, it did not answer in time, or it answered `429`, `502`, `503` or `504`.
//! Any other answer — `400`, `401`, `404`, `409` … — is the platform's word and is
//! never retried.

use std::time::Duration;

use backon::ExponentialBuilder;
use reqwest::StatusCode;

/// The longest `Retry-After` the adapter honours; a longer one is left to the backoff
/// (and the caller's own schedule): the node does not sit on a call for minutes.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Why one attempt at a call failed in a way worth another attempt (see the module's
/// comment); every other outcome is an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No answer: the platform could not be reached (connection, TLS) — `sentence`
    /// says what is wrong, naming the certificate or CA for a TLS failure.
    Unreachable { sentence: String },
    /// No answer within the call's timeout.
    Timeout { after: Duration },
    /// An answer saying the platform cannot serve now.
    Busy {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
}

impl Failure {
    /// The wait the platform asked for, when it is short enough to honour.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy {
                retry_after: Some(wait),
                ..
            } if *wait <= MAX_RETRY_AFTER => Some(*wait),
            _ => None,
        }
    }

    /// A sentence for logs, errors and readiness; never personal data.
    pub fn sentence(&self) -> String {
        match self {
            Self::Unreachable { sentence } => sentence.clone(),
            Self::Timeout { after } => format!("no answer within {after:?}"),
            Self::Busy { status, .. } => format!("answered {status}"),
        }
    }
}

/// Whether an answer with `status` is a failure worth retrying (`429`, `502`, `503`,
/// `504`); every other answer, success or error, is the platform's word.
pub fn busy(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

/// `Retry-After` in seconds (the HTTP-date form is not honoured: a platform that
/// sends it gets the backoff).
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    value?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The backoff between attempts: from `initial`, doubling, with jitter so a fleet of
/// calls does not retry in step, at most `retries` more attempts.
pub fn backoff(initial: Duration, retries: u32) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(initial)
        .with_max_delay(initial.saturating_mul(16).max(initial))
        .with_factor(2.0)
        .with_max_times(retries as usize)
        .with_jitter()
}

/// The wait before the next attempt: the platform's `Retry-After` when it gave a short
/// one, else the backoff's; `None` (no more attempts) stays `None`.
pub fn next_wait(failure: &Failure, backoff: Option<Duration>) -> Option<Duration> {
    backoff.map(|wait| failure.retry_after().unwrap_or(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailability_answers_are_retried() {
        for status in [429, 502, 503, 504] {
            assert!(busy(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [200, 201, 400, 401, 403, 404, 409, 422, 500, 501] {
            assert!(!busy(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        let timeout = Failure::Timeout {
            after: Duration::from_secs(5),
        };
        assert_eq!(timeout.sentence(), "no answer within 5s");
    }

    #[test]
    fn a_short_retry_after_is_honoured_and_a_long_one_is_not() {
        let busy = |secs| Failure::Busy {
            status: StatusCode::SERVICE_UNAVAILABLE,
            retry_after: parse_retry_after(Some(secs)),
        };
        let backoff = Some(Duration::from_millis(200));
        assert_eq!(next_wait(&busy("2"), backoff), Some(Duration::from_secs(2)));
        assert_eq!(next_wait(&busy("3600"), backoff), backoff);
        assert_eq!(next_wait(&busy("soon"), backoff), backoff);
        // Out of attempts stays out of attempts, whatever the platform asked.
        assert_eq!(next_wait(&busy("1"), None), None);
    }

    #[tokio::test]
    async fn the_backoff_gives_up_after_the_configured_retries() {
        use backon::Retryable;
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), Failure> = (|| async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(Failure::Unreachable {
                sentence: "refused".into(),
            })
        })
        .retry(backoff(Duration::from_millis(1), 2))
        .adjust(next_wait)
        .await;
        assert!(result.is_err());
        assert_eq!(attempts.into_inner(), 3);
    }
}
