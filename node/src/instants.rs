//! Instants as the store keeps them: Unix milliseconds, from this clock or from a
//! timestamp another region sent.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (the databases store instants this way).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A protobuf timestamp from Unix milliseconds.
pub fn timestamp_ms(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Unix milliseconds of a timestamp another region sent, or `now` when it has none or
/// one no honest clock gives (before 1970, more than a day ahead, or so large that
/// milliseconds overflow).
pub(super) fn remote_ms(t: Option<&prost_types::Timestamp>, now: i64) -> i64 {
    const DAY_MS: i64 = 24 * 3600 * 1000;
    t.and_then(|t| {
        t.seconds
            .checked_mul(1000)?
            .checked_add(i64::from(t.nanos.clamp(0, 999_999_999)) / 1_000_000)
    })
    .filter(|ms| (0..=now.saturating_add(DAY_MS)).contains(ms))
    .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::remote_ms;

    #[test]
    fn remote_timestamps_are_bounded() {
        let now = 1_764_650_000_000;
        let at = |seconds, nanos| Some(Timestamp { seconds, nanos });
        assert_eq!(
            remote_ms(at(1_764_649_000, 5_000_000).as_ref(), now),
            1_764_649_000_005
        );
        assert_eq!(remote_ms(None, now), now);
        assert_eq!(remote_ms(at(i64::MAX, 0).as_ref(), now), now, "overflow");
        assert_eq!(
            remote_ms(at(i64::MAX / 1000, 999_999_999).as_ref(), now),
            now
        );
        assert_eq!(remote_ms(at(-5, 0).as_ref(), now), now, "before 1970");
        assert_eq!(
            remote_ms(at(1_764_650_000 + 2 * 86_400, 0).as_ref(), now),
            now
        );
        assert_eq!(
            remote_ms(at(1_764_649_000, -7).as_ref(), now),
            1_764_649_000_000
        );
    }
}
