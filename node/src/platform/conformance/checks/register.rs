//! Check 12: the revocation feed, which the node follows to withdraw what it vouched
//! for: ordered (no cursor twice), paged (one a page gives the same), resumable (from
//! the middle, exactly the rest), and a license the team revoked before the run is in
//! it and reads as revoked.

use crate::platform::{
    conformance::{
        call::Call,
        fixture::ONE_THING,
        pages::{self, Read, Revocations, Until},
        probe::Probe,
        report::{Verdict, counted},
        state::State,
        step::Step,
    },
    contract::wire::{License, MAX_PAGE, Revocation},
};

/// Pages of the revocation feed read from its beginning.
pub const REVOCATION_PAGES: usize = 20;
/// Revocations compared one a page.
pub const PAGED_REVOCATIONS: usize = 40;

/// Paging and resumption over what `all` read.
async fn paging_faults(probe: &Probe, step: &mut Step, all: &Read<Revocation>) -> Vec<String> {
    let items = &all.items;
    let mut faults = Vec::new();
    let n = items.len().min(PAGED_REVOCATIONS);
    let small = Until {
        cursor: Some(items[n - 1].cursor.clone()),
        max_pages: n + 1,
        max_items: Some(n),
    };
    match pages::read::<Revocations>(probe, step, None, 1, &small).await {
        Ok(read) => {
            faults.extend(pages::page_faults(&read.pages));
            faults.extend(pages::first_difference::<Revocations>(
                &items[..n],
                &read.items,
                "read with limit=1",
            ));
        }
        Err(e) => faults.push(e),
    }
    if items.len() >= 2 {
        let middle = items.len() / 2;
        let from = &items[middle - 1].cursor;
        let until = Until::cursor(&items[items.len() - 1].cursor, REVOCATION_PAGES);
        match pages::read::<Revocations>(probe, step, Some(from), MAX_PAGE, &until).await {
            Ok(read) => faults.extend(pages::first_difference::<Revocations>(
                &items[middle..],
                &read.items,
                &format!("resuming after {from:?}"),
            )),
            Err(e) => faults.push(e),
        }
    }
    faults
}

/// Whether `license_id` is in the feed and reads as revoked.
async fn revoked_faults(
    probe: &Probe,
    state: &State,
    step: &mut Step,
    all: &Read<Revocation>,
    license_id: &str,
) -> Vec<String> {
    let mut faults = Vec::new();
    if !all.items.iter().any(|r| r.license_id == license_id) {
        faults.push(format!(
            "the license {license_id}, revoked before the run, is not among the {} \
             revocations in the feed{}",
            all.items.len(),
            if all.complete {
                ""
            } else {
                " read (a bounded read)"
            }
        ));
    }
    let purpose_case = state.fixtures.case_number();
    let call = Call::get("read_license", format!("/v1/licenses/{license_id}"))
        .purpose(ONE_THING, &purpose_case);
    let reply = probe.send(step, call).await;
    match reply.expect_json::<License>(200) {
        Ok(license) if license.revoked_at.is_none() => faults.push(format!(
            "GET /v1/licenses/{license_id} reads as not revoked (no revoked_at)"
        )),
        Ok(_) => {}
        Err(e) => faults.push(format!("GET /v1/licenses/{license_id}: {e}")),
    }
    faults
}

/// 12: the revocation feed from its beginning (bounded).
pub async fn revocations(probe: &Probe, state: &State, step: &mut Step) -> Verdict {
    let until = Until::end(REVOCATION_PAGES);
    let all = match pages::read::<Revocations>(probe, step, None, MAX_PAGE, &until).await {
        Ok(read) => read,
        Err(e) => return Verdict::fail(e),
    };
    if all.items.is_empty() && state.expect_revoked.is_none() {
        return Verdict::skip(
            "the revocation feed is empty and no license was named as revoked: revoke a \
             license at the platform and run again with --expect-revoked <license id>",
        );
    }
    let mut faults = pages::order_faults::<Revocations>(&all.items);
    faults.extend(pages::page_faults(&all.pages));
    if !all.items.is_empty() {
        faults.extend(paging_faults(probe, step, &all).await);
    }
    let visible = match &state.expect_revoked {
        Some(id) => {
            faults.extend(revoked_faults(probe, state, step, &all, id).await);
            format!("; {id} is in it and reads as revoked")
        }
        None => {
            "; no --expect-revoked given, so whether a revocation shows was not checked".to_owned()
        }
    };
    Verdict::from_faults(
        &faults,
        format!(
            "{} over {}, no cursor twice, the same one a page and when resumed from the \
             middle{visible}",
            counted(all.items.len(), "revocation", "revocations"),
            counted(all.pages.len(), "page", "pages")
        ),
    )
}
