//! The verification policy: what each verifier requires beyond genuineness.
//!
//! A policy file is JSON with one optional section per platform (`snp`, `tdx`, `tpm`, `ima`,
//! `azure`); unknown keys are rejected so a typo cannot silently relax a check. The defaults are
//! strict (no debug, VMPL 0, only an UpToDate TDX TCB, Azure secure boot on).
//!
//! ```json
//! { "snp": { "measurement": "7a1e…", "allow_debug": false },
//!   "tdx": { "allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"] } }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::azure::AzurePolicy;
use crate::ima::ImaPolicy;
use crate::snp::{MinTcb, SnpPolicy};
use crate::tdx::TdxPolicy;
use crate::tpm::TpmPolicy;

/// What every verifier requires, by platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub snp: SnpPolicy,
    pub tdx: TdxPolicy,
    pub tpm: TpmPolicy,
    pub ima: ImaPolicy,
    pub azure: AzurePolicy,
}

/// The largest policy file read.
pub const MAX_POLICY_FILE: u64 = 4 * 1024 * 1024;

/// Why a policy file could not be loaded: `{path}: {why}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {why}")]
pub struct PolicyFileError {
    pub path: String,
    pub why: String,
}

/// A policy that parses but cannot be enforced as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// SEV-SNP ID-block fields pinned without the ID or author key: the host chooses the ID
    /// block, so these pins prove nothing on their own.
    #[error(
        "snp: {} pinned without id_key_digest or author_key_digest: the host chooses the ID \
         block, so these values prove nothing unless the key that signed it is pinned too",
        fields.join(", ")
    )]
    IdBlockWithoutKey { fields: Vec<&'static str> },
    /// `check_launch_tcb` with no minimum to compare with (`tcb_floor` "none", no `min_tcb`).
    #[error(
        "snp: check_launch_tcb needs a minimum TCB: set min_tcb, or keep tcb_floor \"default\""
    )]
    LaunchTcbWithoutMinimum,
}

