//! The business calendar: which clock zone business dates are read in
//! ([`BUSINESS_OFFSET`]), and working days by the official calendar for promised
//! completion dates and time limits: the State Council's schedules and regions' own days
//! (`schedule`, the data files), and the arithmetic over them (`working_days`).
//!
//! Both sides of the federation must agree on what "today" and "five working days
//! later" are, so this lives in the shared contract crate rather than in the node.

pub mod schedule;
pub mod working_days;

use time::{OffsetDateTime, UtcOffset};

/// Business dates (case-number days, promised dates, birth dates judged "not in the
/// future") are China Standard Time, UTC+8, whatever the server's clock zone.
pub const BUSINESS_OFFSET: UtcOffset = time::macros::offset!(+8);

/// Now, in business time (see [`BUSINESS_OFFSET`]).
pub fn business_now() -> OffsetDateTime {
    OffsetDateTime::now_utc().to_offset(BUSINESS_OFFSET)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn business_time_is_utc_plus_8() {
        assert_eq!(BUSINESS_OFFSET.whole_hours(), 8);
        assert_eq!(BUSINESS_OFFSET.minutes_past_hour(), 0);
        let now = business_now();
        assert_eq!(now.offset(), BUSINESS_OFFSET);
        // 16:00 UTC is already the next day in business time.
        let late_utc = date!(2026 - 11 - 26)
            .with_hms(16, 0, 0)
            .unwrap()
            .assume_utc();
        assert_eq!(
            late_utc.to_offset(BUSINESS_OFFSET).date(),
            date!(2026 - 11 - 27)
        );
    }
}
