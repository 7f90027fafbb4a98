//! The conformance kit: numbered checks a provincial team runs against its own platform,
//! with no federation running, to learn whether a node can stand in front of it
//! (`tongban platform conformance`). Each check sends what the node would send (the
//! node's own TLS configuration and authentication policy), records what was sent and
//! what came back, and passes, fails or is skipped with its reason in one sentence.
//!
//! The run reads as the list of checks in [`run`]; each lives in `checks/` by area.
//! Beside them: `options` (what a run is told), `call` (one call and its answer), `probe` (sending it,
//! recorded; `handshake` when a failure
//! needs a second look to be named), `pages`
//! (reading a feed page by page), `fixture` (the test cases: case numbers `9…` that no
//! federation gives, one-thing `conformance-check`, a synthetic applicant), `state`
//! (what a check leaves for later ones), `step` (a check while it runs), `mask`
//! (personal data out of the report), `report` (the result, as text and JSON).
//!
//! The kit leaves test cases behind at the platform (three, numbered
//! `<origin>-<today>-9…`, one-thing `conformance-check`): a platform cannot be checked
//! for idempotent take-over without taking something over.

pub mod call;
pub mod checks;
pub mod fixture;
pub mod handshake;
pub mod mask;
pub mod options;
pub mod pages;
pub mod probe;
pub mod report;
pub mod state;
pub mod step;

pub use options::Options;
pub use probe::SetupError;
pub use report::{CheckId, CheckResult, Exchange, Outcome, Report, Verdict};

use checks::{cases, codes, errors, feed, register, timing, transport};
use probe::Probe;
use state::State;
use step::Step;

/// Runs every check against the platform `options` names. Fails only on the kit's own
/// settings (an unreadable CA or secret file, a URL that is not `https`, a bad region);
/// whatever the platform does is in the report.
pub async fn run(options: &Options) -> Result<Report, SetupError> {
    let started_at = tongban_proto::rules::calendar::business_now()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let probe = Probe::new(&options.url, &options.tls, &options.auth, options.timeout).await?;
    let fixtures = fixture::Fixtures::new(&options.origin_region, &options.target_region())
        .map_err(SetupError::Options)?;
    let mut state = State::new(options, fixtures);
    let mut results = Vec::with_capacity(CheckId::ALL.len());

    let mut step = Step::new(CheckId::Tls);
    let tls = transport::tls(&probe, &mut step).await;
    let connected = tls.outcome == Outcome::Pass;
    results.push(step.finish(tls));

    for id in CheckId::ALL.into_iter().skip(1) {
        let mut step = Step::new(id);
        let verdict = if !connected {
            Verdict::skip(
                "no TLS connection to the platform (check 1), so nothing else can be checked",
            )
        } else {
            match id {
                CheckId::Tls => continue,
                CheckId::Health => transport::health(&probe, &mut step).await,
                CheckId::Authentication => transport::authentication(&probe, &mut step).await,
                CheckId::TakeOver => cases::take_over(&probe, &mut state, &mut step).await,
                CheckId::RepeatTakeOver => cases::repeat(&probe, &state, &mut step).await,
                CheckId::Conflict => cases::conflict(&probe, &state, &mut step).await,
                CheckId::ReadCase => cases::read(&probe, &state, &mut step).await,
                CheckId::FeedOrder => feed::order(&probe, &mut state, &mut step).await,
                CheckId::FeedPaging => feed::paging(&probe, &state, &mut step).await,
                CheckId::FeedResumption => feed::resumption(&probe, &state, &mut step).await,
                CheckId::StatusCodes => codes::mapped(&probe, &state, &mut step).await,
                CheckId::Revocations => register::revocations(&probe, &state, &mut step).await,
                CheckId::BadRequests => {
                    errors::bad_requests_answered(&probe, &state, &mut step).await
                }
                CheckId::Timing => timing::within_timeout(&probe),
            }
        };
        results.push(step.finish(verdict));
    }
    let timeout_ms = u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX);
    Ok(Report::new(
        options.url.clone(),
        started_at,
        timeout_ms,
        results,
    ))
}
