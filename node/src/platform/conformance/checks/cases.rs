//! Checks 4–7: cases. A fresh test case is taken over (`201`); the same take-over again
//! creates nothing (`200`, the first answer); another payload under its number is a
//! conflict (`409`); it reads back, and an unknown case is not found (`404`).

use crate::platform::{
    conformance::{
        call::{Call, Reply},
        fixture::{self, random_payload},
        pages::{self, CaseEvents, Until},
        probe::Probe,
        report::Verdict,
        state::{NEEDS_CASES, State, TestCase},
        step::Step,
    },
    contract::{
        status::{CanonicalStatus, StatusCodes},
        wire::{CaseTakeover, CaseView, MAX_PAGE},
    },
};

/// Test cases taken over: enough for the feed checks to page through several events.
pub const TEST_CASES: usize = 3;
/// Pages read to find where the feed ends before the test cases (at most 1000 events
/// each).
pub const TAIL_PAGES: usize = 1000;

/// `PUT /v1/cases/{case_number}` with `takeover`.
pub async fn send_takeover(probe: &Probe, step: &mut Step, takeover: &CaseTakeover) -> Reply {
    let number = &takeover.case_number;
    let body = serde_json::to_vec(takeover).unwrap_or_default();
    let call = Call::put(
        "take_over",
        format!("/v1/cases/{number}"),
        body,
        fixture::note(takeover),
    )
    .case(number);
    probe.send(step, call).await
}

/// How a status code reads in a reason: `已接件 (received)`, or `X (unmapped)`.
pub fn shown_status(codes: &StatusCodes, code: &str) -> String {
    match codes.canonical(code) {
        Ok(status) => format!("{code} ({})", status.as_str()),
        Err(_) => format!("{code} (unmapped)"),
    }
}

/// What is wrong with the platform's view of `takeover`; `expect` is the canonical
/// state it should be in (`None`: any mapped one).
pub fn view_faults(
    codes: &StatusCodes,
    takeover: &CaseTakeover,
    view: &CaseView,
    expect: Option<CanonicalStatus>,
) -> Vec<String> {
    let number = &takeover.case_number;
    let mut faults = Vec::new();
    for (field, got, sent) in [
        ("case_number", &view.case_number, &takeover.case_number),
        ("one_thing_id", &view.one_thing_id, &takeover.one_thing_id),
        (
            "origin_region",
            &view.origin_region,
            &takeover.origin_region,
        ),
    ] {
        if got != sent {
            faults.push(format!(
                "the case {number} answered {field} {got:?}, not {sent:?}"
            ));
        }
    }
    if view.reference.trim().is_empty() {
        faults.push(format!("the case {number} has no reference"));
    }
    if view.sequence == 0 {
        faults.push(format!(
            "the case {number} has sequence 0; a case's sequence starts at 1"
        ));
    }
    match (codes.canonical(&view.status), expect) {
        (Err(_), _) => faults.push(format!(
            "the case {number} has status {:?}, which the status-code table does not map \
             (see check 11)",
            view.status
        )),
        (Ok(status), Some(expected)) if status != expected => faults.push(format!(
            "the case {number} has status {}, where a new case is {}",
            shown_status(codes, &view.status),
            expected.as_str()
        )),
        _ => {}
    }
    faults
}

/// 4: fresh test cases are taken over, `201` with a view of each.
pub async fn take_over(probe: &Probe, state: &mut State, step: &mut Step) -> Verdict {
    // Where the feed ends now: the test cases' events come after this cursor. A failure
    // here is the feed checks' to report.
    let tail = Until::end(TAIL_PAGES);
    state.feed_before = pages::read::<CaseEvents>(probe, step, None, MAX_PAGE, &tail)
        .await
        .ok()
        .map(|read| read.next_cursor);
    let mut faults = Vec::new();
    for _ in 0..TEST_CASES {
        let number = state.fixtures.case_number();
        let takeover = state.fixtures.takeover(&number);
        let reply = send_takeover(probe, step, &takeover).await;
        match reply.expect_json::<CaseView>(201) {
            Ok(view) => {
                let expect = Some(CanonicalStatus::Received);
                faults.extend(view_faults(&state.status_codes, &takeover, &view, expect));
                state.cases.push(TestCase { takeover, view });
            }
            Err(e) => {
                faults.push(format!("the take-over of the new case {number}: {e}"));
                break;
            }
        }
    }
    let Some(first) = state.first_case() else {
        return Verdict::fail(faults.join("; "));
    };
    Verdict::from_faults(
        &faults,
        format!(
            "{} new test cases taken over, each answered 201 with its view; e.g. {} as \
             reference {}, status {}, sequence {}",
            state.cases.len(),
            first.view.case_number,
            first.view.reference,
            shown_status(&state.status_codes, &first.view.status),
            first.view.sequence
        ),
    )
}

