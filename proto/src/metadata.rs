//! gRPC metadata keys of the federation contract (see the header of `federation.proto`).
//!
//! Routing and authorization data travels in metadata so the gateway can route without
//! decoding application bodies.

/// 6-digit code of the region that must handle a relayed call.
pub const TARGET_REGION: &str = "tongban-target-region";
/// The calling node's claim of the region it acts for; checked against its certificate.
pub const ORIGIN_REGION: &str = "tongban-origin-region";
/// Catalog id of the one-thing concerned.
pub const ONE_THING: &str = "tongban-one-thing";
/// Idempotency key of a state-changing call.
pub const IDEMPOTENCY_KEY: &str = "tongban-idempotency-key";
/// Region prefix from the caller's certificate, set by the gateway only.
pub const VERIFIED_ORIGIN: &str = "tongban-verified-origin";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
