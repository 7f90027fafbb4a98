//! Filing an application at this node, the whole path in one place: each phase is a
//! plain function in a module named for it, and this file only composes them.
//!
//! - [`check`]: the request read against the catalog, no network — the shared rule set
//!   (同标准办理), what this node cannot do yet, the materials given;
//! - [`recognize`]: pre-review through the federation (智能预审): the applicant's
//!   identity and their licenses, asked of their regions through the gateway;
//! - [`compose`]: the application and the receipt (一次告知) from both, with the handling
//!   region decided and forms filled in from recognized licenses (无感申报); a joint
//!   filing (多地联办) split into its parts by [`joint_plan`];
//! - [`write`]: application, receipt and outbox entry in one store transaction, before
//!   the receipt is returned; a client's retry gets its first receipt back;
//! - [`resume`]: a filing whose lookups could not complete (an issuing region
//!   unreachable) is receipted and waits in pre-review; the forwarder finishes it here.
//!
//! [`request`] and [`receipt`] hold the types the phases share. The filing's span,
//! metrics, audit record and log line are written by [`crate::observe::filing`].

pub mod check;
pub mod compose;
pub mod joint_plan;
pub mod receipt;
pub mod recognize;
pub mod request;
pub mod resume;
pub mod write;

use std::sync::Arc;

use tokio::sync::Notify;
use tongban_proto::{rules::calendar::business_now, v1::Application};
use tongban_runtime::observability::trace_context::TraceParent;

use crate::{
    context::NodeContext,
    observe::filing::{self as record, FilingSpan},
    store::{now_ms, timestamp_ms},
};
use compose::Case;
use recognize::Recognizer;
use resume::Resumed;

pub use receipt::{Receipt, stage_name};
pub use request::{FilingRequest, IntakeError};

/// Files applications at this node.
pub struct Intake {
    pub ctx: Arc<NodeContext>,
    /// Wakes the forwarder when an outbox entry was written.
    pub outbox_written: Arc<Notify>,
    /// Asks the federation for identity and licenses.
    pub recognizer: Recognizer,
}

impl Intake {
    /// Pre-reviews and files; the receipt is returned only once everything is durable
    /// (true: the first receipt of a filing retried with the same client key).
    pub async fn file(
        &self,
        request: FilingRequest,
        client_key: Option<String>,
        parent: Option<TraceParent>,
    ) -> Result<(Receipt, bool), IntakeError> {
        let ctx = &self.ctx;
        let client_key = write::client_key(client_key, &request);
        let now = business_now();
        let checked = check::check(
            &ctx.catalog.get(),
            ctx.regions,
            &ctx.region,
            &request,
            now.date(),
        )?;
        // A retry gets its first receipt, without asking the federation again.
        if let Some(earlier) = write::earlier(&ctx.store, client_key.as_ref()).await? {
            return Ok((earlier, true));
        }
        let filed_ms = now_ms();
        let filed_at = timestamp_ms(filed_ms);
        let case_number = ctx
            .store
            .reserve_case_number(ctx.region.to_string(), Some(filed_at))
            .await?;
        let mut span = FilingSpan::start(ctx, parent.as_ref(), &checked.item.id);
        let trace = span.trace(&case_number);
        let findings = self
            .recognizer
            .recognize(&checked, (&case_number, filed_ms), trace)
            .await;
        let case = Case {
            number: &case_number,
            filed_at,
            now,
            trace,
        };
        let composed = compose::confirmed(&findings)
            .and_then(|()| compose::compose(ctx, &checked, &findings, case))
            .inspect_err(|refusal| span.refused(refusal.summary()))?;
        span.composed(&composed.application.target_region, findings.cached());
        let written = write::write(
            ctx,
            &checked,
            composed,
            findings.complete,
            client_key,
            trace,
        )
        .await?;
        span.filed(ctx, &written.record(&checked, findings.cached(), trace));
        // The forwarder hands the case over (to the gateway, or to our own platform),
        // or goes on with its pre-review.
        self.outbox_written.notify_one();
        Ok((written.receipt(), written.filed.replayed))
    }

    /// Finishes the pre-review of a case filed while verification could not complete:
    /// the lookups again, then either its hand-over or a refusal the citizen sees
    /// (true). `Ok(false)` means the federation still cannot answer: try again later.
    pub async fn resume(
        &self,
        outbox_id: i64,
        application: &Application,
        trace: TraceParent,
    ) -> Result<bool, IntakeError> {
        let resumed =
            resume::resume(&self.ctx, &self.recognizer, outbox_id, application, trace).await?;
        if resumed == Resumed::Completed {
            record::resumed(&application.case_number);
            self.outbox_written.notify_one();
        }
        Ok(resumed != Resumed::Pending)
    }
}
