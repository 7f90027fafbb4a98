//! What one check leaves for the later ones: where the case-event feed stood before
//! the test cases, the test cases and the platform's first answers, and the feed range
//! they were read in.

use super::{fixture::Fixtures, options::Options};
use crate::platform::contract::{
    status::StatusCodes,
    wire::{CaseEvent, CaseTakeover, CaseView},
};

/// A test case the kit handed over.
#[derive(Clone, Debug)]
pub struct TestCase {
    pub takeover: CaseTakeover,
    /// The platform's answer to the first take-over.
    pub view: CaseView,
}

/// Findings shared between checks.
#[derive(Debug)]
pub struct State {
    pub fixtures: Fixtures,
    pub status_codes: StatusCodes,
    pub expect_revoked: Option<String>,
    pub known_person: Option<String>,
    /// Where the case-event feed ended before the test cases: `Some(None)` when it was
    /// empty (read from its beginning), `None` when it could not be read.
    pub feed_before: Option<Option<String>>,
    /// The test cases taken over, in the order they were made.
    pub cases: Vec<TestCase>,
    /// The events from `feed_before` to the last one read by the order check.
    pub range: Option<Vec<CaseEvent>>,
}

impl State {
    pub fn new(options: &Options, fixtures: Fixtures) -> Self {
        Self {
            fixtures,
            status_codes: options.status_codes.clone(),
            expect_revoked: options.expect_revoked.clone(),
            known_person: options.known_person.clone(),
            feed_before: None,
            cases: Vec::new(),
            range: None,
        }
    }

    /// The first test case, when check 4 made it.
    pub fn first_case(&self) -> Option<&TestCase> {
        self.cases.first()
    }
}

/// Why a check that needs the test cases does not run.
pub const NEEDS_CASES: &str = "the test cases could not be taken over (check 4), so there is \
                               nothing to check this against";
