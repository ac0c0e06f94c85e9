//! Placeholder: being written.

use serde::{Deserialize, Serialize};

/// Policy for tpm evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpmPolicy {}

/// Claims read from tpm evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TpmClaims {}
