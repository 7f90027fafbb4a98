//! Working days by the official calendar: the State Council's schedules, year by year,
//! with a region's overlays laid over them. A date in a year without a schedule is an
//! error, never a guess from weekends.
//!
//! Written here rather than taken from a crate: the one on crates.io for Chinese
//! holidays ships an empty 2026 and treats unknown dates as ordinary weekdays.

use std::{collections::BTreeMap, path::Path};

use time::{Date, Weekday};

use super::schedule::{CalendarError, DayKind, Schedule, parse_overlay, parse_year};

/// The schedules built into the release (`data/calendar/`), one per year.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "cn-2025.toml",
        include_str!("../../../../data/calendar/cn-2025.toml"),
    ),
    (
        "cn-2026.toml",
        include_str!("../../../../data/calendar/cn-2026.toml"),
    ),
];

/// The official calendar: national schedules by year and regions' overlays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeMap<i32, Schedule>,
    overlays: Vec<Schedule>,
}

impl Calendar {
    /// The schedules built into the release.
    pub fn built_in() -> Result<Self, CalendarError> {
        let mut calendar = Self::default();
        for (file, text) in BUILT_IN {
            calendar.add_year(parse_year(file, text)?);
        }
        Ok(calendar)
    }

    /// The built-in schedules with a folder's files laid over them: `cn-<year>.toml`, a
    /// year's national schedule (a year not built in, or replacing the built-in one),
    /// and `overlay-*.toml`, a region's own days. Other files are ignored.
    pub fn with_folder(folder: &Path) -> Result<Self, CalendarError> {
        let mut calendar = Self::built_in()?;
        let unreadable = |problem: String| CalendarError::Invalid {
            file: folder.display().to_string(),
            problem,
        };
        let entries = std::fs::read_dir(folder).map_err(|e| unreadable(e.to_string()))?;
        let mut files: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let national = name.starts_with("cn-") && name.ends_with(".toml");
            let overlay = name.starts_with("overlay-") && name.ends_with(".toml");
            if !national && !overlay {
                continue;
            }
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| CalendarError::Invalid {
                file: shown.clone(),
                problem: e.to_string(),
            })?;
            if national {
                let schedule = parse_year(&shown, &text)?;
                if name != format!("cn-{}.toml", schedule.year.unwrap_or_default()) {
                    return Err(CalendarError::Invalid {
                        file: shown,
                        problem: "a year's file is named cn-<its year>.toml".into(),
                    });
                }
                calendar.add_year(schedule);
            } else {
                calendar.overlays.push(parse_overlay(&shown, &text)?);
            }
        }
        Ok(calendar)
    }

    fn add_year(&mut self, schedule: Schedule) {
        if let Some(year) = schedule.year {
            self.years.insert(year, schedule);
        }
    }

    /// The years with a national schedule.
    pub fn years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// The overlays' regions.
    pub fn overlay_regions(&self) -> impl Iterator<Item = &str> {
        self.overlays.iter().filter_map(|o| o.region.as_deref())
    }

    /// The last day of the unbroken run of covered years from `from`'s year: how far
    /// promised dates can be computed. `None` when `from`'s own year is not covered.
    pub fn covered_through(&self, from: Date) -> Option<Date> {
        let mut year = from.year();
        if !self.years.contains_key(&year) {
            return None;
        }
        while self.years.contains_key(&(year + 1)) {
            year += 1;
        }
        Date::from_calendar_date(year, time::Month::December, 31).ok()
    }

    /// The calendar of the region with this code (or prefix): the national schedules
    /// with every overlay whose region is a prefix of it (a province's, then a city's,
    /// the more specific deciding).
    pub fn for_region(&self, region: &str) -> RegionCalendar<'_> {
        let mut overlays: Vec<&Schedule> = self
            .overlays
            .iter()
            .filter(|o| o.region.as_deref().is_some_and(|r| region.starts_with(r)))
            .collect();
        overlays.sort_by_key(|o| std::cmp::Reverse(o.region.as_ref().map_or(0, String::len)));
        RegionCalendar {
            calendar: self,
            overlays,
        }
    }
}

/// One region's working days.
#[derive(Clone, Debug)]
pub struct RegionCalendar<'a> {
    calendar: &'a Calendar,
    /// Most specific first.
    overlays: Vec<&'a Schedule>,
}

