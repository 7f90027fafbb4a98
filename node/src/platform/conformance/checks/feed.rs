//! Checks 8–10: the case-event feed, which the node follows so that no status change is
//! ever missed. Read from where it stood before the test cases: their events in the
//! order made, each transition allowed; the same range read one event a page gives the
//! same events; resuming from a cursor in the middle gives exactly the rest.

use std::collections::BTreeMap;

use crate::platform::{
    conformance::{
        pages::{self, CaseEvents, RANGE_PAGES, Until},
        probe::Probe,
        report::{Verdict, counted},
        state::{NEEDS_CASES, State, TestCase},
        step::Step,
    },
    contract::{
        status::{CanonicalStatus, StatusCodes},
        wire::{CaseEvent, MAX_PAGE},
    },
};

/// Events compared one a page (each is a call).
pub const PAGED_EVENTS: usize = 40;

const NO_START: &str = "the case-event feed could not be read before the test cases were \
                        made (see check 4), so there is no cursor to read their events from";
const NO_RANGE: &str = "the feed range could not be read (check 8)";

/// What is wrong with one test case's events, in feed order.
fn case_faults(codes: &StatusCodes, case: &TestCase, events: &[&CaseEvent]) -> Vec<String> {
    let number = &case.takeover.case_number;
    let mut faults = Vec::new();
    let mut previous: Option<&CaseEvent> = None;
    for event in events {
        let at = format!(
            "{number}'s event {:?} (sequence {})",
            event.cursor, event.sequence
        );
        match previous {
            None => {
                if event.previous_status.is_some() {
                    faults.push(format!("{at} is its first yet has a previous_status"));
                }
                if event.sequence != case.view.sequence {
                    faults.push(format!(
                        "{at} is its first, but the take-over answered sequence {}",
                        case.view.sequence
                    ));
                }
            }
            Some(prior) => {
                if event.sequence <= prior.sequence {
                    faults.push(format!(
                        "{at} follows sequence {}: sequences must increase",
                        prior.sequence
                    ));
                }
                if event.previous_status.as_deref() != Some(prior.status.as_str()) {
                    faults.push(format!(
                        "{at} has previous_status {:?}, but the event before it left {:?}",
                        event.previous_status, prior.status
                    ));
                }
            }
        }
        let from = previous.map(|p| codes.canonical(&p.status));
        match (from.transpose(), codes.canonical(&event.status)) {
            (Ok(from), Ok(to)) if !to.may_follow(from) => faults.push(format!(
                "{at} moves {} → {}, which the canonical machine does not allow",
                from.map_or("(new)", CanonicalStatus::as_str),
                to.as_str()
            )),
            (Err(e), _) | (_, Err(e)) => faults.push(format!(
                "{at}: status {:?} is unmapped, so its transition cannot be checked (check 11)",
                e.code
            )),
            _ => {}
        }
        previous = Some(event);
    }
    faults
}

/// 8: from the cursor before the test cases, their events in the order they were made,
/// each case's sequence increasing, `previous_status` chaining, transitions allowed.
pub async fn order(probe: &Probe, state: &mut State, step: &mut Step) -> Verdict {
    let Some(before) = state.feed_before.clone() else {
        return Verdict::skip(NO_START);
    };
    if state.cases.is_empty() {
        return Verdict::skip(NEEDS_CASES);
    }
    let until = Until::end(RANGE_PAGES);
    let read =
        match pages::read::<CaseEvents>(probe, step, before.as_deref(), MAX_PAGE, &until).await {
            Ok(read) => read,
            Err(e) => return Verdict::fail(e),
        };
    let mut faults = pages::order_faults::<CaseEvents>(&read.items);
    let mut by_case: BTreeMap<&str, Vec<&CaseEvent>> = BTreeMap::new();
    for event in &read.items {
        by_case.entry(&event.case_number).or_default().push(event);
    }
    let mut last_position: Option<(usize, &str)> = None;
    for case in &state.cases {
        let number = case.takeover.case_number.as_str();
        let Some(events) = by_case.get(number) else {
            faults.push(format!(
                "no event for the test case {number} (taken over as reference {}) among the \
                 {} events after the starting cursor: the feed skipped it",
                case.view.reference,
                read.items.len()
            ));
            continue;
        };
        let position = read.items.iter().position(|e| e.case_number == number);
        if let (Some(position), Some((prior, prior_number))) = (position, last_position)
            && position < prior
        {
            faults.push(format!(
                "{number}'s first event comes before {prior_number}'s, though \
                 {prior_number} was taken over first"
            ));
        }
        if let Some(position) = position {
            last_position = Some((position, number));
        }
        faults.extend(case_faults(&state.status_codes, case, events));
    }
    let count = read.items.len();
    let complete = read.complete;
    state.range = Some(read.items);
    Verdict::from_faults(
        &faults,
        format!(
            "the {count} events after the starting cursor{} hold the {} test cases' events \
             in the order made; each case's sequence increases, previous_status chains and \
             every transition is allowed",
            if complete { "" } else { " (a bounded read)" },
            state.cases.len()
        ),
    )
}

