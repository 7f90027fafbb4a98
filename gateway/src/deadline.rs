//! Deadlines of relayed calls: the caller's `grpc-timeout` when it is shorter than the
//! method's limit (from the method table, lowered by the operator's
//! `upstream.request_timeout`), else that limit, which is then sent on to the node.
//! Every relayed call is bounded; the node enforces the deadline (a timer here would
//! cost an event-loop wake-up per call), and a caller that gives up resets the call.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use tongban_proto::contract::metadata::names;

use crate::methods::{METHODS, Method};

/// Each method's limit, ready to send.
pub struct Deadlines {
    limits: Vec<(Duration, HeaderValue)>,
}

/// The deadline of one call.
#[derive(Clone, Debug)]
pub struct CallDeadline {
    /// How long the gateway waits for the rest of the request.
    pub wait: Duration,
    /// The `grpc-timeout` to send instead of the caller's, if the caller's is absent or
    /// longer than the limit.
    pub replace: Option<HeaderValue>,
}

impl Deadlines {
    /// The table's limits, none above `cap`.
    pub fn new(cap: Duration) -> Self {
        Self {
            limits: METHODS
                .iter()
                .map(|m| {
                    let limit = m.deadline.min(cap);
                    (limit, grpc_timeout(limit))
                })
                .collect(),
        }
    }

    /// The deadline of a call to `method` with request metadata `headers`.
    pub fn for_call(&self, method: &Method, headers: &HeaderMap) -> CallDeadline {
        let Some((limit, header)) = self.limits.get(method.index) else {
            // Every method has a limit (built from the same table); be safe anyway.
            return CallDeadline {
                wait: method.deadline,
                replace: Some(grpc_timeout(method.deadline)),
            };
        };
        match headers
            .get(names::GRPC_TIMEOUT)
            .and_then(parse_grpc_timeout)
        {
            Some(callers) if callers <= *limit => CallDeadline {
                wait: callers,
                replace: None,
            },
            _ => CallDeadline {
                wait: *limit,
                replace: Some(header.clone()),
            },
        }
    }
}

impl CallDeadline {
    /// Applies the deadline to the metadata sent on to the node.
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(value) = &self.replace {
            headers.insert(names::GRPC_TIMEOUT, value.clone());
        }
    }
}

/// A `grpc-timeout` value (milliseconds, at most 8 digits as the protocol requires).
fn grpc_timeout(d: Duration) -> HeaderValue {
    let ms = d.as_millis().clamp(1, 99_999_999);
    HeaderValue::from_str(&format!("{ms}m")).unwrap_or_else(|_| HeaderValue::from_static("10000m"))
}

/// A `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at_checked(text.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::lookup;

    #[test]
    fn grpc_timeouts_parse_by_the_protocol() {
        let parse = |s: &'static str| parse_grpc_timeout(&HeaderValue::from_static(s));
        assert_eq!(parse("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        assert_eq!(parse("5u"), Some(Duration::from_micros(5)));
        for bad in ["", "m", "100", "123456789m", "1.5S", "-1S", "10x", "S1"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_shorter_of_the_callers_deadline_and_the_limit_wins() {
        let deliver = lookup("/tongban.federation.v1.Gateway/DeliverApplication").unwrap();
        let query = lookup("/tongban.federation.v1.Gateway/QueryStatus").unwrap();
        let deadlines = Deadlines::new(Duration::from_secs(8));
        let mut headers = HeaderMap::new();
        // No caller deadline: the method's limit, capped by the operator, is sent.
        let d = deadlines.for_call(deliver, &headers);
        assert_eq!(d.wait, Duration::from_secs(8));
        assert_eq!(d.replace.as_ref().unwrap(), "8000m");
        let d = deadlines.for_call(query, &headers);
        assert_eq!(d.wait, Duration::from_secs(5));
        // A shorter caller deadline is kept as it is.
        headers.insert(names::GRPC_TIMEOUT, HeaderValue::from_static("250m"));
        let d = deadlines.for_call(deliver, &headers);
        assert_eq!((d.wait, d.replace), (Duration::from_millis(250), None));
        // A longer (or malformed) one is replaced.
        headers.insert(names::GRPC_TIMEOUT, HeaderValue::from_static("1H"));
        let d = deadlines.for_call(deliver, &headers);
        let mut sent = headers.clone();
        d.apply(&mut sent);
        assert_eq!(sent.get(names::GRPC_TIMEOUT).unwrap(), "8000m");
    }
}
