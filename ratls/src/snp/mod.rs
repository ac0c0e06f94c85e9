//! Placeholder: being written.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnpPolicy {}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnpClaims {}
