//! What counts against a node endpoint in outlier ejection (`upstream`): only what the
//! endpoint did — its transport failed the call, or the call's deadline ran out with no
//! answer — never what a caller did. A caller that resets its own calls, or goes away,
//! ends them [`CallOutcome::Abandoned`]: were they counted against the endpoint, five
//! such resets in a row would eject a healthy node for every region.
//!
//! Free on the relay's path: an outcome is a `Copy` value settled once per call, the
//! deadline two plain values the call already has, and the clock is read only when a
//! call is given up unanswered.

use std::time::{Duration, Instant};

use crate::message::ReadError;

/// A deadline shorter than this says nothing of the node when it runs out: the caller
/// chose it (its `grpc-timeout`), and one no node can meet (1 ms) followed by a reset
/// would otherwise count as the node's failure. The methods' own limits are 5–10 s, a
/// healthy node answers in milliseconds.
pub const MIN_COUNTED_DEADLINE: Duration = Duration::from_secs(1);

/// How one call on a node endpoint ended, as outlier ejection counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// The node answered the call whole, whatever its gRPC status: the endpoint is
    /// sound.
    Answered,
    /// The transport failed the call: the connection, TLS or I/O broke, an HTTP/2
    /// connection error, or the node reset the stream for a reason other than CANCEL.
    /// The endpoint's fault.
    TransportFailed,
    /// The call's deadline ran out with no answer. The endpoint's fault.
    DeadlineExpired,
    /// Ended by someone else, saying nothing of whether the endpoint can serve: the
    /// caller reset its call or went away before the deadline, the node cancelled the
    /// stream (CANCEL), or the gateway would not take the answer (its buffer budget, an
    /// answer over the size limit).
    Abandoned,
}

impl CallOutcome {
    /// How an HTTP/2 error on the call's stream or connection counts.
    pub fn of_error(error: &h2::Error) -> Self {
        Self::of_reset(error.is_reset() && error.is_remote(), error.reason())
    }

    /// How a failure to read the node's answer counts: a broken stream by its error; an
    /// answer the gateway would not take (its buffer budget, over the size limit) says
    /// nothing of whether the endpoint can serve.
    pub fn of_read(error: &ReadError) -> Self {
        match error {
            ReadError::Broken(error) => Self::of_error(error),
            ReadError::TooLarge | ReadError::Refused(_) => Self::Abandoned,
        }
    }

    /// The node's own RST_STREAM with CANCEL is a cancellation; any other error (I/O,
    /// TLS, GOAWAY, a connection error, a reset with another reason, or one h2 made
    /// because of what the node sent) is a transport failure.
    fn of_reset(reset_by_node: bool, reason: Option<h2::Reason>) -> Self {
        if reset_by_node && reason == Some(h2::Reason::CANCEL) {
            Self::Abandoned
        } else {
            Self::TransportFailed
        }
    }

    /// Whether the outcome counts against the endpoint.
    pub fn counts_against_endpoint(self) -> bool {
        matches!(self, Self::TransportFailed | Self::DeadlineExpired)
    }
}

/// The deadline a call runs under: `within` from `from` (when the relayed call reached
/// the gateway, or the issuer call began).
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    pub from: Instant,
    pub within: Duration,
}

impl Deadline {
    /// How a call given up unanswered at `now` ended: its deadline expired if it was at
    /// least [`MIN_COUNTED_DEADLINE`] and had run out, less a tenth (a caller's clock
    /// starts before the gateway's, so its reset at its own deadline arrives a little
    /// early); else the caller gave it up.
    pub fn given_up_at(self, now: Instant) -> CallOutcome {
        let waited = now.saturating_duration_since(self.from);
        if self.within >= MIN_COUNTED_DEADLINE && waited + self.within / 10 >= self.within {
            CallOutcome::DeadlineExpired
        } else {
            CallOutcome::Abandoned
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_node_s_cancel_is_not_a_transport_failure() {
        use h2::Reason;
        assert_eq!(
            CallOutcome::of_reset(true, Some(Reason::CANCEL)),
            CallOutcome::Abandoned
        );
        for reason in [
            Reason::INTERNAL_ERROR,
            Reason::REFUSED_STREAM,
            Reason::PROTOCOL_ERROR,
        ] {
            assert_eq!(
                CallOutcome::of_reset(true, Some(reason)),
                CallOutcome::TransportFailed
            );
        }
        // A reset h2 made itself (the node broke the protocol), or an I/O error.
        assert_eq!(
            CallOutcome::of_reset(false, Some(Reason::CANCEL)),
            CallOutcome::TransportFailed
        );
        assert_eq!(
            CallOutcome::of_reset(false, None),
            CallOutcome::TransportFailed
        );
        // An answer the gateway would not take.
        assert_eq!(
            CallOutcome::of_read(&ReadError::TooLarge),
            CallOutcome::Abandoned
        );
        assert!(CallOutcome::TransportFailed.counts_against_endpoint());
        assert!(CallOutcome::DeadlineExpired.counts_against_endpoint());
        assert!(!CallOutcome::Abandoned.counts_against_endpoint());
        assert!(!CallOutcome::Answered.counts_against_endpoint());
    }

    #[test]
    fn a_call_given_up_counts_only_once_a_deadline_worth_counting_ran_out() {
        let from = Instant::now();
        let at = |ms: u64| from + Duration::from_millis(ms);
        let deadline = Deadline {
            from,
            within: Duration::from_secs(2),
        };
        assert_eq!(deadline.given_up_at(at(5)), CallOutcome::Abandoned);
        assert_eq!(deadline.given_up_at(at(1_700)), CallOutcome::Abandoned);
        // A caller giving up at its own deadline, its clock a little ahead.
        assert_eq!(
            deadline.given_up_at(at(1_850)),
            CallOutcome::DeadlineExpired
        );
        assert_eq!(
            deadline.given_up_at(at(2_000)),
            CallOutcome::DeadlineExpired
        );
        // A deadline the caller set too short for any node says nothing of the node.
        let short = Deadline {
            from,
            within: Duration::from_millis(1),
        };
        assert_eq!(short.given_up_at(at(1_000)), CallOutcome::Abandoned);
    }
}
