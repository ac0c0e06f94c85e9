//! The default minimum TCB per product, kept as data (`tcb_floors.json`, embedded).

use std::sync::OnceLock;

use serde::Deserialize;

use super::anchors::Product;
use super::MinTcb;

const FLOORS_JSON: &str = include_str!("tcb_floors.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    about: String,
    floors: Vec<Floor>,
}

/// One product's floor and where it comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Floor {
    pub product: Product,
    /// `None`: no published floor for this product.
    pub min_tcb: Option<MinTcb>,
    /// The AMD security bulletin, e.g. `AMD-SB-3019`.
    pub source: String,
    pub cve: String,
    /// The bulletin's date (YYYY-MM-DD).
    pub date: String,
    /// How the values were derived.
    pub basis: String,
}

impl Floor {
    /// e.g. `AMD floor for Milan from AMD-SB-3019 (2025-02-03)`.
    pub fn describe(&self) -> String {
        format!(
            "AMD floor for {} from {} ({})",
            self.product, self.source, self.date
        )
    }
}

fn parsed() -> &'static Result<Vec<Floor>, String> {
    static FLOORS: OnceLock<Result<Vec<Floor>, String>> = OnceLock::new();
    FLOORS.get_or_init(|| {
        serde_json::from_str::<File>(FLOORS_JSON)
            .map(|f| f.floors)
            .map_err(|e| format!("the built-in TCB floors (tcb_floors.json) do not parse: {e}"))
    })
}

/// The built-in floor for `product` (`Ok(None)` when the file has no entry for it). An error
/// when the embedded file does not parse: the caller fails closed.
pub fn floor(product: Product) -> Result<Option<Floor>, String> {
    match parsed() {
        Ok(floors) => Ok(floors
            .iter()
            .find(|f| f.product == product)
            .cloned()),
        Err(e) => Err(e.clone()),
    }
}

/// Every built-in floor (for documentation and `evidence inspect`).
pub fn all() -> Result<Vec<Floor>, String> {
    parsed().clone()
}
