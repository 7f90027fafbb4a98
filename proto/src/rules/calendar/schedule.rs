//! The calendar's data files: the State Council's schedule for one year
//! (`data/calendar/cn-<year>.toml`) and a region's own days (an overlay: a province's
//! ethnic holidays, say), each read and checked against itself: every range of days off
//! must hold exactly the days the notice states, make-up working days (调休) must fall on
//! a weekend and outside the days off, nothing may be listed twice.

use std::collections::BTreeMap;

use serde::Deserialize;
use time::{Date, Weekday, format_description::BorrowedFormatItem, macros::format_description};

/// Why a calendar could not answer, or a file could not be taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// No official schedule is known for the year: working days there are unknown (a
    /// guess from weekends would be wrong by a week across a Spring Festival).
    #[error(
        "no official holiday schedule for {year}: add its file (cn-{year}.toml, from the \
         State Council's notice) to the calendar folder and reload"
    )]
    YearNotCovered { year: i32 },
    /// A data file that does not hold together.
    #[error("{file}: {problem}")]
    Invalid { file: String, problem: String },
}

/// What one date is, where a file says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DayKind {
    /// A day off (a holiday, or a weekend inside a holiday's range).
    Off,
    /// A working day on a weekend (调休).
    Work,
}

/// A checked file: the dates it decides, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The year a national schedule covers; `None` for an overlay.
    pub year: Option<i32>,
    /// The region prefix an overlay applies to (2, 4 or 6 digits); `None` nationally.
    pub region: Option<String>,
    /// The notice's name and number, as it is cited.
    pub notice: Option<String>,
    /// The notice's address.
    pub source: String,
    /// Each date the file decides.
    pub days: BTreeMap<Date, DayKind>,
    /// Each holiday's name with its days off, as the notice counts them.
    pub holidays: Vec<(String, u32)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    year: Option<i32>,
    region: Option<String>,
    #[serde(default)]
    notice: Option<String>,
    source: String,
    #[serde(default)]
    off: Vec<OffRange>,
    #[serde(default)]
    work: Vec<WorkDay>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OffRange {
    name: String,
    first: String,
    last: String,
    /// The number of days off the notice states for this holiday.
    days: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkDay {
    name: String,
    date: String,
}

const DATE: &[BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// Reads a national year file (`year` set, no `region`).
pub fn parse_year(file: &str, text: &str) -> Result<Schedule, CalendarError> {
    let schedule = parse(file, text)?;
    let invalid = |problem: &str| CalendarError::Invalid {
        file: file.to_owned(),
        problem: problem.to_owned(),
    };
    let Some(year) = schedule.year else {
        return Err(invalid("a year's schedule needs `year`"));
    };
    if schedule.region.is_some() {
        return Err(invalid(
            "a national year's schedule has no `region` (that is an overlay)",
        ));
    }
    // A holiday may reach into a neighbouring year (a make-up day in late December),
    // never further.
    if let Some(date) = schedule
        .days
        .keys()
        .find(|date| (date.year() - year).abs() > 1)
    {
        return Err(invalid(&format!("{date} is not near {year}")));
    }
    Ok(schedule)
}

/// Reads a region's overlay (`region` set, no `year`): its own days off and working
/// days, laid over the national schedule for the region and the regions under it.
pub fn parse_overlay(file: &str, text: &str) -> Result<Schedule, CalendarError> {
    let schedule = parse(file, text)?;
    let invalid = |problem: &str| CalendarError::Invalid {
        file: file.to_owned(),
        problem: problem.to_owned(),
    };
    match &schedule.region {
        None => Err(invalid(
            "an overlay needs `region`, the prefix it applies to",
        )),
        Some(_) if schedule.year.is_some() => Err(invalid(
            "an overlay has no `year` (its dates say when; only national files cover years)",
        )),
        Some(region)
            if !matches!(region.len(), 2 | 4 | 6)
                || !region.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Err(invalid("`region` must be a prefix of 2, 4 or 6 digits"))
        }
        Some(_) => Ok(schedule),
    }
}

fn parse(file: &str, text: &str) -> Result<Schedule, CalendarError> {
    let invalid = |problem: String| CalendarError::Invalid {
        file: file.to_owned(),
        problem,
    };
    let raw: ScheduleFile = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if !raw.source.starts_with("https://") {
        return Err(invalid(
            "`source` must be the notice's https:// address".into(),
        ));
    }
    let date = |field: &str, value: &str| {
        Date::parse(value, DATE)
            .map_err(|_| invalid(format!("{field} = {value:?} is not a YYYY-MM-DD date")))
    };
    let mut days = BTreeMap::new();
    let mut holidays = Vec::new();
    for range in &raw.off {
        let first = date("off.first", &range.first)?;
        let last = date("off.last", &range.last)?;
        if last < first {
            return Err(invalid(format!("{}: {last} is before {first}", range.name)));
        }
        let span = (last - first).whole_days() + 1;
        if span != i64::from(range.days) {
            return Err(invalid(format!(
                "{}: {first} to {last} is {span} days, the notice says {}",
                range.name, range.days
            )));
        }
        let mut day = first;
        loop {
            if days.insert(day, DayKind::Off).is_some() {
                return Err(invalid(format!("{day} is listed twice")));
            }
            match day.next_day() {
                Some(next) if next <= last => day = next,
                _ => break,
            }
        }
        holidays.push((range.name.clone(), range.days));
    }
    for work in &raw.work {
        let day = date("work.date", &work.date)?;
        if !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) {
            return Err(invalid(format!(
                "{}: make-up working day {day} is a {}, not a weekend day",
                work.name,
                day.weekday()
            )));
        }
        if days.insert(day, DayKind::Work).is_some() {
            return Err(invalid(format!(
                "{}: {day} is both a day off and a working day",
                work.name
            )));
        }
    }
    Ok(Schedule {
        year: raw.year,
        region: raw.region,
        notice: raw.notice,
        source: raw.source,
        days,
        holidays,
    })
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    const HEAD: &str = "year = 2026\nsource = \"https://www.gov.cn/x\"\n";

    fn year(body: &str) -> Result<Schedule, CalendarError> {
        parse_year("t.toml", &format!("{HEAD}{body}"))
    }

    fn problem(result: Result<Schedule, CalendarError>) -> String {
        match result {
            Err(CalendarError::Invalid { problem, .. }) => problem,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_range_must_hold_the_days_the_notice_states() {
        let said = problem(year(
            "off = [{ name = \"春节\", first = \"2026-02-15\", last = \"2026-02-23\", days = 8 }]",
        ));
        assert!(said.contains("is 9 days, the notice says 8"), "{said}");
        let ok = year(
            "off = [{ name = \"春节\", first = \"2026-02-15\", last = \"2026-02-23\", days = 9 }]",
        )
        .unwrap();
        assert_eq!(ok.days.len(), 9);
        assert_eq!(ok.days[&date!(2026 - 02 - 15)], DayKind::Off);
    }

    #[test]
    fn make_up_days_fall_on_weekends_outside_the_days_off() {
        // 2026-02-16 is a Monday.
        let said = problem(year("work = [{ name = \"春节\", date = \"2026-02-16\" }]"));
        assert!(said.contains("is a Monday"), "{said}");
        let said = problem(year(
            "off = [{ name = \"春节\", first = \"2026-02-15\", last = \"2026-02-23\", days = 9 }]\n\
             work = [{ name = \"春节\", date = \"2026-02-21\" }]",
        ));
        assert!(said.contains("both a day off and a working day"), "{said}");
    }

    #[test]
    fn files_are_refused_by_what_is_wrong() {
        assert!(
            problem(year(
                "off = [{ name = \"x\", first = \"2026-13-01\", last = \"2026-13-01\", days = 1 }]"
            ))
            .contains("not a YYYY-MM-DD")
        );
        assert!(
            problem(year(
                "off = [{ name = \"x\", first = \"2026-02-02\", last = \"2026-02-01\", days = 1 }]"
            ))
            .contains("before")
        );
        assert!(
            problem(year(
                "off = [{ name = \"x\", first = \"2029-02-02\", last = \"2029-02-02\", days = 1 }]"
            ))
            .contains("not near 2026")
        );
        assert!(problem(year("holiday = 1")).contains("unknown field"));
        assert!(
            problem(parse_year("t.toml", "year = 2026\nsource = \"http://x\""))
                .contains("https://")
        );
        assert!(problem(parse_year("t.toml", "source = \"https://x\"")).contains("needs `year`"));
        assert!(problem(parse_overlay("o.toml", HEAD)).contains("needs `region`"));
        assert!(
            problem(parse_overlay(
                "o.toml",
                "region = \"4\"\nsource = \"https://x\""
            ))
            .contains("2, 4 or 6 digits")
        );
        assert!(
            problem(parse_year(
                "t.toml",
                "year = 2026\nregion = \"45\"\nsource = \"https://x\""
            ))
            .contains("overlay")
        );
    }
}
