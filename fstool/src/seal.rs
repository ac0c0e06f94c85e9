//! The TPM side: a random key sealed in a keyed-hash object whose only authorisation is a
//! PolicyPCR over the chosen SHA-256 PCRs, under a storage primary key re-created from the
//! owner hierarchy each time (TCG ECC P-256 SRK template: deterministic, nothing persistent).
//!
//! The sealed blobs (TPM2B_PUBLIC marshalled, TPM2B_PRIVATE as the TPM returned it: encrypted
//! under the primary, useless on another TPM) go to a LUKS2 token of type `cosmian-tpm2` in the
//! container's header (formerly `<location>.tpm.json`, still read) with the PCR list and
//! the values at sealing time (not secret; they let `status` and a failed unseal name the PCRs
//! that changed). Sessions are salted with the primary key and encrypt the key on the wire
//! (create: command parameter; unseal: response parameter). Every transient object and session
//! is flushed, also on errors (a TPM without a resource manager, like swtpm on a socket, keeps
//! them otherwise).
//!
//! The plumbing is the agent's ([`ratls::attest::tpm`]): the TCTI connection, the SRK (the
//! same template: blobs sealed before keep loading), PCR selections and reads. What is here is
//! sealing proper: the PolicyPCR digest, the sealed object, the salted sessions.

use std::collections::BTreeMap;

use ratls::attest::tpm::{self as plumbing, MAX_PCR};
use ratls::digest::HashAlg;
use serde::{Deserialize, Serialize};
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, KeyedHashScheme, PcrSelectionList, Private, Public, PublicBuilder,
    PublicKeyedHashParameters, SensitiveData, SymmetricDefinition,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::Context;

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The `format` field of the seal (LUKS2 token, or a legacy `<location>.tpm.json`).
pub const FORMAT: &str = "cosmian_fstool-tpm-seal-v1";
/// The default policy: the boot PCRs 0–9 (firmware, boot loader, kernel command line, …).
pub const DEFAULT_PCRS: [u8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];

/// The seal: what the LUKS2 token (and a legacy `<location>.tpm.json`) holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealedKey {
    pub format: String,
    /// The LUKS keyslot holding the sealed key.
    pub keyslot: u32,
    pub pcr_bank: String,
    pub pcrs: Vec<u8>,
    /// PCR index → value (hex) when sealed.
    pub pcr_values: BTreeMap<u8, String>,
    /// The PolicyPCR digest the object's authPolicy holds (hex).
    pub policy_digest: String,
    /// The parent: which primary key the blobs load under.
    pub parent: String,
    /// TPM2B_PUBLIC of the sealed object, marshalled (hex).
    pub public: String,
    /// TPM2B_PRIVATE of the sealed object, encrypted under the parent by the TPM (hex).
    pub private: String,
}

/// The type of the LUKS2 token that holds the seal in the container's header.
pub const TOKEN_TYPE: &str = "cosmian-tpm2";

impl SealedKey {
    /// The LUKS2 token JSON: `{"type": "cosmian-tpm2", "keyslots": ["N"], ...this record}`
    /// (cryptsetup requires `type` and `keyslots`; the key's keyslot is the only one listed).
    pub fn to_token(&self) -> Result<Vec<u8>> {
        let encode = |e: serde_json::Error| Error::Other(format!("cannot encode the seal: {e}"));
        let mut value = serde_json::to_value(self).map_err(encode)?;
        let object = value.as_object_mut().ok_or_else(|| {
            Error::Other(
                "cannot encode the seal: expected a JSON object, found another value".into(),
            )
        })?;
        object.insert("type".into(), serde_json::Value::from(TOKEN_TYPE));
        object.insert(
            "keyslots".into(),
            serde_json::json!([self.keyslot.to_string()]),
        );
        serde_json::to_vec(&value).map_err(encode)
    }

