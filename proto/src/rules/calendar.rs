//! The business calendar: which clock zone business dates are read in, and working-day
//! arithmetic for promised completion dates.
//!
//! Both sides of the federation must agree on what "today" and "five working days
//! later" are, so this lives in the shared contract crate rather than in the node.

use time::{Date, Duration, OffsetDateTime, UtcOffset, Weekday};

/// Business dates (case-number days, promised dates, birth dates judged "not in the
/// future") are China Standard Time, UTC+8, whatever the server's clock zone.
pub const BUSINESS_OFFSET: UtcOffset = time::macros::offset!(+8);

/// Now, in business time (see [`BUSINESS_OFFSET`]).
pub fn business_now() -> OffsetDateTime {
    OffsetDateTime::now_utc().to_offset(BUSINESS_OFFSET)
}

/// The date `days` working days after `start`, counting only days strictly after it.
/// Working days are Monday to Friday; public holidays and their make-up working days
/// (调休) are not modelled. From a Friday or a Saturday, one working day is the next
/// Monday; zero days is `start` itself. Saturates at [`Date::MAX`].
pub fn add_working_days(start: Date, days: u32) -> Date {
    if days == 0 {
        return start;
    }
    // Any 7 consecutive days hold exactly 5 working days, so skip whole weeks first
    // and walk the remaining 1..=5 working days one day at a time.
    let weeks = (days - 1) / 5;
    let mut remaining = days - weeks * 5;
    let Some(mut date) = start.checked_add(Duration::weeks(i64::from(weeks))) else {
        return Date::MAX;
    };
    while remaining > 0 {
        let Some(next) = date.next_day() else {
            return Date::MAX;
        };
        date = next;
        if !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday) {
            remaining -= 1;
        }
    }
    date
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

    #[test]
    fn add_working_days_skips_weekends_and_saturates() {
        // 2026-11-27 is a Friday.
        assert_eq!(
            add_working_days(date!(2026 - 11 - 27), 0),
            date!(2026 - 11 - 27)
        );
        assert_eq!(
            add_working_days(date!(2026 - 11 - 27), 1),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            add_working_days(date!(2026 - 11 - 29), 1),
            date!(2026 - 11 - 30)
        );
        assert_eq!(
            add_working_days(date!(2026 - 11 - 30), 5),
            date!(2026 - 12 - 07)
        );
        assert_eq!(
            add_working_days(date!(2026 - 11 - 30), 4),
            date!(2026 - 12 - 04)
        );
        assert_eq!(add_working_days(Date::MAX, 1), Date::MAX);
        assert_eq!(add_working_days(date!(2026 - 11 - 28), u32::MAX), Date::MAX);
    }
}
