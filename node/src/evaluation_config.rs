//! The `[evaluations]` section of a node's config: when a poor evaluation's follow-up
//! is due (see `crate::evaluation`).

use serde::{Deserialize, Serialize};

/// The `[evaluations]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Working days (of this region's calendar) a poor rating's follow-up is due in.
    /// Localities use 5 to 15; 1 to 30 accepted. Default 10.
    pub follow_up_working_days: u32,
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        Self {
            follow_up_working_days: 10,
        }
    }
}

impl EvaluationConfig {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<(), String> {
        if (1..=30).contains(&self.follow_up_working_days) {
            Ok(())
        } else {
            Err("must be 1 to 30 working days".into())
        }
    }
}