    /// The seal held by LUKS2 token `id`: its type must be ours and its `keyslots` exactly the
    /// record's keyslot.
    pub fn from_token(id: &str, token: &serde_json::Value) -> Result<Self> {
        let what = format!("LUKS2 token {id}");
        let kind = token.get("type");
        if kind.and_then(serde_json::Value::as_str) != Some(TOKEN_TYPE) {
            return Err(Error::Other(format!(
                "{what}: expected type {TOKEN_TYPE:?}, found {}",
                kind.map_or_else(|| "none".to_owned(), serde_json::Value::to_string)
            )));
        }
        let sealed: Self = serde_json::from_value(token.clone()).map_err(|e| {
            Error::Other(format!(
                "{what} ({TOKEN_TYPE}) is not a valid seal (expected the fields of format \
                 {FORMAT:?}): {e}"
            ))
        })?;
        let expected = serde_json::json!([sealed.keyslot.to_string()]);
        let keyslots = token.get("keyslots");
        if keyslots != Some(&expected) {
            return Err(Error::Other(format!(
                "{what} ({TOKEN_TYPE}): expected keyslots {expected} (its keyslot {}), found {} \
                 (was the TPM keyslot removed? run `cosmian_fstool reseal`)",
                sealed.keyslot,
                keyslots.map_or_else(|| "none".to_owned(), serde_json::Value::to_string)
            )));
        }
        Ok(sealed)
    }
}

const PARENT: &str = "owner hierarchy, TCG ECC NIST P-256 storage primary (re-created per use)";

/// Parse `0,1,2,7` (PCRs 0–23, no duplicates), sorted.
pub fn parse_pcrs(text: &str) -> Result<Vec<u8>> {
    let mut pcrs = Vec::new();
    for part in text.split(',').map(str::trim) {
        let pcr: u8 = part
            .parse()
            .ok()
            .filter(|p| *p <= MAX_PCR)
            .ok_or_else(|| Error::Usage(format!("invalid PCR {part:?} in {text:?} (0–23)")))?;
        if pcrs.contains(&pcr) {
            return Err(Error::Usage(format!("PCR {pcr} listed twice in {text:?}")));
        }
        pcrs.push(pcr);
    }
    pcrs.sort_unstable();
    Ok(pcrs)
}