impl Policy {
    /// Parse a JSON policy document and [`validate`](Policy::validate) it.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let policy: Self = serde_json::from_str(text)?;
        policy
            .validate()
            .map_err(<serde_json::Error as serde::de::Error>::custom)?;
        Ok(policy)
    }

    /// Read and parse the policy file at `path` (at most [`MAX_POLICY_FILE`] bytes): the one
    /// way every binary loads `--policy FILE`. Errors name the file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, PolicyFileError> {
        let error = |why: String| PolicyFileError {
            path: path.display().to_string(),
            why,
        };
        let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
        if meta.len() > MAX_POLICY_FILE {
            return Err(error(format!(
                "{} bytes, more than the {MAX_POLICY_FILE}-byte limit for a policy",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::from_json(&text).map_err(|e| error(e.to_string()))
    }

    /// `self` (the user's base policy) under the values `pinned` (a snapshot's policy) sets:
    /// wherever `pinned` differs from the default, it wins; elsewhere `self` stays.
    ///
    /// Field by field: a value (flag, number, string, list, enum, `Option` of one) is taken from
    /// `pinned` when it differs from the section's default; the PCR maps (`tpm.pcrs`,
    /// `tpm.pcr_selection`) are merged entry by entry, `pinned`'s entries winning; a `min_tcb`
    /// set on both sides is merged component by component (`pinned`'s `fmc` only when set).
    pub fn overlay(&self, pinned: &Policy) -> Policy {
        let default = Policy::default();
        let mut out = self.clone();
        overlay_snp(&mut out.snp, &pinned.snp, &default.snp);
        overlay_tdx(&mut out.tdx, &pinned.tdx, &default.tdx);
        overlay_tpm(&mut out.tpm, &pinned.tpm, &default.tpm);
        overlay_ima(&mut out.ima, &pinned.ima, &default.ima);
        overlay_azure(&mut out.azure, &pinned.azure, &default.azure);
        out
    }

    /// Refuse a policy whose pins cannot mean what they say: SEV-SNP `family_id`, `image_id` or
    /// `min_guest_svn` without `id_key_digest` or `author_key_digest`.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let fields = self.snp.unauthenticated_id_block_pins();
        if !fields.is_empty() {
            return Err(PolicyError::IdBlockWithoutKey { fields });
        }
        if self.snp.check_launch_tcb
            && self.snp.min_tcb.is_none()
            && self.snp.tcb_floor == crate::snp::TcbFloor::None
        {
            return Err(PolicyError::LaunchTcbWithoutMinimum);
        }
        Ok(())
    }
}

/// Overlay one policy section: destructure `$pinned` as `$ty` (every field named, so that a new
/// field cannot be forgotten), `pin` each field before the `;`, and leave those after it,
/// bound by the same names, to the code that follows.
macro_rules! overlay_section {
    (
        $base:ident, $pinned:ident, $default:ident,
        $ty:ident { $($field:ident),+ $(; $($other:ident),+)? $(,)? }
    ) => {
        let $ty { $($field,)+ $($($other,)+)? } = $pinned;
        $(pin(&mut $base.$field, $field, &$default.$field);)+
    };
}

/// `pinned` replaces `base` when it differs from `default`.
fn pin<T: PartialEq + Clone>(base: &mut T, pinned: &T, default: &T) {
    if pinned != default {
        base.clone_from(pinned);
    }
}

/// Every entry of `pinned` into `base`: a new key is added, a key on both sides is merged by
/// `merge`.
fn pin_entries<K: Ord + Clone, V: Clone>(
    base: &mut BTreeMap<K, V>,
    pinned: &BTreeMap<K, V>,
    merge: impl Fn(&mut V, &V),
) {
    for (key, value) in pinned {
        match base.get_mut(key) {
            Some(slot) => merge(slot, value),
            None => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// An optional map: merged entry by entry (`pinned` winning) when both are set, else `pinned`
/// when set.
fn pin_optional_map<K: Ord + Clone, V: Clone>(
    base: &mut Option<BTreeMap<K, V>>,
    pinned: &Option<BTreeMap<K, V>>,
) {
    match (base.as_mut(), pinned) {
        (Some(b), Some(p)) => pin_entries(b, p, |slot, value| slot.clone_from(value)),
        (_, Some(p)) => *base = Some(p.clone()),
        (_, None) => {}
    }
}

fn overlay_snp(base: &mut SnpPolicy, pinned: &SnpPolicy, default: &SnpPolicy) {
    overlay_section!(base, pinned, default, SnpPolicy {
        allow_debug, allow_migration_agent, vmpl, min_guest_svn, measurement, host_data,
        id_key_digest, author_key_digest, report_data, family_id, image_id, products, tcb_floor,
        check_launch_tcb, require_smt_off, require_single_socket, require_ciphertext_hiding,
        platform_info_required, platform_info_forbidden, require_crl; min_tcb
    });
    match (base.min_tcb.as_mut(), min_tcb) {
        (Some(b), Some(p)) => {
            let MinTcb {
                fmc,
                bootloader,
                tee,
                snp,
                microcode,
            } = p;
            if fmc.is_some() {
                b.fmc = *fmc;
            }
            b.bootloader = *bootloader;
            b.tee = *tee;
            b.snp = *snp;
            b.microcode = *microcode;
        }
        _ => pin(&mut base.min_tcb, min_tcb, &default.min_tcb),
    }
}

fn overlay_tdx(base: &mut TdxPolicy, pinned: &TdxPolicy, default: &TdxPolicy) {
    overlay_section!(
        base,
        pinned,
        default,
        TdxPolicy {
            allowed_tcb_statuses,
            allow_debug,
            mr_td,
            rtmr0,
            rtmr1,
            rtmr2,
            rtmr3,
            report_data
        }
    );
}

fn overlay_tpm(base: &mut TpmPolicy, pinned: &TpmPolicy, default: &TpmPolicy) {
    overlay_section!(base, pinned, default, TpmPolicy { ak_name, ak_sha256; pcr_selection, pcrs });
    pin_optional_map(&mut base.pcr_selection, pcr_selection);
    pin_entries(&mut base.pcrs, pcrs, |bank, values| {
        pin_entries(bank, values, |slot, value| slot.clone_from(value));
    });
}

fn overlay_ima(base: &mut ImaPolicy, pinned: &ImaPolicy, default: &ImaPolicy) {
    overlay_section!(
        base,
        pinned,
        default,
        ImaPolicy {
            allow_violations,
            allow_empty,
            bank
        }
    );
}

fn overlay_azure(base: &mut AzurePolicy, pinned: &AzurePolicy, default: &AzurePolicy) {
    overlay_section!(
        base,
        pinned,
        default,
        AzurePolicy {
            allow_secure_boot_off,
            vm_unique_id
        }
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn pinned_values_win_over_the_base_policy_and_defaults_do_not() {
        let base = Policy::from_json(
            r#"{"snp": {"measurement": "aa", "min_guest_svn": 3, "id_key_digest": "cc"}}"#,
        )
        .unwrap();
        let mut pinned = Policy::default();
        pinned.snp.measurement = Some("bb".into());
        let merged = base.overlay(&pinned);
        assert_eq!(merged.snp.measurement.as_deref(), Some("bb"));
        assert_eq!(merged.snp.min_guest_svn, base.snp.min_guest_svn);
    }

    /// The overlay as the CLI computed it before it was typed: on the policies' JSON, a pinned
    /// value that differs from the default's replaces the base's, objects merged key by key.
    fn json_overlay(base: &Policy, pinned: &Policy) -> Policy {
        use serde_json::Value;
        fn merge(base: &mut Value, pinned: &Value, default: &Value) {
            match (base, pinned) {
                (Value::Object(b), Value::Object(p)) => {
                    for (key, value) in p {
                        let d = default.get(key).unwrap_or(&Value::Null);
                        match b.get_mut(key) {
                            Some(slot) => merge(slot, value, d),
                            None => {
                                b.insert(key.clone(), value.clone());
                            }
                        }
                    }
                }
                (slot, value) => {
                    if value != default {
                        *slot = value.clone();
                    }
                }
            }
        }
        let mut merged = serde_json::to_value(base).unwrap();
        merge(
            &mut merged,
            &serde_json::to_value(pinned).unwrap(),
            &serde_json::to_value(Policy::default()).unwrap(),
        );
        serde_json::from_value(merged).unwrap()
    }

    #[test]
    fn the_typed_overlay_merges_as_the_json_one_did() {
        let policies = [
            "{}",
            r#"{"snp": {"allow_debug": true, "vmpl": 1, "measurement": "aa", "products": ["Milan"],
                "min_tcb": {"bootloader": 1, "tee": 2, "snp": 3, "microcode": 4},
                "tcb_floor": "none", "platform_info_required": ["SMT_EN"], "require_crl": true},
               "tdx": {"allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"], "mr_td": "11",
                "rtmr2": "22"},
               "tpm": {"pcr_selection": {"sha256": [0, 1, 7]}, "ak_sha256": "ab",
                "pcrs": {"sha256": {"0": "00", "7": "77"}, "sha1": {"1": "11"}}},
               "ima": {"allow_empty": true, "bank": "sha256"},
               "azure": {"allow_secure_boot_off": true, "vm_unique_id": "vm"}}"#,
            r#"{"snp": {"measurement": "bb", "host_data": "cc", "vmpl": 0, "products": [],
                "min_tcb": {"fmc": 9, "bootloader": 5, "tee": 0, "snp": 0, "microcode": 0},
                "platform_info_forbidden": ["ECC_EN"]},
               "tdx": {"allowed_tcb_statuses": [], "rtmr0": "33", "allow_debug": true},
               "tpm": {"pcr_selection": {"sha1": [10], "sha256": [10]}, "ak_name": "cd",
                "pcrs": {"sha256": {"7": "70", "10": "aa"}}},
               "ima": {"allow_violations": true},
               "azure": {"vm_unique_id": "other"}}"#,
            r#"{"snp": {"min_tcb": {"fmc": 1, "bootloader": 0, "tee": 0, "snp": 0,
                "microcode": 0}}, "tdx": {"allowed_tcb_statuses": ["UpToDate"]},
               "tpm": {"pcrs": {"sha384": {}}}}"#,
        ];
        let policies: Vec<Policy> = policies
            .iter()
            .map(|p| serde_json::from_str(p).unwrap())
            .collect();
        for base in &policies {
            for pinned in &policies {
                assert_eq!(
                    base.overlay(pinned),
                    json_overlay(base, pinned),
                    "base {base:?}\npinned {pinned:?}"
                );
            }
        }
        // Spot checks of what the merge means.
        let (full, other) = (&policies[1], &policies[2]);
        let merged = full.overlay(other);
        assert_eq!(merged.snp.measurement.as_deref(), Some("bb"));
        assert_eq!(
            merged.snp.products, full.snp.products,
            "an empty list is the default"
        );
        let min_tcb = merged.snp.min_tcb.unwrap();
        assert_eq!(
            (min_tcb.fmc, min_tcb.bootloader, min_tcb.tee),
            (Some(9), 5, 0)
        );
        assert_eq!(merged.tpm.pcrs[&crate::digest::HashAlg::Sha256].len(), 3);
        assert_eq!(merged.tpm.pcrs[&crate::digest::HashAlg::Sha1].len(), 1);
        assert!(merged
            .tdx
            .allowed_tcb_statuses
            .is_empty());
        assert!(
            full.overlay(&Policy::default()) == *full,
            "the default pins nothing"
        );
    }

    #[test]
    fn from_file_names_the_file_in_every_error() {
        let dir = std::env::temp_dir().join(format!("ratls-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = dir.join("ok.json");
        std::fs::write(&ok, br#"{"snp": {"vmpl": 0}}"#).unwrap();
        assert_eq!(Policy::from_file(&ok).unwrap().snp.vmpl, 0);

        let missing = dir.join("missing.json");
        let e = Policy::from_file(&missing).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&missing.display().to_string()),
            "{e}"
        );

        let unknown = dir.join("unknown.json");
        std::fs::write(&unknown, br#"{"snp": {"no_such_key": 1}}"#).unwrap();
        let e = Policy::from_file(&unknown)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown.json") && e.contains("no_such_key"),
            "{e}"
        );

        let id_block = dir.join("id_block.json");
        std::fs::write(&id_block, br#"{"snp": {"image_id": "00"}}"#).unwrap();
        let e = Policy::from_file(&id_block)
            .unwrap_err()
            .to_string();
        assert!(e.contains("id_key_digest"), "{e}");

        let huge = dir.join("huge.json");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_POLICY_FILE + 1)
            .unwrap();
        let e = Policy::from_file(&huge)
            .unwrap_err()
            .to_string();
        assert!(e.contains("limit"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
