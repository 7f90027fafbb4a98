//! Check 13: bad requests get precise errors, as the contract says: a problem+json
//! answer with the right status, naming the field. A node (and the people reading its
//! logs) can only fix what an error names.

use crate::platform::{
    conformance::{
        call::Call, fixture::ONE_THING, probe::Probe, report::Verdict, state::State, step::Step,
    },
    contract::wire::{Person, PersonLookup},
};

/// One bad request and the answer it must get.
struct Bad {
    what: &'static str,
    call: Call,
    status: u16,
    /// A word the problem's `detail` (or `type`) must contain.
    names: Option<&'static str>,
}

fn person_lookup(id_number: &str, note: &str) -> Call {
    let body = serde_json::to_vec(&PersonLookup {
        id_number: id_number.to_owned(),
    })
    .unwrap_or_default();
    Call::post("lookup_person", "/v1/persons/lookup", body, note.to_owned())
}

fn bad_requests(state: &State) -> Vec<Bad> {
    let fixtures = &state.fixtures;
    let number = fixtures.case_number();
    let cut = format!("{{\"case_number\": \"{number}\", \"one_thing_id\": ");
    let mut bad_number = fixtures.takeover(&number);
    bad_number.case_number = "conformance-not-a-case-number".to_owned();
    let bad_body = serde_json::to_vec(&bad_number).unwrap_or_default();
    let purpose_case = fixtures.case_number();
    let unknown = fixtures.unknown_person();
    let subject = state
        .known_person
        .clone()
        .unwrap_or_else(|| unknown.clone());
    let get = |what, path: &str| Bad {
        what,
        call: Call::get(
            if path.starts_with("/v1/revocations") {
                "revocations"
            } else {
                "case_events"
            },
            path,
        ),
        status: 400,
        names: None,
    };
    vec![
        Bad {
            what: "a take-over whose body is not JSON (cut off)",
            call: Call::put(
                "take_over",
                format!("/v1/cases/{number}"),
                cut.into_bytes(),
                "malformed JSON: a take-over cut off mid-body".to_owned(),
            )
            .case(&number),
            status: 400,
            names: None,
        },
        Bad {
            what: "a take-over with an invalid case number",
            call: Call::put(
                "take_over",
                "/v1/cases/conformance-not-a-case-number",
                bad_body,
                "a take-over whose case_number is \"conformance-not-a-case-number\"".to_owned(),
            )
            .case("conformance-not-a-case-number"),
            status: 400,
            names: Some("case_number"),
        },
        Bad {
            what: "a person lookup without a purpose of use",
            call: person_lookup(&subject, "a person lookup, no Tongban-Purpose-* headers"),
            status: 400,
            names: Some("purpose"),
        },
        get(
            "case events after an unknown cursor",
            "/v1/case-events?after=conformance-unknown-cursor&limit=10",
        ),
        get(
            "revocations after an unknown cursor",
            "/v1/revocations?after=conformance-unknown-cursor&limit=10",
        ),
        get("case events with limit=0", "/v1/case-events?limit=0"),
        get("case events with limit=5000", "/v1/case-events?limit=5000"),
        Bad {
            what: "a person lookup of a person not in the register",
            call: person_lookup(&unknown, "a person lookup of an ID number nobody holds")
                .purpose(ONE_THING, &purpose_case),
            status: 404,
            names: None,
        },
    ]
}

/// 13: each bad request gets its status as problem+json, naming what was wrong; a known
/// person (if given) is found, so the `404` above is not just a register that finds
/// nobody.
pub async fn bad_requests_answered(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let mut faults = Vec::new();
    let requests = bad_requests(state);
    let total = requests.len();
    for bad in requests {
        let reply = probe.send(step, bad.call).await;
        match reply.expect_problem(bad.status) {
            Ok(problem) => {
                if let Some(word) = bad.names {
                    let said = format!("{} {}", problem.kind, problem.detail).to_lowercase();
                    if !said.contains(word) {
                        faults.push(format!(
                            "{} answered {} but its detail {:?} does not name {word}",
                            bad.what,
                            bad.status,
                            crate::platform::contract::redact::free_text(&problem.detail, 200)
                        ));
                    }
                }
            }
            Err(got) => faults.push(format!("{}: {got}", bad.what)),
        }
    }
    let known = match &state.known_person {
        Some(id) => {
            let purpose_case = state.fixtures.case_number();
            let call = person_lookup(id, "a person lookup of the known person")
                .purpose(ONE_THING, &purpose_case);
            let reply = probe.send(step, call).await;
            match reply.expect_json::<Person>(200) {
                Ok(person) if &person.id_number == id => "; the known person was found (200)",
                Ok(_) => {
                    faults.push("the known person's lookup answered another person".into());
                    ""
                }
                Err(e) => {
                    faults.push(format!("the known person's lookup: {e}"));
                    ""
                }
            }
        }
        None => "; no --known-person given, so a successful lookup was not tried",
    };
    Verdict::from_faults(
        &faults,
        format!(
            "{total} bad requests each answered with its status as problem+json (malformed \
             JSON, an invalid case number named, no purpose, unknown cursors, limits 0 and \
             5000: 400; an unknown person: 404){known}"
        ),
    )
}