pub fn pcr_list(pcrs: &[u8]) -> String {
    pcrs.iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn connect(tcti: &str) -> Result<Context> {
    // The step as this tool names it: the TCTI string itself, or reaching the TPM through it.
    let what = if plumbing::parse_tcti(tcti).is_ok() {
        "connect"
    } else {
        "TCTI"
    };
    plumbing::connect(tcti).map_err(Error::attest(what))
}

/// Handles to flush before returning, whatever happens.
struct Transients(Vec<ObjectHandle>);

impl Transients {
    fn flush(self, ctx: &mut Context) {
        for handle in self.0.into_iter().rev() {
            let _ = ctx.flush_context(handle);
        }
    }
}

fn sealed_template(policy: Digest) -> std::result::Result<Public, tss_esapi::Error> {
    // No userWithAuth: the PCR policy is the only way to use the object. No
    // sensitiveDataOrigin: the data is ours.
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_auth_policy(policy)
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
}

/// The storage primary (ratls' SRK: the TCG ECC P-256 template, owner hierarchy), flushed with
/// `transients`.
fn primary(ctx: &mut Context, transients: &mut Transients) -> Result<KeyHandle> {
    let key =
        plumbing::create_srk(ctx).map_err(Error::attest("TPM2_CreatePrimary (owner hierarchy)"))?;
    transients.0.push(key.into());
    Ok(key)
}

/// `pcrs` in the SHA-256 bank. The PolicyPCR digest covers this selection's bytes (three
/// select octets), so sealed blobs depend on it staying as it is.
fn selection(pcrs: &[u8]) -> Result<PcrSelectionList> {
    if let Some(pcr) = pcrs.iter().find(|p| **p > MAX_PCR) {
        return Err(Error::Tpm {
            what: "PCR selection",
            why: format!("PCR {pcr} is out of range (0..={MAX_PCR})"),
        });
    }
    plumbing::selection_list(&[HashAlg::Sha256], pcrs).map_err(Error::attest("PCR selection"))
}

/// The current SHA-256 values of `pcrs` (ascending).
fn read_pcrs(ctx: &mut Context, pcrs: &[u8]) -> Result<BTreeMap<u8, Vec<u8>>> {
    let mut banks = plumbing::read_pcrs(ctx, &[HashAlg::Sha256], pcrs)
        .map_err(Error::attest("TPM2_PCR_Read"))?;
    Ok(banks
        .remove(&HashAlg::Sha256)
        .unwrap_or_default())
}

/// `TPM2_StartAuthSession` of `kind` (AES-128-CFB parameter encryption, SHA-256), salted with
/// `salt_key` when given; flushed with `transients`.
fn start_session(
    ctx: &mut Context,
    salt_key: Option<KeyHandle>,
    kind: SessionType,
    what: &'static str,
    transients: &mut Transients,
) -> Result<AuthSession> {
    let session = ctx
        .start_auth_session(
            salt_key,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(Error::tpm(what))?
        .ok_or_else(|| Error::Tpm {
            what,
            why: "no session returned".into(),
        })?;
    transients
        .0
        .push(ObjectHandle::from(tss_esapi::handles::SessionHandle::from(
            session,
        )));
    Ok(session)
}

fn salted_session(
    ctx: &mut Context,
    salt_key: KeyHandle,
    kind: SessionType,
    decrypt: bool,
    transients: &mut Transients,
) -> Result<AuthSession> {
    let session = start_session(
        ctx,
        Some(salt_key),
        kind,
        "TPM2_StartAuthSession",
        transients,
    )?;
    let (attributes, mask) = SessionAttributesBuilder::new()
        .with_decrypt(decrypt)
        .with_encrypt(true)
        .build();
    ctx.tr_sess_set_attributes(session, attributes, mask)
        .map_err(Error::tpm("TPM2_TRSess_SetAttributes"))?;
    Ok(session)
}

/// The PolicyPCR digest over `pcrs` with `values` (their SHA-256 values, ascending), computed
/// by the TPM in a trial session.
fn trial_policy(
    ctx: &mut Context,
    transients: &mut Transients,
    pcrs: &[u8],
    values: &BTreeMap<u8, Vec<u8>>,
) -> Result<Digest> {
    let mut concatenated = Vec::new();
    for value in values.values() {
        concatenated.extend_from_slice(value);
    }
    let pcr_digest = ring::digest::digest(&ring::digest::SHA256, &concatenated);
    let pcr_digest = Digest::try_from(pcr_digest.as_ref()).map_err(Error::tpm("PCR digest"))?;
    let trial = start_session(
        ctx,
        None,
        SessionType::Trial,
        "TPM2_StartAuthSession (trial)",
        transients,
    )?;
    let trial = PolicySession::try_from(trial).map_err(Error::tpm("trial session"))?;
    ctx.policy_pcr(trial, pcr_digest, selection(pcrs)?)
        .map_err(Error::tpm("TPM2_PolicyPCR (trial)"))?;
    ctx.policy_get_digest(trial)
        .map_err(Error::tpm("TPM2_PolicyGetDigest"))
}

/// Seal `key` under a PolicyPCR over `pcrs` (SHA-256 bank, current values).
pub fn seal(tcti: &str, pcrs: &[u8], key: &Secret, keyslot: u32) -> Result<SealedKey> {
    let mut ctx = connect(tcti)?;
    let mut transients = Transients(Vec::new());
    let result = seal_inner(&mut ctx, &mut transients, pcrs, key, keyslot);
    transients.flush(&mut ctx);
    result
}

fn seal_inner(
    ctx: &mut Context,
    transients: &mut Transients,
    pcrs: &[u8],
    key: &Secret,
    keyslot: u32,
) -> Result<SealedKey> {
    let values = read_pcrs(ctx, pcrs)?;
    let policy = trial_policy(ctx, transients, pcrs, &values)?;
    let policy_hex = hex::encode(policy.value());

    let parent = primary(ctx, transients)?;
    let template = sealed_template(policy).map_err(Error::tpm("sealed object template"))?;
    let data = SensitiveData::try_from(key.bytes().to_vec())
        .map_err(Error::tpm("sealed data (at most 128 bytes)"))?;
    let session = salted_session(ctx, parent, SessionType::Hmac, true, transients)?;
    let created = ctx
        .execute_with_session(Some(session), |ctx| {
            ctx.create(parent, template, None, Some(data), None, None)
        })
        .map_err(Error::tpm("TPM2_Create (sealed key)"))?;
    let public = created
        .out_public
        .marshall()
        .map_err(Error::tpm("marshal the sealed object's public area"))?;
    Ok(SealedKey {
        format: FORMAT.to_owned(),
        keyslot,
        pcr_bank: "sha256".to_owned(),
        pcrs: pcrs.to_vec(),
        pcr_values: values
            .into_iter()
            .map(|(pcr, value)| (pcr, hex::encode(value)))
            .collect(),
        policy_digest: policy_hex,
        parent: PARENT.to_owned(),
        public: hex::encode(public),
        private: hex::encode(created.out_private.value()),
    })
}

/// Unseal the key. A PCR mismatch is [`Error::PcrPolicy`], naming the PCRs that changed.
pub fn unseal(tcti: &str, sealed: &SealedKey) -> Result<Secret> {
    if sealed.format != FORMAT || sealed.pcr_bank != "sha256" {
        return Err(Error::Other(format!(
            "unsupported seal: format {:?}, bank {:?} (expected {FORMAT:?}, sha256)",
            sealed.format, sealed.pcr_bank
        )));
    }
    let bad_blob = |what: &str| Error::Other(format!("the seal's {what} blob is invalid"));
    let public = hex::decode(&sealed.public)
        .ok()
        .and_then(|b| Public::unmarshall(&b).ok())
        .ok_or_else(|| bad_blob("public"))?;
    let private = hex::decode(&sealed.private)
        .ok()
        .and_then(|b| Private::try_from(b).ok())
        .ok_or_else(|| bad_blob("private"))?;
    let public_policy = public.auth_policy().clone();
    let mut ctx = connect(tcti)?;
    let mut transients = Transients(Vec::new());
    let result = unseal_inner(&mut ctx, &mut transients, sealed, public, private);
    transients.flush(&mut ctx);
    match result {
        Ok(key) => Ok(key),
        Err(Error::Tpm { what, why }) if what == UNSEAL => {
            // A policy failure: the PolicyPCR digest over the current values is not the
            // object's authPolicy (read from the sealed blob itself, not from the record).
            let sealed_digest = hex::encode(public_policy.value());
            let current = read_pcrs(&mut ctx, &sealed.pcrs)?;
            let mut transients = Transients(Vec::new());
            let policy = trial_policy(&mut ctx, &mut transients, &sealed.pcrs, &current);
            transients.flush(&mut ctx);
            let current_digest = hex::encode(policy?.value());
            if current_digest == sealed_digest {
                return Err(Error::Tpm { what, why });
            }
            // Which PCRs moved, by the values recorded at sealing (informational).
            let changed: Vec<u8> = sealed
                .pcrs
                .iter()
                .copied()
                .filter(|pcr| {
                    current
                        .get(pcr)
                        .map(hex::encode)
                        .as_ref()
                        != sealed.pcr_values.get(pcr)
                })
                .collect();
            Err(Error::PcrPolicy(Box::new(crate::error::PcrPolicy {
                bank: "sha256",
                pcrs: pcr_list(&sealed.pcrs),
                changed: if changed.is_empty() {
                    "none by the recorded values (the record is stale)".to_owned()
                } else {
                    format!("PCR {}", pcr_list(&changed))
                },
                sealed_digest,
                current_digest,
                recovery: "Open with the recovery password (`cosmian_fstool open --location \
                           LOCATION --name NAME --password -`), or after an intended change \
                           run `cosmian_fstool reseal --location LOCATION --password -`"
                    .to_owned(),
            })))
        }
        Err(e) => Err(e),
    }
}

const UNSEAL: &str = "TPM2_Unseal under the PCR policy";

fn unseal_inner(
    ctx: &mut Context,
    transients: &mut Transients,
    sealed: &SealedKey,
    public: Public,
    private: Private,
) -> Result<Secret> {
    let parent = primary(ctx, transients)?;
    let object = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.load(parent, private, public)
        })
        .map_err(Error::tpm(
            "TPM2_Load (the sealed key; was it sealed by another TPM or owner seed?)",
        ))?;
    transients.0.push(object.into());
    let session = salted_session(ctx, parent, SessionType::Policy, false, transients)?;
    let policy = PolicySession::try_from(session).map_err(Error::tpm("policy session"))?;
    // An empty digest: the TPM folds the current values in; TPM2_Unseal fails when the result
    // differs from the object's authPolicy.
    ctx.policy_pcr(policy, Digest::default(), selection(&sealed.pcrs)?)
        .map_err(Error::tpm("TPM2_PolicyPCR"))?;
    let data = ctx
        .execute_with_session(Some(session), |ctx| ctx.unseal(object.into()))
        .map_err(Error::tpm(UNSEAL))?;
    Ok(Secret::new(data.value().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The storage primary is a function of its template's bytes: ratls' SRK template must stay
    /// the one this tool sealed every existing blob under (the bytes of the TCG ECC P-256 SRK
    /// template, as this tool built it before it used ratls' plumbing).
    #[test]
    fn the_srk_template_is_the_one_blobs_were_sealed_under() {
        let template = plumbing::srk_template()
            .unwrap()
            .marshall()
            .unwrap();
        assert_eq!(
            hex::encode(template),
            "0023000b00030472000000060080004300100003001000000000"
        );
    }

    /// The PolicyPCR digest covers the selection's bytes: ratls' selection is the one
    /// tss-esapi's builder made for this tool before (sha256, three select octets).
    #[test]
    fn the_pcr_selection_is_the_one_policies_were_made_with() {
        use tss_esapi::structures::{PcrSelectionListBuilder, PcrSlot};
        use tss_esapi::tss2_esys::TPML_PCR_SELECTION;
        for pcrs in [&DEFAULT_PCRS[..], &[7], &[0, 4, 7, 16, 23]] {
            let slots: Vec<PcrSlot> = pcrs
                .iter()
                .map(|p| PcrSlot::try_from(1u32 << p).unwrap())
                .collect();
            let before = PcrSelectionListBuilder::new()
                .with_selection(HashingAlgorithm::Sha256, &slots)
                .build()
                .unwrap();
            let now = selection(pcrs).unwrap();
            assert_eq!(now, before, "{pcrs:?}");
            let (now, before) = (
                TPML_PCR_SELECTION::from(now),
                TPML_PCR_SELECTION::from(before),
            );
            assert_eq!((now.count, before.count), (1, 1));
            let (now, before) = (now.pcrSelections[0], before.pcrSelections[0]);
            assert_eq!(
                (now.hash, now.sizeofSelect, now.pcrSelect),
                (before.hash, before.sizeofSelect, before.pcrSelect),
                "{pcrs:?}"
            );
        }
        assert!(selection(&[24]).is_err());
    }

    #[test]
    fn pcr_lists() {
        assert_eq!(parse_pcrs("7,0, 4").ok(), Some(vec![0, 4, 7]));
        assert_eq!(pcr_list(&DEFAULT_PCRS), "0,1,2,3,4,5,6,7,8,9");
        for bad in ["", "24", "1,1", "a", "0,,1", "-1"] {
            assert!(parse_pcrs(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn sample() -> SealedKey {
        SealedKey {
            format: FORMAT.to_owned(),
            keyslot: 1,
            pcr_bank: "sha256".to_owned(),
            pcrs: vec![0, 7],
            pcr_values: [(0, "00".repeat(32)), (7, "11".repeat(32))]
                .into_iter()
                .collect(),
            policy_digest: "22".repeat(32),
            parent: PARENT.to_owned(),
            public: "0a0b".to_owned(),
            private: "0c0d".to_owned(),
        }
    }

    #[test]
    fn token_round_trip_and_checks() {
        let token: serde_json::Value =
            serde_json::from_slice(&sample().to_token().unwrap()).unwrap();
        assert_eq!(token["type"], TOKEN_TYPE);
        assert_eq!(token["keyslots"], serde_json::json!(["1"]));
        assert_eq!(token["keyslot"], 1);
        assert_eq!(token["pcr_values"]["7"], "11".repeat(32));
        let back = SealedKey::from_token("0", &token).unwrap();
        assert_eq!(back.keyslot, 1);
        assert_eq!(back.pcrs, vec![0, 7]);

        let mut other = token.clone();
        other["type"] = serde_json::Value::from("systemd-tpm2");
        let err = SealedKey::from_token("0", &other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected type \"cosmian-tpm2\", found \"systemd-tpm2\""),
            "{err}"
        );
        let mut unassigned = token.clone();
        unassigned["keyslots"] = serde_json::json!([]);
        let err = SealedKey::from_token("0", &unassigned)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected keyslots [\"1\"]") && err.contains("found []"),
            "{err}"
        );
        let mut broken = token;
        broken["public"] = serde_json::Value::from(3);
        let err = SealedKey::from_token("0", &broken)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a valid seal"), "{err}");
    }
}
