//! The portal's refusals, one shape for every route: a status, a code, a message that
//! never quotes a long number (an ID number pasted anywhere), and the fields concerned.

use axum::{
    Json,
    extract::rejection::JsonRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The largest request body the portal reads: a filing is a form of short fields and
/// references to materials, never the materials themselves.
pub const MAX_BODY: usize = 256 * 1024;

/// A body that could not be read as the request: its precise status (413 too large,
/// 415 not JSON, 422 JSON of the wrong shape, 400 not JSON at all), and a message that
/// never quotes a long number from it.
pub fn body_refused(rejection: &JsonRejection) -> Response {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        _ => "bad_request",
    };
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the request body is larger than {MAX_BODY} bytes")
    } else {
        without_long_numbers(&rejection.body_text())
    };
    error(status, code, message, json!([]))
}

/// A case this node has not filed, or a receipt token that does not match it: the
/// same answer, which never quotes the case number (anything may be pasted into a URL,
/// an ID number too).
pub fn no_such_case() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no application with this case number and receipt token was filed here".into(),
        json!([]),
    )
}

/// The portal's error body: `{"error": {"code", "message", "fields": [{"field", "problem"}]}}`.
pub fn error(
    status: StatusCode,
    code: &str,
    message: String,
    fields: serde_json::Value,
) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message, "fields": fields } })),
    )
        .into_response()
}

/// serde's messages quote the offending value ("invalid type: integer `1101…`"); an ID
/// number sent with the wrong type must not come back or reach logs, so runs of six or
/// more digits are elided.
pub fn without_long_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 6 {
            out.push('…');
        } else {
            out.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_numbers_are_elided() {
        assert_eq!(
            super::without_long_numbers(
                "invalid type: integer `110105198001019010`, expected a string at line 1 column 42"
            ),
            "invalid type: integer `…`, expected a string at line 1 column 42"
        );
    }
}
