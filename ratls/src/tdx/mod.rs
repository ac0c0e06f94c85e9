//! Placeholder: being written.

use serde::{Deserialize, Serialize};

/// Policy for tdx evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TdxPolicy {}

/// Claims read from tdx evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TdxClaims {}
