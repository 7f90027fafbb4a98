//! The [`Platform`] side over the contract: take-over (`PUT /v1/cases/{case_number}`),
//! a case (`GET /v1/cases/{case_number}`) and the feed of status changes
//! (`GET /v1/case-events`).

use reqwest::{Method, StatusCode};
use tongban_proto::v1::Application;

use super::{
    adapter::HttpPlatform,
    auth::nonce,
    mapping,
    transport::{Call, decode, unexpected},
};
use crate::platform::{
    adapter::{EventPage, Platform, PlatformCase, PlatformError, Submitted},
    contract::wire,
};

#[tonic::async_trait]
impl Platform for HttpPlatform {
    async fn submit(
        &self,
        application: &Application,
        _applicant_hash: &str,
        payload: &[u8],
    ) -> Result<Submitted, PlatformError> {
        let case_number = application.case_number.as_str();
        let body = serde_json::to_vec(&mapping::takeover(application, payload))
            .map_err(|e| PlatformError::Contract(format!("take-over body: {e}")))?;
        let answer = self
            .transport
            .call(Call {
                operation: "take_over",
                route: "PUT /v1/cases/{case_number}",
                method: Method::PUT,
                path_and_query: format!("/v1/cases/{}", mapping::escape(case_number)),
                body: Some(body),
                // The take-over is idempotent by case number: its key.
                idempotency_key: case_number.to_owned(),
                case_number: Some(case_number),
                purpose: None,
                expected: &[StatusCode::CREATED, StatusCode::OK, StatusCode::CONFLICT],
            })
            .await?;
        if answer.status == StatusCode::CONFLICT {
            return Err(PlatformError::Conflict(format!(
                "case {case_number} is taken at the platform by a different application ({})",
                unexpected(&answer)
            )));
        }
        let view: wire::CaseView = decode("take_over", &answer)?;
        Ok(Submitted {
            case: mapping::case(view, case_number, &self.status_codes)?,
            created: answer.status == StatusCode::CREATED,
        })
    }

    async fn case(&self, case_number: &str) -> Result<Option<PlatformCase>, PlatformError> {
        let answer = self
            .transport
            .call(Call {
                operation: "read_case",
                route: "GET /v1/cases/{case_number}",
                method: Method::GET,
                path_and_query: format!("/v1/cases/{}", mapping::escape(case_number)),
                body: None,
                idempotency_key: nonce(),
                case_number: Some(case_number),
                purpose: None,
                expected: &[StatusCode::OK, StatusCode::NOT_FOUND],
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let view: wire::CaseView = decode("read_case", &answer)?;
        mapping::case(view, case_number, &self.status_codes).map(Some)
    }

    async fn events_after(&self, cursor: &str, limit: u32) -> Result<EventPage, PlatformError> {
        let answer = self
            .transport
            .call(Call {
                operation: "case_events",
                route: "GET /v1/case-events",
                method: Method::GET,
                path_and_query: mapping::feed_path("/v1/case-events", cursor, limit),
                body: None,
                idempotency_key: nonce(),
                case_number: None,
                purpose: None,
                expected: &[StatusCode::OK],
            })
            .await?;
        let page: wire::CaseEventPage = decode("case_events", &answer)?;
        mapping::event_page(page, cursor, &self.status_codes)
    }

    /// Down when the platform could not be reached lately, its probe failed, or the
    /// circuit is open: named, with why.
    fn health(&self) -> Result<(), String> {
        self.status()
    }
}
