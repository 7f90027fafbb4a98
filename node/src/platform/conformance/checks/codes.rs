//! Check 11: every status code the platform speaks maps onto a canonical state in the
//! table the node would use. The node never guesses an unmapped code: it stops
//! following the case and alerts, so one missing line in `[platform.status_codes]`
//! stalls every case that reaches that status.

use std::collections::BTreeMap;

use crate::platform::conformance::{
    pages::{self, CaseEvents, Until},
    probe::Probe,
    report::{Verdict, counted},
    state::State,
    step::Step,
};
use crate::platform::contract::wire::MAX_PAGE;

/// Pages of the feed read from its beginning.
pub const CODE_PAGES: usize = 20;

/// 11: the codes of every event's `status` and `previous_status` from the beginning of
/// the feed (bounded), and of the test cases' views.
pub async fn mapped(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let until = Until::end(CODE_PAGES);
    let read = match pages::read::<CaseEvents>(probe, step, None, MAX_PAGE, &until).await {
        Ok(read) => read,
        Err(e) => return Verdict::fail(e),
    };
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for event in &read.items {
        *seen.entry(&event.status).or_default() += 1;
        if let Some(previous) = &event.previous_status {
            *seen.entry(previous).or_default() += 1;
        }
    }
    for case in &state.cases {
        *seen.entry(&case.view.status).or_default() += 1;
    }
    if seen.is_empty() {
        return Verdict::skip(
            "the feed holds no events and no case was taken over: no codes to check",
        );
    }
    let codes = &state.status_codes;
    let unmapped: Vec<String> = seen
        .iter()
        .filter(|(code, _)| codes.canonical(code).is_err())
        .map(|(code, n)| format!("{code:?} ({})", counted(*n, "time", "times")))
        .collect();
    let bound = if read.complete {
        String::new()
    } else {
        format!(" (the first {CODE_PAGES} pages)")
    };
    if !unmapped.is_empty() {
        return Verdict::fail(format!(
            "the status-code table does not map {} of the {} in the feed{bound}: \
             {}; the node would stop following those cases: map each in \
             [platform.status_codes] onto received, accepted, more_materials_needed, \
             approved, rejected, withdrawn or terminated",
            unmapped.len(),
            counted(seen.len(), "status code", "status codes"),
            unmapped.join(", ")
        ));
    }
    let mapped: Vec<String> = seen
        .keys()
        .filter_map(|code| {
            codes
                .canonical(code)
                .ok()
                .map(|s| format!("{code} → {}", s.as_str()))
        })
        .collect();
    Verdict::pass(format!(
        "{} over {}{bound}: every code is mapped ({})",
        counted(read.items.len(), "event", "events"),
        counted(read.pages.len(), "page", "pages"),
        mapped.join(", ")
    ))
}
