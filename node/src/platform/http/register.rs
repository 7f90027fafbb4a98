//! The [`LicenseRegistry`] side over the contract: a person (`POST /v1/persons/lookup`),
//! a license (`GET /v1/licenses/{license_id}`), a holder's licenses (`POST
//! /v1/licenses/by-holder`) and the feed of revocations (`GET /v1/revocations`), each
//! register call stating its purpose of use. ID numbers travel in bodies only.
//!
//! Revocations are made at the province's platform, not through the node: `revoke`
//! refuses, and the node publishes what the revocation feed lists.

use reqwest::{Method, StatusCode};

use super::{
    adapter::HttpPlatform,
    auth::nonce,
    mapping,
    transport::{Call, decode},
};
use crate::platform::{
    adapter::PlatformError,
    contract::wire,
    register::{LicenseRecord, LicenseRegistry, Person, Purpose, RevocationPage, Subject},
};

fn body(value: &impl serde::Serialize) -> Result<Vec<u8>, PlatformError> {
    serde_json::to_vec(value).map_err(|e| PlatformError::Contract(format!("request body: {e}")))
}

/// The case a register call is made for, when its purpose names one.
fn case_of(purpose: &Purpose) -> Option<&str> {
    Some(purpose.case_number.as_str()).filter(|c| !c.is_empty())
}

#[tonic::async_trait]
impl LicenseRegistry for HttpPlatform {
    async fn person(
        &self,
        subject: Subject<'_>,
        purpose: &Purpose,
    ) -> Result<Option<Person>, PlatformError> {
        let lookup = wire::PersonLookup {
            id_number: subject.id_number.to_owned(),
        };
        let answer = self
            .transport
            .call(Call {
                operation: "person",
                route: "POST /v1/persons/lookup",
                method: Method::POST,
                path_and_query: "/v1/persons/lookup".into(),
                body: Some(body(&lookup)?),
                idempotency_key: nonce(),
                case_number: case_of(purpose),
                purpose: Some(purpose),
                expected: &[StatusCode::OK, StatusCode::NOT_FOUND],
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let found: wire::Person = decode("person", &answer)?;
        mapping::person(found, subject.id_number).map(Some)
    }

    async fn license(
        &self,
        license_id: &str,
        purpose: &Purpose,
    ) -> Result<Option<LicenseRecord>, PlatformError> {
        let answer = self
            .transport
            .call(Call {
                operation: "license",
                route: "GET /v1/licenses/{license_id}",
                method: Method::GET,
                path_and_query: format!("/v1/licenses/{}", mapping::escape(license_id)),
                body: None,
                idempotency_key: nonce(),
                case_number: case_of(purpose),
                purpose: Some(purpose),
                expected: &[StatusCode::OK, StatusCode::NOT_FOUND],
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let found: wire::License = decode("license", &answer)?;
        if found.license_id != license_id {
            return Err(PlatformError::Contract(format!(
                "asked for license {license_id}, answered license {:?}",
                found.license_id
            )));
        }
        mapping::license(found, &self.id_hash_key).map(Some)
    }

    async fn licenses_of(
        &self,
        holder: Subject<'_>,
        purpose: &Purpose,
    ) -> Result<Vec<LicenseRecord>, PlatformError> {
        let lookup = wire::HolderLookup {
            holder_id_number: holder.id_number.to_owned(),
        };
        let answer = self
            .transport
            .call(Call {
                operation: "licenses_of",
                route: "POST /v1/licenses/by-holder",
                method: Method::POST,
                path_and_query: "/v1/licenses/by-holder".into(),
                body: Some(body(&lookup)?),
                idempotency_key: nonce(),
                case_number: case_of(purpose),
                purpose: Some(purpose),
                expected: &[StatusCode::OK],
            })
            .await?;
        let list: wire::LicenseList = decode("licenses_of", &answer)?;
        list.licenses
            .into_iter()
            .map(|license| {
                if !license
                    .holder_id_number
                    .eq_ignore_ascii_case(holder.id_number)
                {
                    return Err(PlatformError::Contract(format!(
                        "license {} of another holder answered to a holder lookup",
                        license.license_id
                    )));
                }
                mapping::license(license, &self.id_hash_key)
            })
            .collect()
    }

    async fn revoke(
        &self,
        _license_id: &str,
        _reason: &str,
        _at_ms: i64,
    ) -> Result<Option<LicenseRecord>, PlatformError> {
        Err(PlatformError::Unsupported(
            "revocations are made at the province's platform; the node publishes them from its \
             revocation feed",
        ))
    }

    async fn revocations_after(
        &self,
        cursor: &str,
        limit: u32,
    ) -> Result<Option<RevocationPage>, PlatformError> {
        let answer = self
            .transport
            .call(Call {
                operation: "revocations",
                route: "GET /v1/revocations",
                method: Method::GET,
                path_and_query: mapping::feed_path("/v1/revocations", cursor, limit),
                body: None,
                idempotency_key: nonce(),
                case_number: None,
                purpose: None,
                expected: &[StatusCode::OK],
            })
            .await?;
        let page: wire::RevocationPage = decode("revocations", &answer)?;
        mapping::revocation_page(page, cursor).map(Some)
    }
}
