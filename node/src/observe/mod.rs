//! Where the node records what it did, in one place, as the gateway's `relay.rs` calls
//! its `trace.rs`, `metrics.rs` and `audit.rs`: the use cases call one function per
//! event, and it writes the span outcome, the metrics ([`crate::metrics`]), the audit
//! record ([`crate::audit`]) and the log line together.
//!
//! - [`filing`]: a filing at the portal (`crate::filing`): its span, then, once
//!   written, the filing counted, audited and logged.
//! - [`served`]: a call the gateway made on this node (`crate::federation`,
//!   `crate::delivery`): its span, the server-call metrics and the audit record.
//! - [`outbox`]: how an outbox attempt settled (`crate::forwarder`).
//! - [`client`]: a call this node made through the gateway (`crate::gateway_client`):
//!   one client span per attempt and the client-call metrics.
//! - [`platform`]: a call this node made on its province's platform over HTTP
//!   (`crate::platform::http`): its span and `traceparent`, the platform-call metrics,
//!   the circuit and the platform's reachability.

pub mod client;
pub mod filing;
pub mod outbox;
pub mod platform;
pub mod served;
