//! Whether a failed federation call may be retried: the contract's one answer.
//!
//! Every party that makes an error (the gateway, a node) classifies it once, where it
//! chooses the gRPC code, and states the class in the `tongban-retry` metadata of the
//! status. Every party that receives an error (a node's outbox, its portal) reads that
//! class back with [`Retry::of`]; only a status without it (one made by a transport
//! library, or by an older peer) is classified by its code, in [`Retry::by_code`].

use tonic::{Code, Status, metadata::MetadataValue};

/// Metadata key carrying the class on a failed call's status.
pub const RETRY_KEY: &str = "tongban-retry";

/// gRPC's own retry pushback (gRFC A6): how many milliseconds the caller should wait
/// before it tries again. The gateway states it when it sheds a call.
pub const PUSHBACK_KEY: &str = "grpc-retry-pushback-ms";

/// The pushback a failed call's status states, if any (a malformed one is ignored).
pub fn pushback(status: &Status) -> Option<std::time::Duration> {
    let ms: u64 = status
        .metadata()
        .get(PUSHBACK_KEY)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(ms.min(60_000)))
}

/// `status` with a pushback of `wait` stated in its metadata.
pub fn with_pushback(mut status: Status, wait: std::time::Duration) -> Status {
    let ms = wait.as_millis().min(u128::from(u32::MAX)).to_string();
    if let Ok(value) = MetadataValue::try_from(ms.as_str()) {
        status.metadata_mut().insert(PUSHBACK_KEY, value);
    }
    status
}

/// How a caller should treat a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// Passing trouble (a node or link down, a deadline missed, storage busy): retry the
    /// same call, with the same idempotency key, after a back-off.
    Transient,
    /// The federation's configuration refuses the call (a region not registered, a
    /// certificate or registry mistake). It heals when an operator fixes it: keep the
    /// call pending, count it and alert, and retry slowly; never give up on it.
    Configuration,
    /// The call itself is wrong (malformed, too large, refused on its content): the same
    /// call will always fail. Do not retry.
    Permanent,
}

impl Retry {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transient => "transient",
            Self::Configuration => "configuration",
            Self::Permanent => "permanent",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "transient" => Self::Transient,
            "configuration" => Self::Configuration,
            "permanent" => Self::Permanent,
            _ => return None,
        })
    }

    /// Whether the call should be attempted again at some point.
    pub fn may_retry(self) -> bool {
        self != Self::Permanent
    }

    /// The class a failed call's status states, or else the one its code implies.
    pub fn of(status: &Status) -> Self {
        status
            .metadata()
            .get(RETRY_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(|| Self::by_code(status.code()))
    }

    /// The class of a status that does not state one (made by a transport library or
    /// an older peer): unknown trouble is presumed to pass, refusals of the caller's
    /// rights to be configuration, malformed calls to be permanent.
    pub fn by_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::AlreadyExists => Self::Permanent,
            Code::PermissionDenied | Code::Unauthenticated | Code::NotFound => Self::Configuration,
            _ => Self::Transient,
        }
    }

    /// `status` with this class stated in its metadata.
    pub fn mark(self, mut status: Status) -> Status {
        status
            .metadata_mut()
            .insert(RETRY_KEY, MetadataValue::from_static(self.as_str()));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushback_reads_back_and_bad_ones_are_ignored() {
        let wait = std::time::Duration::from_millis(250);
        let status = with_pushback(Status::resource_exhausted("busy"), wait);
        assert_eq!(pushback(&status), Some(wait));
        assert_eq!(pushback(&Status::resource_exhausted("busy")), None);
        let mut bad = Status::resource_exhausted("busy");
        bad.metadata_mut()
            .insert(PUSHBACK_KEY, MetadataValue::from_static("-1"));
        assert_eq!(pushback(&bad), None);
        let mut huge = Status::resource_exhausted("busy");
        huge.metadata_mut()
            .insert(PUSHBACK_KEY, MetadataValue::from_static("99999999999"));
        assert_eq!(pushback(&huge), Some(std::time::Duration::from_secs(60)));
    }

    #[test]
    fn a_stated_class_wins_over_the_code() {
        let status = Retry::Permanent.mark(Status::unavailable("x"));
        assert_eq!(Retry::of(&status), Retry::Permanent);
        let status = Retry::Configuration.mark(Status::not_found("no node"));
        assert_eq!(Retry::of(&status), Retry::Configuration);
    }

    #[test]
    fn unstated_classes_follow_the_code() {
        assert_eq!(Retry::of(&Status::unavailable("down")), Retry::Transient);
        assert_eq!(
            Retry::of(&Status::deadline_exceeded("slow")),
            Retry::Transient
        );
        assert_eq!(Retry::of(&Status::unknown("?")), Retry::Transient);
        assert_eq!(
            Retry::of(&Status::invalid_argument("bad")),
            Retry::Permanent
        );
        assert_eq!(
            Retry::of(&Status::permission_denied("cert")),
            Retry::Configuration
        );
        // An unknown stated value falls back to the code.
        let mut status = Status::invalid_argument("bad");
        status
            .metadata_mut()
            .insert(RETRY_KEY, MetadataValue::from_static("later"));
        assert_eq!(Retry::of(&status), Retry::Permanent);
    }

    #[test]
    fn the_class_survives_the_wire_form() {
        let status = Retry::Configuration.mark(Status::permission_denied("registry"));
        let http = status.into_http::<()>();
        let back = Status::from_header_map(http.headers()).unwrap();
        assert_eq!(Retry::of(&back), Retry::Configuration);
    }
}
