//! Promised dates by the official calendar, through real nodes: the receipt's promise
//! counts working days in the handling region's calendar (a region's overlay moves
//! it), a new year's schedule added to the calendar folder is taken by a reload without
//! a release, and a broken file is refused whole while the calendar in force stays.
//! Every expectation is computed from the same files by the calendar itself, so the test
//! holds on whatever day it runs; the arithmetic on the real 2025 and 2026 dates is
//! tested in `proto/src/rules/calendar/working_days.rs`.

// Test helpers may panic: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use time::{Date, Duration};
use tongban_kit::testing::{TestFederation, medical_filing, start_with};
use tongban_node::{calendar::CalendarConfig, portal_client::PortalClient};
use tongban_proto::rules::calendar::{business_now, working_days::Calendar};

/// Region 44's own days off: the ten days after today.
fn write_overlay(folder: &Path, today: Date) {
    let first = today + Duration::days(1);
    let last = today + Duration::days(10);
    std::fs::write(
        folder.join("overlay-44.toml"),
        format!(
            "# A test overlay: ten days off in Guangdong from tomorrow.\n\
             region = \"44\"\nsource = \"https://www.gd.gov.cn/\"\n\
             off = [{{ name = \"测试假日\", first = \"{first}\", last = \"{last}\", days = 10 }}]\n"
        ),
    )
    .unwrap();
}

/// What the calendar of `folder` promises a one-day case handled at `handling` filed
/// today: a date, or empty where it has no schedule for the year.
fn promise(calendar: &Calendar, handling: &str, today: Date) -> String {
    calendar
        .for_region(handling)
        .add_working_days(today, 1)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

async fn file_at_31(t: &TestFederation) -> serde_json::Value {
    let resident = &t.residents("44")[0];
    let receipt = t
        .fed
        .node("31")
        .unwrap()
        .portal
        .file(&medical_filing(resident))
        .await
        .unwrap();
    assert_eq!(receipt.status, 201, "{}", receipt.body);
    receipt.body
}

async fn covered_days(admin: &PortalClient) -> i64 {
    let text = admin.get("/metrics").await.unwrap().body;
    let text = text.as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("tongban_node_calendar_covered_days "))
        .unwrap_or_else(|| panic!("no calendar gauge in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn days_through_year_end(today: Date, year: i32) -> i64 {
    let last = Date::from_calendar_date(year, time::Month::December, 31).unwrap();
    (last - today).whole_days() + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promises_follow_the_handling_regions_calendar_and_a_new_year_loads_by_reload() {
    let folder = tempfile::tempdir().unwrap();
    let today = business_now().date();
    write_overlay(folder.path(), today);
    let t = start_with(&["310000", "440000"], |spec| {
        spec.node_calendar = CalendarConfig {
            folder: Some(folder.path().to_owned()),
        };
    })
    .await;

    // The promise counts in the handling region's calendar, its overlay included.
    let receipt = file_at_31(&t).await;
    let handling = receipt["handling_region"].as_str().unwrap().to_owned();
    assert!(handling.starts_with("44"), "{receipt}");
    let with_overlay = Calendar::with_folder(folder.path()).unwrap();
    let national = Calendar::built_in().unwrap();
    let promised = receipt["promised_date"].as_str().unwrap();
    assert_eq!(
        promised,
        promise(&with_overlay, &handling, today),
        "{receipt}"
    );
    let without = promise(&national, &handling, today);
    if !promised.is_empty() && !without.is_empty() {
        assert_ne!(
            promised, without,
            "the overlay's ten days off moved nothing"
        );
    }
    let n31 = t.fed.node("31").unwrap();
    let built_in_cover = national
        .covered_through(today)
        .map_or(0, |last| (last - today).whole_days() + 1);
    assert_eq!(covered_days(&n31.admin).await, built_in_cover);

    // Schedules for the next years, added to the folder (test files: no holidays), are
    // taken by a reload: no release, no restart.
    let years = today.year()..=today.year() + 2;
    let built_in: Vec<i32> = national.years().collect();
    for year in years.clone().filter(|y| !built_in.contains(y)) {
        std::fs::write(
            folder.path().join(format!("cn-{year}.toml")),
            format!("# A test year.\nyear = {year}\nsource = \"https://www.gov.cn/\"\n"),
        )
        .unwrap();
    }
    let reloaded = n31
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(reloaded.status, 200, "{:?}", reloaded.body);
    assert!(
        reloaded.body.to_string().contains("calendar: years"),
        "{:?}",
        reloaded.body
    );
    assert_eq!(
        covered_days(&n31.admin).await,
        days_through_year_end(today, today.year() + 2)
    );
    let receipt = file_at_31(&t).await;
    let now_covered = Calendar::with_folder(folder.path()).unwrap();
    let promised = receipt["promised_date"].as_str().unwrap();
    assert_eq!(
        promised,
        promise(&now_covered, &handling, today),
        "{receipt}"
    );
    assert_eq!(promised.len(), 10, "every year is covered now: {receipt}");

    // A broken file is refused whole, by name; the calendar in force stays.
    std::fs::write(
        folder.path().join(format!("cn-{}.toml", today.year() + 3)),
        format!(
            "year = {}\nsource = \"https://www.gov.cn/\"\n\
             off = [{{ name = \"春节\", first = \"{}-02-01\", last = \"{}-02-03\", days = 7 }}]\n",
            today.year() + 3,
            today.year() + 3,
            today.year() + 3
        ),
    )
    .unwrap();
    let refused = n31
        .operator
        .send("POST", "/reload", bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    let said = refused.body.to_string();
    assert!(
        said.contains("calendar") && said.contains("the notice says 7"),
        "{said}"
    );
    assert_eq!(
        covered_days(&n31.admin).await,
        days_through_year_end(today, today.year() + 2)
    );
    t.shutdown().await;
}
