//! The gateway's call pipeline: the whole path of a relayed call in one place.
//!
//! Each phase is a plain function over the [`Call`] value, in a module named for it, so
//! it is unit-tested without a network. A relayed call is routed by its metadata and
//! forwarded as bytes; a decoded lookup (mutual recognition) is routed by its content,
//! answered from the cache or the issuer, and judged, in `recognition`. A later concern
//! is one line here, where it belongs in the order:
//! - [`crate::admission`] admits the call once its caller is known, counts it against
//!   its target after `route`, and charges every byte buffered for it;
//! - the span ([`crate::trace`]) wraps `handle`; the metrics ([`crate::metrics`]) are
//!   recorded beside the audit.

use std::sync::Arc;

use tongban_proto::rules::region::RegionTable;

use crate::{
    admission::Admission,
    answer::Answer,
    audit::CallAudit,
    authenticate, authorize,
    call::Call,
    deadline::Deadlines,
    error::GatewayError,
    forward,
    methods::Serve,
    metrics::GatewayMetrics,
    recognition::{Bounds, Recognition},
    registry::{Registry, SharedRegistry},
    route, trace,
};
use tongban_runtime::observability::traces::Traces;

/// How long a refused call's remaining request is read (and dropped) before the refusal.
const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Relays calls to nodes and answers lookups; shared by every connection.
pub struct Relay {
    registry: SharedRegistry,
    regions: &'static RegionTable,
    deadlines: Deadlines,
    recognition: Arc<Recognition>,
    traces: Traces,
    /// Per-call metrics; `None` when the operator turned them off.
    metrics: Option<Arc<GatewayMetrics>>,
    admission: Arc<Admission>,
    /// The audit trail file's writer; `None` only in tests of the relay alone.
    trail: Option<tongban_runtime::audit::trail::AuditTrail>,
    /// Whether each call's record is also a log event (`[audit] log_events`).
    log_events: bool,
}

impl Relay {
    /// A relay over `registry`, no call allowed longer than `request_timeout`.
    pub fn new(
        registry: SharedRegistry,
        regions: &'static RegionTable,
        request_timeout: std::time::Duration,
        recognition: Arc<Recognition>,
        traces: Traces,
        metrics: Option<Arc<GatewayMetrics>>,
        admission: Arc<Admission>,
    ) -> Self {
        Self {
            trail: None,
            log_events: false,
            registry,
            regions,
            deadlines: Deadlines::new(request_timeout),
            recognition,
            traces,
            metrics,
            admission,
        }
    }

    /// The relay, writing its audit records to `trail` too, and as log events if
    /// `log_events`.
    pub fn with_trail(
        self,
        trail: tongban_runtime::audit::trail::AuditTrail,
        log_events: bool,
    ) -> Self {
        Self {
            trail: Some(trail),
            log_events,
            ..self
        }
    }

    /// The admission every call of the listener goes through.
    pub fn admission(&self) -> &Arc<Admission> {
        &self.admission
    }

    /// The registry the relay routes and admits by, as in force now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.current()
    }

    /// Told of every registry put in force from now on.
    pub fn registry_changes(&self) -> tokio::sync::watch::Receiver<Arc<Registry>> {
        self.registry.changes()
    }

    /// Handles one call and returns the answer for the caller: the node's, or the
    /// gateway's own refusal. Every call is audited once, however it ends (one dropped
    /// before it is answered as abandoned).
    pub async fn handle(&self, mut call: Call) -> Answer {
        let mut audit = CallAudit::start(&call, self.trail.clone(), self.log_events);
        let mut span = trace::start(&self.traces, &mut call);
        let facts = self.metrics.as_ref().map(|_| GatewayMetrics::facts(&call));
        let received = call.received;
        let result = self.relay(call, &mut audit).await;
        trace::finish(&mut span, &audit, &result);
        if let (Some(metrics), Some(facts)) = (&self.metrics, &facts) {
            metrics.record(facts, &audit, &result, received.elapsed());
        }
        audit.finish(result)
    }

    async fn relay(&self, mut call: Call, audit: &mut CallAudit) -> Result<Answer, GatewayError> {
        let method = call.known_method()?;
        authorize::check_metadata_size(&call)?;
        let caller = authenticate::calling_region(&call)?;
        audit.caller = Some(caller);
        // One registry for the whole call, however a reload goes meanwhile.
        let registry = self.registry.current();
        authorize::check_member(&call.peer.identity, &registry)?;
        authorize::check_caller(&call, method, &caller, |code| {
            registry.lookup(code).map(|route| route.identity.clone())
        })?;
        let mut permit = match self.admission.admit(&caller) {
            Ok(permit) => permit,
            Err(refusal) => {
                call.discard(DISCARD_WAIT).await;
                return Err(refusal);
            }
        };
        match method.serve {
            Serve::Relay { node_path } => {
                let (target, route) = route::resolve(&call, &registry, self.regions)?;
                audit.target = Some(target);
                if let Err(refusal) = permit.target(&target) {
                    call.discard(DISCARD_WAIT).await;
                    return Err(refusal);
                }
                authorize::check_key(&call, method)?;
                let deadline = self.deadlines.for_call(method, &call.headers);
                let message = call.message(deadline.wait, &mut permit).await?;
                let origin = forward::Origin {
                    caller: &caller,
                    carve_outs: registry.carve_outs(&call.peer.identity),
                };
                forward::forward(
                    call,
                    message,
                    node_path,
                    &route,
                    &origin,
                    &deadline,
                    &mut permit,
                )
                .await
            }
            Serve::Decode(lookup) => {
                authorize::check_key(&call, method)?;
                let deadline = self.deadlines.for_call(method, &call.headers);
                let message = call.message(deadline.wait, &mut permit).await?;
                // Boxed: the lookup's state is large, and inline it would make every relayed
                // call's future (moved once per call) as large.
                let recognition = &self.recognition;
                // What the lookup buffers, the issuer's answer too, is charged to the
                // call's permit.
                let bounds = Bounds {
                    deadline: deadline.wait,
                    budget: &mut permit,
                };
                Box::pin(recognition.serve(lookup, &call, caller, &message, bounds, audit)).await
            }
            Serve::Local => Err(GatewayError::UnknownMethod(method.name.to_owned())),
        }
    }
}
