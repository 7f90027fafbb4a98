//! Reading the contract's two feeds (case events, revocations) page by page, as the
//! node does: from a cursor, `limit` at a time, until a page says no more follow, a
//! given cursor is reached, or a bound on pages. Each page's shape is kept so the
//! paging checks can judge it.

use serde::de::DeserializeOwned;

use super::{call::Call, probe::Probe, step::Step};
use crate::platform::contract::wire::{CaseEvent, CaseEventPage, Revocation, RevocationPage};

/// Pages read from the cursor before the test cases to the end of the feed (at most
/// 1000 events each): a platform whose clerks work during the run adds events there.
pub const RANGE_PAGES: usize = 50;

/// A feed of the contract.
pub trait Feed {
    type Item: Clone + PartialEq + std::fmt::Debug;
    type Page: DeserializeOwned;
    const OPERATION: &'static str;
    const PATH: &'static str;
    /// A page's items, next cursor and `more`.
    fn split(page: Self::Page) -> (Vec<Self::Item>, String, bool);
    fn cursor(item: &Self::Item) -> &str;
}

/// `GET /v1/case-events`.
pub struct CaseEvents;

impl Feed for CaseEvents {
    type Item = CaseEvent;
    type Page = CaseEventPage;
    const OPERATION: &'static str = "case_events";
    const PATH: &'static str = "/v1/case-events";
    fn split(page: CaseEventPage) -> (Vec<CaseEvent>, String, bool) {
        (page.events, page.next_cursor, page.more)
    }
    fn cursor(item: &CaseEvent) -> &str {
        &item.cursor
    }
}

/// `GET /v1/revocations`.
pub struct Revocations;

impl Feed for Revocations {
    type Item = Revocation;
    type Page = RevocationPage;
    const OPERATION: &'static str = "revocations";
    const PATH: &'static str = "/v1/revocations";
    fn split(page: RevocationPage) -> (Vec<Revocation>, String, bool) {
        (page.revocations, page.next_cursor, page.more)
    }
    fn cursor(item: &Revocation) -> &str {
        &item.cursor
    }
}

/// Where a read stops (besides a page that says no more follow).
#[derive(Clone, Debug, Default)]
pub struct Until {
    /// Stop once the item with this cursor is read (it is the last one kept).
    pub cursor: Option<String>,
    /// Stop after this many pages.
    pub max_pages: usize,
    /// Stop once this many items are read (the rest of the page is dropped).
    pub max_items: Option<usize>,
}

impl Until {
    pub fn end(max_pages: usize) -> Self {
        Self {
            max_pages,
            ..Self::default()
        }
    }

    pub fn cursor(cursor: &str, max_pages: usize) -> Self {
        Self {
            cursor: Some(cursor.to_owned()),
            max_pages,
            max_items: None,
        }
    }
}

/// One page as it came.
#[derive(Clone, Debug)]
pub struct PageSeen {
    pub after: Option<String>,
    pub limit: u32,
    pub count: usize,
    pub first_cursor: Option<String>,
    pub last_cursor: Option<String>,
    pub next_cursor: String,
    pub more: bool,
}

/// What a read found.
#[derive(Clone, Debug)]
pub struct Read<I> {
    pub items: Vec<I>,
    pub pages: Vec<PageSeen>,
    /// Whether it ended as asked (no more, or the cursor reached) rather than at a bound.
    pub complete: bool,
    /// The last page's `next_cursor` (the request's `after` before any page).
    pub next_cursor: Option<String>,
}

/// The query of a feed request.
pub fn query<F: Feed>(after: Option<&str>, limit: u32) -> String {
    match after {
        Some(after) => format!("{}?after={}&limit={limit}", F::PATH, encode(after)),
        None => format!("{}?limit={limit}", F::PATH),
    }
}

/// Percent-encodes a cursor for a query string (cursors are opaque: any byte may occur).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// Reads `F` from `after` (`None`: the beginning), `limit` at a time. An answer that is
/// not a page is an error naming the request.
pub async fn read<F: Feed>(
    probe: &Probe,
    step: &mut Step,
    after: Option<&str>,
    limit: u32,
    until: &Until,
) -> Result<Read<F::Item>, String> {
    let mut out = Read {
        items: Vec::new(),
        pages: Vec::new(),
        complete: false,
        next_cursor: after.map(str::to_owned),
    };
    let mut cursor = after.map(str::to_owned);
    while out.pages.len() < until.max_pages.max(1) {
        let path = query::<F>(cursor.as_deref(), limit);
        let reply = probe
            .send(step, Call::get(F::OPERATION, path.clone()))
            .await;
        let page: F::Page = reply
            .expect_json(200)
            .map_err(|e| format!("GET {path}: {e}"))?;
        let (items, next, more) = F::split(page);
        out.pages.push(PageSeen {
            after: cursor.clone(),
            limit,
            count: items.len(),
            first_cursor: items.first().map(|i| F::cursor(i).to_owned()),
            last_cursor: items.last().map(|i| F::cursor(i).to_owned()),
            next_cursor: next.clone(),
            more,
        });
        out.next_cursor = Some(next.clone());
        for item in items {
            let reached = until.cursor.as_deref() == Some(F::cursor(&item));
            out.items.push(item);
            if reached {
                out.complete = true;
                return Ok(out);
            }
            if until.max_items.is_some_and(|max| out.items.len() >= max) {
                return Ok(out);
            }
        }
        if !more {
            out.complete = true;
            return Ok(out);
        }
        if out.pages.last().is_some_and(|p| p.count == 0) || cursor.as_deref() == Some(&next) {
            return Err(format!(
                "GET {path}: a page says more follow but does not move the cursor \
                 (next_cursor {next:?}): a reader would loop forever"
            ));
        }
        cursor = Some(next);
    }
    Ok(out)
}

