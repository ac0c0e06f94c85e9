//! Placeholder: being written.

use serde::{Deserialize, Serialize};

/// Policy for ima evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImaPolicy {}

/// Claims read from ima evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImaClaims {}
