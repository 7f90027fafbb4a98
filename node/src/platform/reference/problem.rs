//! How the reference platform answers a request it cannot serve: an RFC 9457 problem
//! (`application/problem+json`, [`wire::Problem`]) whose `detail` names the field or
//! header at fault and never repeats a value (ID numbers, names); and the checks of
//! what every call carries (idempotency key, purpose of use) that produce them.

use axum::{
    extract::{
        Query,
        rejection::{BytesRejection, QueryRejection},
    },
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;

use crate::platform::contract::{
    headers::{self, Purpose},
    wire::{DEFAULT_PAGE, MAX_PAGE, Problem, problem},
};

/// Longest idempotency key (as the federation bounds its own).
pub const MAX_KEY_LEN: usize = 128;
/// Largest request body: a take-over carries a form and the application's payload.
pub const MAX_BODY: usize = 1 << 20;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiProblem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
}

impl ApiProblem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
        }
    }

    /// `400`: `detail` names the field and what is wrong with it.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            problem::BAD_REQUEST,
            "Bad request",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            problem::NOT_FOUND,
            "Not found",
            detail,
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, problem::CONFLICT, "Conflict", detail)
    }

    /// `401`, never saying which secret was wrong or missing.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            problem::UNAUTHENTICATED,
            "Not authenticated",
            "the request is not authenticated",
        )
    }

    /// `503`: the platform cannot serve now (its database fails); retry later. The
    /// reason is logged, not sent.
    pub fn unavailable(reason: impl std::fmt::Display) -> Self {
        tracing::warn!(%reason, "reference platform unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            problem::UNAVAILABLE,
            "Unavailable",
            "the platform cannot serve now; retry later",
        )
    }
}

impl IntoResponse for ApiProblem {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: self.kind.to_owned(),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// A header as text, if present and visible ASCII.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ApiProblem> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()).filter(|v| !v.is_empty()))
            .map_err(|_| ApiProblem::bad_request(format!("header {name}: must be visible ASCII"))),
    }
}

/// The call's `Idempotency-Key`, which every call but health carries.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiProblem> {
    let name = headers::IDEMPOTENCY_KEY;
    let key = header_text(headers, name)?
        .ok_or_else(|| ApiProblem::bad_request(format!("header {name}: required")))?;
    if key.len() > MAX_KEY_LEN {
        return Err(ApiProblem::bad_request(format!(
            "header {name}: at most {MAX_KEY_LEN} characters"
        )));
    }
    Ok(key.to_owned())
}

/// The `Tongban-Case-Number` header, if sent.
pub fn case_number_header(headers: &HeaderMap) -> Result<Option<String>, ApiProblem> {
    Ok(header_text(headers, headers::CASE_NUMBER)?.map(str::to_owned))
}

/// The purpose of use a register call states (用证事由); without the one-thing the
/// call is refused with `purpose-required`.
pub fn purpose(headers: &HeaderMap) -> Result<Purpose, ApiProblem> {
    let required = || {
        ApiProblem::new(
            StatusCode::BAD_REQUEST,
            problem::PURPOSE_REQUIRED,
            "Purpose of use required",
            format!(
                "header {}: required on every register call (the one-thing the lookup serves)",
                headers::PURPOSE_ONE_THING
            ),
        )
    };
    let one_thing = header_text(headers, headers::PURPOSE_ONE_THING)?.ok_or_else(required)?;
    let case = header_text(headers, headers::PURPOSE_CASE)?.unwrap_or_default();
    for (name, value) in [
        (headers::PURPOSE_ONE_THING, one_thing),
        (headers::PURPOSE_CASE, case),
    ] {
        if value.len() > MAX_KEY_LEN {
            return Err(ApiProblem::bad_request(format!(
                "header {name}: at most {MAX_KEY_LEN} characters"
            )));
        }
    }
    Ok(Purpose::new(one_thing, case))
}

/// The query of a feed page: `after` (a cursor; absent for the beginning) and `limit`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub limit: Option<String>,
}

/// A feed page's cursor and size: `limit` 1 to [`MAX_PAGE`] (default [`DEFAULT_PAGE`]).
pub fn page(query: Result<Query<PageQuery>, QueryRejection>) -> Result<(String, u32), ApiProblem> {
    let Query(query) = query.map_err(|_| ApiProblem::bad_request("query: cannot be read"))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ApiProblem::bad_request(format!("limit: must be a number from 1 to {MAX_PAGE}"))
            })?,
    };
    Ok((query.after.unwrap_or_default(), limit))
}

/// A JSON body. A syntax error is named by line and column; a missing or unknown field
/// by name; a value of the wrong type by position only (serde would quote the value,
/// which may be personal data).
pub fn json_body<T: DeserializeOwned>(
    body: Result<bytes::Bytes, BytesRejection>,
) -> Result<T, ApiProblem> {
    let bytes = body.map_err(|rejection| {
        ApiProblem::new(
            rejection.status(),
            problem::BAD_REQUEST,
            "Bad request",
            format!("body: {}", rejection.body_text()),
        )
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = e.to_string();
        let named = ["missing field", "unknown field", "duplicate field"]
            .iter()
            .any(|p| message.starts_with(p));
        let what = match e.classify() {
            serde_json::error::Category::Data if named => message
                .split(" at line")
                .next()
                .unwrap_or_default()
                .to_owned(),
            serde_json::error::Category::Data => "a value has the wrong type".to_owned(),
            serde_json::error::Category::Eof => "ends too early".to_owned(),
            _ => "is not valid JSON".to_owned(),
        };
        ApiProblem::bad_request(format!(
            "body: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })
}

/// `Ok` when the feed gave out the cursor (`known`), a `400` naming `after` when it did
/// not, `503` when the platform could not tell.
pub fn known_cursor<E: std::fmt::Display>(known: Result<bool, E>) -> Result<(), ApiProblem> {
    match known {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiProblem::bad_request(
            "after: not a cursor this feed gave out",
        )),
        Err(error) => Err(ApiProblem::unavailable(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        id_number: String,
        count: u32,
    }

    #[test]
    fn body_errors_name_fields_but_never_values() {
        let parse = |text: &'static str| {
            json_body::<Body>(Ok(bytes::Bytes::from_static(text.as_bytes()))).unwrap_err()
        };
        let missing = parse(r#"{"id_number": "x"}"#);
        assert!(
            missing.detail.contains("missing field `count`"),
            "{}",
            missing.detail
        );
        let typed = parse(r#"{"id_number": 110105194912310025, "count": 1}"#);
        assert!(!typed.detail.contains("110105"), "{}", typed.detail);
        assert!(typed.detail.contains("wrong type"), "{}", typed.detail);
        let broken = parse("{");
        assert!(
            broken.detail.contains("ends too early"),
            "{}",
            broken.detail
        );
    }

    #[test]
    fn register_calls_state_a_purpose() {
        let mut headers = HeaderMap::new();
        let err = purpose(&headers).unwrap_err();
        assert_eq!(err.kind, problem::PURPOSE_REQUIRED);
        headers.insert(
            headers::PURPOSE_ONE_THING,
            HeaderValue::from_static("newborn"),
        );
        assert_eq!(purpose(&headers).unwrap().one_thing_id, "newborn");
        assert!(idempotency_key(&headers).is_err());
    }
}
