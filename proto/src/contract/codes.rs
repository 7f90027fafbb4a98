//! gRPC status codes by their canonical names, as metrics and logs label them; a
//! case's stages by the names the portals show.

/// The canonical upper-case name of a gRPC code, as in the gRPC spec.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The lower-case name of a stage, as the portal shows it (`approved`).
pub fn stage_name(stage: i32) -> String {
    crate::v1::Stage::try_from(stage)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("STAGE_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown({stage})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_spec_name() {
        for i in 0..=16 {
            let name = code_name(tonic::Code::from_i32(i));
            assert!(name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::Unavailable), "UNAVAILABLE");
    }
}