impl RegionCalendar<'_> {
    /// Whether `date` is a working day here.
    pub fn is_working_day(&self, date: Date) -> Result<bool, CalendarError> {
        let year = date.year();
        if !self.calendar.years.contains_key(&year) {
            return Err(CalendarError::YearNotCovered { year });
        }
        let decided = self
            .overlays
            .iter()
            .copied()
            .chain(self.calendar.years.values())
            .find_map(|schedule| schedule.days.get(&date));
        Ok(match decided {
            Some(DayKind::Off) => false,
            Some(DayKind::Work) => true,
            None => !matches!(date.weekday(), Weekday::Saturday | Weekday::Sunday),
        })
    }

    /// The date `days` working days after `start`, counting only days strictly after
    /// it (filed on a Friday before a holiday week, one day is the first working day
    /// after it). Zero days is `start` itself. An uncovered year on the way is an error.
    pub fn add_working_days(&self, start: Date, days: u32) -> Result<Date, CalendarError> {
        let mut date = start;
        let mut remaining = days;
        while remaining > 0 {
            // Walks at most the covered years' days: the first uncovered date stops it.
            date = date.next_day().ok_or(CalendarError::YearNotCovered {
                year: date.year().saturating_add(1),
            })?;
            if self.is_working_day(date)? {
                remaining -= 1;
            }
        }
        Ok(date)
    }

    /// Working days strictly after `from` up to and including `to` (negative when `to`
    /// is before `from`: working days overdue).
    pub fn working_days_between(&self, from: Date, to: Date) -> Result<i64, CalendarError> {
        let (low, high, sign) = if to >= from {
            (from, to, 1)
        } else {
            (to, from, -1)
        };
        let mut count = 0i64;
        let mut date = low;
        while date < high {
            let Some(next) = date.next_day() else { break };
            date = next;
            if self.is_working_day(date)? {
                count += 1;
            }
        }
        Ok(sign * count)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn national() -> Calendar {
        Calendar::built_in().unwrap()
    }

    #[test]
    fn across_the_2026_spring_festival() {
        let calendar = national();
        let cn = calendar.for_region("440000");
        // Friday 2026-02-13, 3 working days: Saturday 02-14 is worked (调休), 02-15 to
        // 02-23 are off, then 02-24 and 02-25.
        assert_eq!(
            cn.add_working_days(date!(2026 - 02 - 13), 3),
            Ok(date!(2026 - 02 - 25))
        );
        assert_eq!(cn.is_working_day(date!(2026 - 02 - 14)), Ok(true));
        assert_eq!(cn.is_working_day(date!(2026 - 02 - 23)), Ok(false));
        assert_eq!(cn.is_working_day(date!(2026 - 02 - 28)), Ok(true));
        // Weekends alone would have said 2026-02-18: wrong by a week.
        assert_eq!(
            cn.add_working_days(date!(2026 - 02 - 13), 0),
            Ok(date!(2026 - 02 - 13))
        );
    }

    #[test]
    fn across_the_2026_national_day_and_the_2025_holidays() {
        let calendar = national();
        let cn = calendar.for_region("110000");
        // Sunday 2026-09-20 and Saturday 2026-10-10 are worked; 10-01 to 10-07 are off.
        assert_eq!(cn.is_working_day(date!(2026 - 09 - 20)), Ok(true));
        assert_eq!(cn.is_working_day(date!(2026 - 10 - 10)), Ok(true));
        // Wednesday 2026-09-30, 2 working days: 10-08 and 10-09.
        assert_eq!(
            cn.add_working_days(date!(2026 - 09 - 30), 2),
            Ok(date!(2026 - 10 - 09))
        );
        // 2025: the National Day and Mid-Autumn holiday ran 10-01 to 10-08, 10-11 worked.
        assert_eq!(
            cn.add_working_days(date!(2025 - 09 - 30), 1),
            Ok(date!(2025 - 10 - 09))
        );
        assert_eq!(cn.is_working_day(date!(2025 - 10 - 11)), Ok(true));
        // 2025-05-01 to 05-05 off, Sunday 04-27 worked.
        assert_eq!(cn.is_working_day(date!(2025 - 04 - 27)), Ok(true));
        assert_eq!(
            cn.working_days_between(date!(2025 - 04 - 30), date!(2025 - 05 - 06)),
            Ok(1)
        );
        assert_eq!(
            cn.working_days_between(date!(2025 - 05 - 06), date!(2025 - 04 - 30)),
            Ok(-1)
        );
    }

    #[test]
    fn a_year_without_a_schedule_is_an_error() {
        let calendar = national();
        let cn = calendar.for_region("440000");
        assert_eq!(
            cn.is_working_day(date!(2027 - 01 - 04)),
            Err(CalendarError::YearNotCovered { year: 2027 })
        );
        assert_eq!(
            cn.add_working_days(date!(2026 - 12 - 28), 20),
            Err(CalendarError::YearNotCovered { year: 2027 })
        );
        assert_eq!(
            cn.is_working_day(date!(2024 - 06 - 03)),
            Err(CalendarError::YearNotCovered { year: 2024 })
        );
        assert_eq!(
            calendar.covered_through(date!(2025 - 03 - 01)),
            Some(date!(2026 - 12 - 31))
        );
        assert_eq!(calendar.covered_through(date!(2027 - 01 - 01)), None);
    }

    #[test]
    fn a_folder_adds_a_year_and_a_regions_overlay() {
        let dir = std::env::temp_dir().join(format!("tongban-calendar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("overlay-45.toml"),
            "region = \"45\"\nsource = \"https://www.gxzf.gov.cn/\"\n\
             off = [{ name = \"壮族三月三\", first = \"2026-04-20\", last = \"2026-04-21\", days = 2 }]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("cn-2027.toml"),
            "year = 2027\nsource = \"https://www.gov.cn/x\"\n\
             off = [{ name = \"元旦\", first = \"2027-01-01\", last = \"2027-01-03\", days = 3 }]\n",
        )
        .unwrap();
        let calendar = Calendar::with_folder(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // Guangxi and the cities under it rest on 三月三; Guangdong works.
        let gx = calendar.for_region("450100");
        assert_eq!(gx.is_working_day(date!(2026 - 04 - 20)), Ok(false));
        assert_eq!(
            gx.add_working_days(date!(2026 - 04 - 17), 1),
            Ok(date!(2026 - 04 - 22))
        );
        let gd = calendar.for_region("440000");
        assert_eq!(gd.is_working_day(date!(2026 - 04 - 20)), Ok(true));
        // The added year is covered now.
        assert_eq!(gd.is_working_day(date!(2027 - 01 - 04)), Ok(true));
        assert_eq!(
            calendar.covered_through(date!(2026 - 12 - 01)),
            Some(date!(2027 - 12 - 31))
        );
        assert_eq!(calendar.overlay_regions().collect::<Vec<_>>(), ["45"]);
    }

    #[test]
    fn a_folder_file_named_for_another_year_is_refused() {
        let dir = std::env::temp_dir().join(format!("tongban-calendar-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("cn-2028.toml"),
            "year = 2027\nsource = \"https://www.gov.cn/x\"\n",
        )
        .unwrap();
        let refused = Calendar::with_folder(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            matches!(refused, Err(CalendarError::Invalid { ref problem, .. }) if problem.contains("cn-<its year>")),
            "{refused:?}"
        );
    }

    /// Every built-in year against the days its notice states for each holiday, and
    /// against the project's copy of the State Council's schedules, as published
    /// (data/calendar/cn_holidays.csv: kind, name, first, last, days).
    #[test]
    fn every_file_agrees_with_the_notices() {
        let csv = include_str!("../../../../data/calendar/cn_holidays.csv");
        let calendar = national();
        let mut rows = 0;
        for line in csv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("year,"))
        {
            let fields: Vec<&str> = line.split(',').collect();
            let [year, kind, name, first, last, days] = fields[..] else {
                panic!("{line}");
            };
            let schedule = &calendar.years[&year.parse::<i32>().unwrap()];
            let parse = |d: &str| {
                Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
            };
            let (first, last) = (parse(first), parse(last));
            let days: u32 = days.parse().unwrap();
            let want = if kind == "off" {
                DayKind::Off
            } else {
                DayKind::Work
            };
            let mut date = first;
            let mut counted = 0;
            while date <= last {
                assert_eq!(schedule.days.get(&date), Some(&want), "{line}: {date}");
                counted += 1;
                date = date.next_day().unwrap();
            }
            assert_eq!(counted, days, "{line}");
            if kind == "off" {
                assert!(
                    schedule.holidays.contains(&(name.to_owned(), days)),
                    "{line}: the file's count differs"
                );
            }
            rows += 1;
        }
        // Every date each file decides is one of the notices' rows.
        let decided: usize = calendar.years.values().map(|s| s.days.len()).sum();
        let listed: u32 = csv
            .lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with("year,"))
            .filter_map(|l| l.rsplit(',').next()?.parse::<u32>().ok())
            .sum();
        assert_eq!(decided, listed as usize);
        assert_eq!(rows, 24);
    }
}
