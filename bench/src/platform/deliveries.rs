//! The deliveries of the scenario, each a new case: a valid application (a synthetic
//! Guangdong resident, filed in Shanghai, as the relay table's) with a case number and
//! an idempotency key of its own; and what each platform holds afterwards, read from
//! its database.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicU64},
};

use prost::Message;
use tongban_node::platform::embedded::EmbeddedPlatform;
use tongban_proto::{
    contract::metadata,
    rules::region::RegionPrefix,
    v1::{Application, DeliverApplicationRequest},
};

use crate::{
    load::{self, Caller, Payloads},
    measure,
};

/// Call `n`'s delivery: case `310000-20261201-<n+1>` under key `bench-delivery-<n+1>`.
fn delivery(template: &Application, n: u64) -> (bytes::Bytes, String) {
    let seq = n + 1;
    let mut application = template.clone();
    application.case_number = format!("310000-20261201-{seq:08}");
    let message = DeliverApplicationRequest {
        application: Some(application),
    }
    .encode_to_vec();
    (message.into(), format!("bench-delivery-{seq}"))
}

/// Fresh deliveries, numbered by one counter for both nodes (so no case number is used
/// twice in the run), and the size of one encoded request.
pub fn fresh() -> anyhow::Result<(Payloads, usize)> {
    let template = measure::application("310000-20261201-00000000")?;
    let size = delivery(&template, 0).0.len();
    let make = move |n| delivery(&template, n);
    Ok((
        Payloads::Fresh {
            make: Arc::new(make),
            next: Arc::new(AtomicU64::new(0)),
        },
        size,
    ))
}

/// One delivery of `payloads` through `caller`: the error's text if it failed.
pub async fn once(caller: &Caller, payloads: &Payloads) -> Result<(), String> {
    let Payloads::Fresh { make, next } = payloads else {
        return Err("not fresh deliveries".into());
    };
    let (message, key) = make(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let mut caller = caller.clone();
    caller.metadata.push((metadata::IDEMPOTENCY_KEY, key));
    load::once(&caller, message).await
}

/// What a platform's database holds: cases taken over (each case's first event) and
/// later changes (a clerk's decisions: none while no clerk runs).
pub struct Held {
    pub cases: u64,
    pub later_events: u64,
}

/// Reads the feed of the platform database at `path` (region 44's) from its start.
pub async fn held(path: &Path) -> anyhow::Result<Held> {
    let platform = EmbeddedPlatform::open(path, &RegionPrefix::parse("44")?)?;
    let mut held = Held {
        cases: 0,
        later_events: 0,
    };
    let mut cursor = String::new();
    loop {
        let page = platform
            .case_events_after(&cursor, 1000)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        for event in &page.events {
            match event.previous {
                None => held.cases += 1,
                Some(_) => held.later_events += 1,
            }
        }
        cursor = page.next_cursor;
        if !page.more {
            return Ok(held);
        }
    }
}
