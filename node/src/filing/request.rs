//! A filing as the portal or counter sends it, and why one is not accepted: the types
//! every phase of a filing shares, so no phase reaches up into the composing module.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tongban_proto::rules::{catalog, standard::Problem};

use crate::{platform::PlatformError, store::StoreError};

/// Longest material reference accepted (an upload's id, a paper file's number, a
/// license id). The reference is stored with the case and shown to the handling
/// region; it is not the idempotency key, whose limit the contract owns.
pub const MAX_MATERIAL_REFERENCE: usize = 128;

/// A filing as the portal or counter sends it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilingRequest {
    /// Catalog id of the one-thing.
    pub one_thing_id: String,
    pub applicant: ApplicantInput,
    /// The one form: field name → value.
    #[serde(default)]
    pub form: BTreeMap<String, String>,
    /// Materials provided with the filing.
    #[serde(default)]
    pub materials: Vec<MaterialInput>,
    /// Handling mode; default: the first mode the catalog item offers.
    #[serde(default)]
    pub mode: Option<catalog::HandlingMode>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicantInput {
    pub id_number: String,
    pub name: String,
    #[serde(default)]
    pub phone: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MaterialInput {
    pub material_id: String,
    pub source: MaterialSourceInput,
    /// 1 to [`MAX_MATERIAL_REFERENCE`] characters.
    pub reference: String,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialSourceInput {
    License,
    Upload,
    Paper,
}

/// One problem with a filing, named by its path in the request (`form.start_date`,
/// `applicant.id_number`, `materials[0].material_id`).
#[derive(Clone, Debug, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl From<catalog::FieldError> for FieldProblem {
    fn from(e: catalog::FieldError) -> Self {
        field(format!("form.{}", e.field), e.problem)
    }
}

/// The shared rule set names its problems by the filing's fields, as the portal does.
impl From<Problem> for FieldProblem {
    fn from(p: Problem) -> Self {
        field(p.field, p.problem)
    }
}

/// Why a filing was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The applicant's home region does not confirm the identity.
    #[error("{0}")]
    IdentityRefused(FieldProblem),
    /// The filing itself is wrong; every problem is listed with its field.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldProblem>),
    /// The client's idempotency key was used before for a different filing.
    #[error("Idempotency-Key {0:?} was used for a different filing")]
    KeyReused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Platform(#[from] PlatformError),
}

impl IntakeError {
    /// How a refusal reads on the filing's span.
    pub fn summary(&self) -> &'static str {
        match self {
            Self::IdentityRefused(_) => "identity not confirmed",
            _ => "refused at pre-review",
        }
    }
}

/// A problem with `field`.
pub fn field(field: impl Into<String>, problem: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.into(),
        problem: problem.into(),
    }
}

/// A store failure, with a reused client key told apart (the portal answers it 409).
pub fn store_error(e: StoreError) -> IntakeError {
    match e {
        StoreError::KeyReused(key) => IntakeError::KeyReused(key),
        other => IntakeError::Store(other),
    }
}