/// 5: the same take-over again answers `200` with the first answer, and the feed holds
/// one first event for the case.
pub async fn repeat(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let Some(case) = state.first_case() else {
        return Verdict::skip(NEEDS_CASES);
    };
    let number = &case.takeover.case_number;
    let reply = send_takeover(probe, step, &case.takeover).await;
    let mut faults = Vec::new();
    match reply.status {
        Some(200) => {}
        Some(201) => faults.push(format!(
            "the repeated take-over of {number} answered 201 Created again; a repeat must \
             answer 200 with the case as it stands and create nothing"
        )),
        _ => faults.push(format!(
            "the repeated take-over of {number} {}",
            reply.describe()
        )),
    }
    if let Some(200 | 201) = reply.status {
        match serde_json::from_slice::<CaseView>(&reply.body) {
            Ok(view) => faults.extend(same_case(case, &view)),
            Err(e) => faults.push(format!("the repeat's body is not a CaseView: {e}")),
        }
    }
    let feed_note = match &state.feed_before {
        Some(before) => {
            let until = Until::end(pages::RANGE_PAGES);
            match pages::read::<CaseEvents>(probe, step, before.as_deref(), MAX_PAGE, &until).await
            {
                Ok(read) => {
                    let firsts = read
                        .items
                        .iter()
                        .filter(|e| &e.case_number == number && e.previous_status.is_none())
                        .count();
                    if firsts != 1 {
                        faults.push(format!(
                            "the case-event feed holds {firsts} first events (no \
                             previous_status) for {number}; a case is made once, so exactly one"
                        ));
                    }
                    "; the feed holds one first event for it"
                }
                Err(e) => {
                    faults.push(format!("the case-event feed could not be read: {e}"));
                    ""
                }
            }
        }
        None => "; the feed was not readable before the test cases, so not counted there",
    };
    Verdict::from_faults(
        &faults,
        format!(
            "the repeated take-over of {number} answered 200 with the same reference {} and \
             sequence {}{feed_note}",
            case.view.reference, case.view.sequence
        ),
    )
}

/// What differs between the first answer for `case` and a later `view` of it (the
/// sequence may only have moved with the status, by a clerk).
fn same_case(case: &TestCase, view: &CaseView) -> Vec<String> {
    let number = &case.takeover.case_number;
    let first = &case.view;
    let mut faults = Vec::new();
    if view.reference != first.reference {
        faults.push(format!(
            "{number} now answers reference {:?} where the first answer had {:?}: was a \
             second case made?",
            view.reference, first.reference
        ));
    }
    if view.sequence != first.sequence && view.status == first.status {
        faults.push(format!(
            "{number} now has sequence {} where the first answer had {}, with the status \
             unchanged: something new was made",
            view.sequence, first.sequence
        ));
    }
    faults
}

/// 6: another payload under the same case number answers `409` problem+json.
pub async fn conflict(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let Some(case) = state.first_case() else {
        return Verdict::skip(NEEDS_CASES);
    };
    let mut changed = case.takeover.clone();
    changed.payload = random_payload();
    let number = &changed.case_number;
    let reply = send_takeover(probe, step, &changed).await;
    match reply.expect_problem(409) {
        Ok(problem) => Verdict::pass(format!(
            "a different payload under {number} answered 409 problem+json ({}{})",
            problem.kind,
            if problem.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", problem.detail)
            }
        )),
        Err(got) => Verdict::fail(format!(
            "a different payload under {number} must be refused as a conflict: {got}"
        )),
    }
}

/// 7: the first test case reads back as taken over; an unknown case answers `404`.
pub async fn read(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let mut faults = Vec::new();
    let mut read_note = String::new();
    if let Some(case) = state.first_case() {
        let number = &case.takeover.case_number;
        let call = Call::get("read_case", format!("/v1/cases/{number}")).case(number);
        let reply = probe.send(step, call).await;
        match reply.expect_json::<CaseView>(200) {
            Ok(view) => {
                faults.extend(view_faults(
                    &state.status_codes,
                    &case.takeover,
                    &view,
                    None,
                ));
                faults.extend(same_case(case, &view));
                read_note = format!(
                    "{number} reads back (200) as taken over, reference {}, status {}",
                    view.reference,
                    shown_status(&state.status_codes, &view.status)
                );
            }
            Err(e) => faults.push(format!("GET /v1/cases/{number}: {e}")),
        }
    }
    let unknown = state.fixtures.case_number();
    let call = Call::get("read_case", format!("/v1/cases/{unknown}")).case(&unknown);
    let reply = probe.send(step, call).await;
    if let Err(e) = reply.expect_problem(404) {
        faults.push(format!(
            "GET /v1/cases/{unknown} (a case never taken over): {e}"
        ));
    }
    if !faults.is_empty() {
        return Verdict::fail(faults.join("; "));
    }
    if read_note.is_empty() {
        return Verdict::skip(format!(
            "{NEEDS_CASES} (an unknown case answered 404 as it should)"
        ));
    }
    Verdict::pass(format!(
        "{read_note}; an unknown case answered 404 problem+json"
    ))
}