/// 9: the range read one event a page holds exactly what it holds read in large
/// pages, `more` true while pages are full and false at the end.
pub async fn paging(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let (Some(before), Some(range)) = (&state.feed_before, &state.range) else {
        return Verdict::skip(NO_RANGE);
    };
    if range.len() < 2 {
        return Verdict::skip(format!(
            "the range holds {} event(s): too few to page through",
            range.len()
        ));
    }
    let n = range.len().min(PAGED_EVENTS);
    let expected = &range[..n];
    let end = &expected[n - 1].cursor;
    let mut faults = Vec::new();
    let large = Until::cursor(end, RANGE_PAGES);
    match pages::read::<CaseEvents>(probe, step, before.as_deref(), MAX_PAGE, &large).await {
        Ok(read) => {
            faults.extend(pages::page_faults(&read.pages));
            faults.extend(pages::first_difference::<CaseEvents>(
                expected,
                &read.items,
                "read again in large pages",
            ));
        }
        Err(e) => faults.push(e),
    }
    let small = Until {
        cursor: Some(end.clone()),
        max_pages: n + 1,
        max_items: Some(n),
    };
    match pages::read::<CaseEvents>(probe, step, before.as_deref(), 1, &small).await {
        Ok(read) => {
            faults.extend(pages::page_faults(&read.pages));
            faults.extend(pages::first_difference::<CaseEvents>(
                expected,
                &read.items,
                "read with limit=1",
            ));
            if let Some(stop) = read.pages.iter().position(|p| !p.more)
                && stop + 1 < n
            {
                faults.push(format!(
                    "with limit=1, the page after {:?} says no more follow, yet {} \
                     events of the range follow it",
                    read.pages[stop].after,
                    n - stop - 1
                ));
            }
        }
        Err(e) => faults.push(e),
    }
    Verdict::from_faults(
        &faults,
        format!(
            "{n} events read one a page are exactly those of the large pages (same cursors, \
             same order), more true on every full page"
        ),
    )
}

/// 10: from a cursor in the middle of the range, exactly the rest; from its end,
/// nothing of it again.
pub async fn resumption(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let Some(range) = &state.range else {
        return Verdict::skip(NO_RANGE);
    };
    if range.len() < 2 {
        return Verdict::skip(format!(
            "the range holds {} event(s): no middle to resume from",
            range.len()
        ));
    }
    let middle = range.len() / 2;
    let from = &range[middle - 1].cursor;
    let end = &range[range.len() - 1].cursor;
    let mut faults = Vec::new();
    let until = Until::cursor(end, RANGE_PAGES);
    match pages::read::<CaseEvents>(probe, step, Some(from), MAX_PAGE, &until).await {
        Ok(read) => faults.extend(pages::first_difference::<CaseEvents>(
            &range[middle..],
            &read.items,
            &format!("resuming after {from:?}"),
        )),
        Err(e) => faults.push(e),
    }
    match pages::read::<CaseEvents>(probe, step, Some(end), MAX_PAGE, &Until::end(1)).await {
        Ok(read) => {
            faults.extend(pages::page_faults(&read.pages));
            let repeated: Vec<&str> = read
                .items
                .iter()
                .filter(|e| range.iter().any(|r| r.cursor == e.cursor))
                .map(|e| e.cursor.as_str())
                .collect();
            if !repeated.is_empty() {
                faults.push(format!(
                    "resuming after the last cursor {end:?} lists again {repeated:?}"
                ));
            }
        }
        Err(e) => faults.push(e),
    }
    Verdict::from_faults(
        &faults,
        format!(
            "resuming after {from:?} gives exactly the {} that follow it, none skipped or \
             repeated; after the last cursor nothing of the range comes again",
            counted(range.len() - middle, "event", "events")
        ),
    )
}
