//! W3C trace context (`traceparent`) for cross-region calls.
//!
//! Every call made for a case carries the case's trace context: the filing's span at the
//! origin (its deliveries, retries and live status queries), the received delivery's
//! span at the handling region (its status pushes), each call as a child span. The
//! context comes from the portal's request when it sends one; a node that traces starts
//! a new trace otherwise; one that does not falls back to a trace derived from the case
//! number ([`TraceParent::for_case`]), so the calls of one case still share a trace id an
//! SRE can find in the audit lines. The gateway names the trace in its audit line.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

/// A parsed `traceparent` (version 00).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceParent {
    /// The trace of a case for which no context was recorded (an untraced node, rows
    /// from before contexts were stored): derived from the case number, as a new span,
    /// not sampled (nothing recorded it).
    pub fn for_case(case_number: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, case_number.as_bytes());
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(&digest.as_ref()[..16]);
        let mut span_id = [0u8; 8];
        if SystemRandom::new().fill(&mut span_id).is_err() || span_id == [0; 8] {
            // An all-zero span id is invalid; fall back to part of the digest.
            span_id.copy_from_slice(&digest.as_ref()[16..24]);
        }
        Self {
            trace_id,
            span_id,
            sampled: false,
        }
    }

    /// A case's stored context, or (none stored: rows from before contexts were kept; or
    /// one that no longer parses) the one derived from its case number.
    pub fn stored_or_for_case(stored: Option<&str>, case_number: &str) -> Self {
        stored
            .and_then(Self::parse)
            .unwrap_or_else(|| Self::for_case(case_number))
    }

    /// Parses a version-00 header; `None` for anything malformed.
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id: [u8; 16] = hex(trace)?;
        let span_id: [u8; 8] = hex(span)?;
        let flags: [u8; 1] = hex(flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags[0] & 1 == 1,
        })
    }

    /// The trace id of a well-formed version-00 `header`, as the 32 lower-case hex
    /// digits it carries (a slice of it, nothing formatted).
    pub fn trace_id_in(header: &str) -> Option<&str> {
        Self::parse(header).and_then(|_| header.get(3..35))
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        tongban_proto::rules::digest::hex(&self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            tongban_proto::rules::digest::hex(&self.trace_id),
            tongban_proto::rules::digest::hex(&self.span_id),
            u8::from(self.sampled)
        )
    }
}

/// `s` as exactly `N` bytes of lower-case hex, decoded in place: the gateway parses
/// every relayed call's `traceparent` for its audit line, so no allocation.
fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trace_per_case_and_a_new_span_per_call() {
        let a = TraceParent::for_case("310000-20261127-00000001");
        let b = TraceParent::for_case("310000-20261127-00000001");
        let c = TraceParent::for_case("310000-20261127-00000002");
        assert_eq!(a.trace_id, b.trace_id);
        assert_ne!(a.span_id, b.span_id);
        assert_ne!(a.trace_id, c.trace_id);
        assert_eq!(TraceParent::parse(&a.to_string()), Some(a));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        for h in [
            "",
            "00-abc-def-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(h), None, "{h}");
        }
        assert!(
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some()
        );
        for h in [
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(TraceParent::parse(h), None, "{h}");
            assert_eq!(TraceParent::trace_id_in(h), None, "{h}");
        }
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceParent::parse(header).unwrap();
        assert_eq!(
            TraceParent::trace_id_in(header),
            Some(parsed.trace_id_hex().as_str())
        );
        assert_eq!(
            parsed.span_id,
            [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parsed.sampled);
    }
}
