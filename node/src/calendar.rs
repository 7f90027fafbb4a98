//! The official calendar in force at this node: the release's State Council schedules
//! with the folder `[calendar] folder` laid over them (a new year's schedule, added
//! without a release; regions' own days), read again by every reload. Promised dates
//! count working days in the handling region's calendar; where a year on the way has no
//! schedule the promise is left empty, logged and counted, never guessed from weekends.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use serde::{Deserialize, Serialize};
use time::Date;
use tongban_proto::rules::{
    calendar::{business_now, schedule::CalendarError, working_days::Calendar},
    catalog::CatalogItem,
    region::RegionCode,
};

use crate::in_force::InForce;

/// The `[calendar]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// A folder of `cn-<year>.toml` files (a year's State Council schedule, as in the
    /// repository's `data/calendar/`: a year the release lacks, or a corrected one) and
    /// `overlay-*.toml` files (a region's own days off and working days, `region =
    /// "45"`). Laid over the schedules built into the release; read again by a reload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
}

impl CalendarConfig {
    pub fn is_default(&self) -> bool {
        self.folder.is_none()
    }

    /// The calendar this section names.
    pub fn load(&self) -> Result<Calendar, CalendarError> {
        match &self.folder {
            Some(folder) => Calendar::with_folder(folder),
            None => Calendar::built_in(),
        }
    }
}

/// The calendar in force (a reload replaces it whole) and the promises it could not
/// make.
#[derive(Clone)]
pub struct NodeCalendar {
    pub in_force: InForce<Calendar>,
    unknown: Arc<AtomicU64>,
}

impl NodeCalendar {
    pub fn new(calendar: Calendar) -> Self {
        Self {
            in_force: InForce::new(calendar),
            unknown: Arc::default(),
        }
    }

    /// When `item`, filed on `filed_on`, is promised by the region `handling`: its time
    /// limit in working days of that region's calendar. `None` (logged, counted) where
    /// the calendar has no schedule for a year the count reaches.
    pub fn promised_date(
        &self,
        item: &CatalogItem,
        handling: &RegionCode,
        filed_on: Date,
    ) -> Option<Date> {
        self.working_days_after(&item.id, handling, filed_on, item.time_limit_working_days)
    }

    /// `days` working days after `from` in the calendar of region `handling`, for
    /// one-thing `one_thing` (a joint case's part counts from what it waits for). `None`
    /// (logged, counted) where the calendar has no schedule for a year the count reaches.
    pub fn working_days_after(
        &self,
        one_thing: &str,
        handling: &RegionCode,
        from: Date,
        days: u32,
    ) -> Option<Date> {
        let calendar = self.in_force.get();
        match calendar
            .for_region(handling.as_str())
            .add_working_days(from, days)
        {
            Ok(date) => Some(date),
            Err(error) => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    one_thing,
                    handling_region = %handling,
                    %error,
                    "no promised date: the official calendar does not reach it"
                );
                None
            }
        }
    }

    /// Its metrics, read at scrape time.
    pub fn collector(&self) -> CalendarCollector {
        CalendarCollector {
            calendar: self.in_force.clone(),
            unknown: self.unknown.clone(),
        }
    }
}

/// What a reload says it loaded.
pub fn describe(calendar: &Calendar) -> String {
    let years: Vec<String> = calendar.years().map(|y| y.to_string()).collect();
    let overlays: Vec<&str> = calendar.overlay_regions().collect();
    if overlays.is_empty() {
        format!("calendar: years {}", years.join(", "))
    } else {
        format!(
            "calendar: years {}, overlays for {}",
            years.join(", "),
            overlays.join(", ")
        )
    }
}

/// Read at scrape time: how many days of promised dates the calendar still covers (0
/// when today's year has no schedule), and the promises left empty since start.
pub struct CalendarCollector {
    calendar: InForce<Calendar>,
    unknown: Arc<AtomicU64>,
}

impl std::fmt::Debug for CalendarCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CalendarCollector")
    }
}

use tongban_proto::contract::node_metrics::{
    CALENDAR_COVERED_DAYS as COVERED_DAYS, PROMISED_DATES_UNKNOWN as PROMISES_UNKNOWN,
};

impl Collector for CalendarCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let today = business_now().date();
        let covered = self
            .calendar
            .get()
            .covered_through(today)
            .map_or(0, |last| (last - today).whole_days() + 1);
        let gauge = ConstGauge::new(covered);
        gauge.encode(encoder.encode_descriptor(
            COVERED_DAYS,
            "Days from today through the last day the official calendar has a schedule for \
             (promised dates further out cannot be computed)",
            None,
            gauge.metric_type(),
        )?)?;
        let counter = ConstCounter::new(self.unknown.load(Ordering::Relaxed));
        counter.encode(encoder.encode_descriptor(
            PROMISES_UNKNOWN,
            "Filings whose promised date was left empty: the handling region's calendar has \
             no schedule for a year it reaches",
            None,
            counter.metric_type(),
        )?)?;
        Ok(())
    }
}