/// What is wrong with the pages' shape, by the contract: at most `limit` items; a page
/// that was not full says no more follow; `next_cursor` is the last item's cursor, or
/// the request's `after` on an empty page.
pub fn page_faults(pages: &[PageSeen]) -> Vec<String> {
    let mut faults = Vec::new();
    for page in pages {
        let at = page.after.as_deref().map_or_else(
            || "from the beginning".to_owned(),
            |a| format!("after {a:?}"),
        );
        if page.count > page.limit as usize {
            faults.push(format!(
                "the page {at} holds {} items with limit={}",
                page.count, page.limit
            ));
        }
        if page.count < page.limit as usize && page.more {
            faults.push(format!(
                "the page {at} with limit={} holds {} items yet says more follow",
                page.limit, page.count
            ));
        }
        let expected = page.last_cursor.as_ref().or(page.after.as_ref());
        if let Some(expected) = expected
            && &page.next_cursor != expected
        {
            faults.push(format!(
                "the page {at} has next_cursor {:?}, not {expected:?} (its last item's \
                 cursor, or the request's after when empty)",
                page.next_cursor
            ));
        }
    }
    faults
}

/// What is wrong with the order of `items` as returned: a cursor that occurs twice,
/// and, when every cursor is a number (as many platforms make them, though the
/// contract keeps them opaque), one that does not increase.
pub fn order_faults<F: Feed>(items: &[F::Item]) -> Vec<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut faults = Vec::new();
    for item in items {
        let cursor = F::cursor(item);
        if !seen.insert(cursor) {
            faults.push(format!("the cursor {cursor:?} occurs more than once"));
        }
    }
    let numbers: Option<Vec<u64>> = items.iter().map(|i| F::cursor(i).parse().ok()).collect();
    if let Some(numbers) = numbers
        && let Some(at) = numbers.windows(2).position(|w| w[1] <= w[0])
    {
        faults.push(format!(
            "the cursor {} comes after {}: numeric cursors must increase as returned",
            numbers[at + 1],
            numbers[at]
        ));
    }
    faults
}

/// Compares two reads of one range: the first item where they part, described.
pub fn first_difference<F: Feed>(
    expected: &[F::Item],
    got: &[F::Item],
    how: &str,
) -> Option<String> {
    for (i, (a, b)) in expected.iter().zip(got).enumerate() {
        if a != b {
            return Some(format!(
                "{how}, item {} is cursor {:?} where one page of the range has {:?}",
                i + 1,
                F::cursor(b),
                F::cursor(a)
            ));
        }
    }
    match expected.len().cmp(&got.len()) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(format!(
            "{how}, {} items came where the range holds {}: {:?} and after are missing",
            got.len(),
            expected.len(),
            F::cursor(&expected[got.len()])
        )),
        std::cmp::Ordering::Less => Some(format!(
            "{how}, {} items came where the range holds {}: {:?} and after are extra",
            got.len(),
            expected.len(),
            F::cursor(&got[expected.len()])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(after: Option<&str>, limit: u32, cursors: &[&str], next: &str, more: bool) -> PageSeen {
        PageSeen {
            after: after.map(str::to_owned),
            limit,
            count: cursors.len(),
            first_cursor: cursors.first().map(|c| (*c).to_owned()),
            last_cursor: cursors.last().map(|c| (*c).to_owned()),
            next_cursor: next.to_owned(),
            more,
        }
    }

    #[test]
    fn pages_are_judged_by_the_contract() {
        let good = [
            page(None, 2, &["a", "b"], "b", true),
            page(Some("b"), 2, &["c"], "c", false),
            page(Some("c"), 2, &[], "c", false),
        ];
        assert!(page_faults(&good).is_empty(), "{:?}", page_faults(&good));
        let bad = [
            page(None, 1, &["a", "b"], "b", true),
            page(Some("b"), 2, &["c"], "c", true),
            page(Some("c"), 2, &[], "x", false),
        ];
        assert_eq!(page_faults(&bad).len(), 3, "{:?}", page_faults(&bad));
    }

    fn revocation(cursor: &str) -> Revocation {
        Revocation {
            cursor: cursor.to_owned(),
            license_id: "440000-1".into(),
            reason: "r".into(),
            revoked_at: "t".into(),
        }
    }

    #[test]
    fn cursors_must_not_repeat_and_numbers_must_increase() {
        let items = |cursors: &[&str]| cursors.iter().map(|c| revocation(c)).collect::<Vec<_>>();
        assert!(order_faults::<Revocations>(&items(&["1", "2", "10"])).is_empty());
        assert!(order_faults::<Revocations>(&items(&["b", "a"])).is_empty());
        assert_eq!(
            order_faults::<Revocations>(&items(&["a", "b", "a"])).len(),
            1
        );
        let faults = order_faults::<Revocations>(&items(&["1", "3", "2"]));
        assert!(faults[0].contains("2 comes after 3"), "{faults:?}");
    }

    #[test]
    fn cursors_are_encoded_for_the_query() {
        assert_eq!(
            query::<CaseEvents>(Some("a b/c"), 5),
            "/v1/case-events?after=a%20b%2Fc&limit=5"
        );
        assert_eq!(query::<Revocations>(None, 100), "/v1/revocations?limit=100");
    }
}
