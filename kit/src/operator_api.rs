//! Requests to a member's operator listener as one of the local federation's operators,
//! answered in the portal client's shape (status and JSON body) so tests read both alike.

use std::{net::SocketAddr, path::Path};

use bytes::Bytes;
use tongban_node::portal_client::PortalResponse;
use tongban_runtime::trust::{
    identity::PeerIdentity,
    operator_client::{OperatorClient, OperatorClientError},
};

use crate::{config::pki::operator_credentials, error::KitError};

/// A client of one member's operator listener, as one operator.
#[derive(Clone)]
pub struct OperatorApi(OperatorClient);

impl OperatorApi {
    /// Operator `name` (its certificate in the PKI folder `pki_dir`) calling `member`'s
    /// operator listener at `addr`.
    pub fn new(
        addr: SocketAddr,
        member: PeerIdentity,
        pki_dir: &Path,
        name: &str,
    ) -> Result<Self, KitError> {
        let credentials = operator_credentials(pki_dir, name);
        OperatorClient::new(addr, member, &credentials)
            .map(Self)
            .map_err(|e| KitError::Other(format!("operator {name}: {e}")))
    }

    /// The same member, as operator `name`.
    pub fn as_operator(
        &self,
        member: PeerIdentity,
        pki_dir: &Path,
        name: &str,
    ) -> Result<Self, KitError> {
        Self::new(self.0.addr(), member, pki_dir, name)
    }

    pub fn client(&self) -> &OperatorClient {
        &self.0
    }

    /// `method path` with a raw body.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
    ) -> Result<PortalResponse, OperatorClientError> {
        let method = http::Method::from_bytes(method.as_bytes()).map_err(|e| {
            OperatorClientError::Request {
                addr: self.0.addr(),
                reason: e.to_string(),
            }
        })?;
        let answer = self.0.request(&method, path, body, None).await?;
        Ok(PortalResponse {
            status: answer.status,
            body: if answer.body.is_empty() {
                serde_json::Value::Null
            } else {
                answer.json()
            },
        })
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<PortalResponse, OperatorClientError> {
        let body = serde_json::to_vec(body).map_err(|e| OperatorClientError::Request {
            addr: self.0.addr(),
            reason: e.to_string(),
        })?;
        self.send("POST", path, Bytes::from(body)).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<PortalResponse, OperatorClientError> {
        self.send("GET", path, Bytes::new()).await
    }
}
