//! A fixture mimicking the Azure vTPM on swtpm: NV index 0x01400001 (owner read/write) holding an
//! HCL report, written in chunks of the TPM's maximum NV buffer, as the paravisor provisions it.
//!
//! swtpm (libtpms) caps an NV index at 2048 bytes (`TPM_PT_NV_INDEX_MAX`), while Azure's index is
//! 2600 bytes: reports given to [`azure_vtpm`] must fit 2048 bytes.

use std::str::FromStr;

use ratls::attest::azure::{AK_HANDLE, HCL_REPORT_NV_INDEX};
use tss_esapi::attributes::NvIndexAttributesBuilder;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::{CapabilityType, NvIndexType, PropertyTag};
use tss_esapi::handles::{
    NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PersistentTpmHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{
    HashingAlgorithm, PublicAlgorithm, RsaSchemeAlgorithm,
};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, MaxNvBuffer, NvPublicBuilder, PublicBuilder, PublicKeyRsa,
    PublicRsaParametersBuilder, RsaExponent, RsaScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

use crate::Swtpm;

/// The largest NV index swtpm defines.
pub const SWTPM_NV_INDEX_MAX: usize = 2048;

fn context(swtpm: &Swtpm) -> Result<Context, String> {
    let conf = TctiNameConf::from_str(&swtpm.tcti()).map_err(|e| e.to_string())?;
    Context::new(conf).map_err(|e| format!("connect to swtpm: {e}"))
}

fn defined(ctx: &mut Context, index: u32) -> Result<bool, String> {
    let (data, _) = ctx
        .execute_without_session(|ctx| ctx.get_capability(CapabilityType::Handles, index, 1))
        .map_err(|e| e.to_string())?;
    Ok(match data {
        CapabilityData::Handles(list) => list
            .into_inner()
            .into_iter()
            .any(|h| u32::from(h) == index),
        _ => false,
    })
}

/// Define NV index `index` (owner read/write, `size` bytes; undefined first when it exists) and
/// write `data` at offset 0 in chunks of `TPM_PT_NV_BUFFER_MAX`.
///
/// # Errors
/// A TPM command failed (an index over 2048 bytes fails here on swtpm).
pub fn define_and_write_nv(
    swtpm: &Swtpm,
    index: u32,
    size: usize,
    data: &[u8],
) -> Result<(), String> {
    if data.len() > size {
        return Err(format!(
            "{} bytes do not fit an index of {size}",
            data.len()
        ));
    }
    let mut ctx = context(swtpm)?;
    let nv = NvIndexTpmHandle::new(index).map_err(|e| e.to_string())?;
    if defined(&mut ctx, index)? {
        let object = ctx
            .execute_without_session(|ctx| ctx.tr_from_tpm_public(TpmHandle::NvIndex(nv)))
            .map_err(|e| e.to_string())?;
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_undefine_space(Provision::Owner, NvIndexHandle::from(object))
        })
        .map_err(|e| format!("TPM2_NV_UndefineSpace: {e}"))?;
    }
    let attributes = NvIndexAttributesBuilder::new()
        .with_owner_write(true)
        .with_owner_read(true)
        .with_nv_index_type(NvIndexType::Ordinary)
        .build()
        .map_err(|e| e.to_string())?;
    let public = NvPublicBuilder::new()
        .with_nv_index(nv)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(size)
        .build()
        .map_err(|e| e.to_string())?;
    let handle = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_define_space(Provision::Owner, None, public)
        })
        .map_err(|e| format!("TPM2_NV_DefineSpace ({size} bytes): {e}"))?;
    let chunk = ctx
        .get_tpm_property(PropertyTag::NvBufferMax)
        .map_err(|e| e.to_string())?
        .map_or(1024, |n| usize::try_from(n).unwrap_or(1024));
    let mut offset: usize = 0;
    for part in data.chunks(chunk) {
        let buffer = MaxNvBuffer::try_from(part.to_vec()).map_err(|e| e.to_string())?;
        let at = u16::try_from(offset).map_err(|e: std::num::TryFromIntError| e.to_string())?;
        ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.nv_write(NvAuth::Owner, handle, buffer, at)
        })
        .map_err(|e| format!("TPM2_NV_Write at {offset}: {e}"))?;
        offset += part.len();
    }
    let _ = ctx.tr_close(&mut ObjectHandle::from(handle));
    Ok(())
}

/// Read NV index `index` whole (owner authorization), through tss-esapi's own reader.
///
/// # Errors
/// The index is missing or unreadable.
pub fn read_nv(swtpm: &Swtpm, index: u32) -> Result<Vec<u8>, String> {
    let mut ctx = context(swtpm)?;
    let nv = NvIndexTpmHandle::new(index).map_err(|e| e.to_string())?;
    ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        tss_esapi::abstraction::nv::read_full(ctx, NvAuth::Owner, nv)
    })
    .map_err(|e| e.to_string())
}

/// The Azure vTPM: NV index 0x01400001 holding `hcl` (the index is exactly `hcl.len()` bytes).
///
/// # Errors
/// As [`define_and_write_nv`].
pub fn azure_vtpm(swtpm: &Swtpm, hcl: &[u8]) -> Result<(), String> {
    define_and_write_nv(swtpm, HCL_REPORT_NV_INDEX, hcl.len(), hcl)
}

/// The paravisor's attestation key as Azure provisions it: an RSA-2048 restricted signing key
/// (RSASSA with SHA-256, `fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
/// restricted | sign`), a primary of the endorsement hierarchy made persistent at
/// [`AK_HANDLE`] (0x81000003). Returns its `TPMT_PUBLIC`.
///
/// # Errors
/// A TPM command failed (the handle is already taken, for one).
pub fn azure_ak(swtpm: &Swtpm) -> Result<Vec<u8>, String> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()
        .map_err(|e| e.to_string())?;
    let scheme = RsaScheme::create(RsaSchemeAlgorithm::RsaSsa, Some(HashingAlgorithm::Sha256))
        .map_err(|e| e.to_string())?;
    let parameters = PublicRsaParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_scheme(scheme)
        .with_key_bits(RsaKeyBits::Rsa2048)
        .with_exponent(RsaExponent::default())
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .build()
        .map_err(|e| e.to_string())?;
    let template = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(parameters)
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
        .map_err(|e| e.to_string())?;
    let mut ctx = context(swtpm)?;
    let created = ctx
        .execute_with_session(Some(AuthSession::Password), |ctx| {
            ctx.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
        })
        .map_err(|e| format!("TPM2_CreatePrimary (RSA AK): {e}"))?;
    let public = created
        .out_public
        .marshall()
        .map_err(|e| e.to_string())?;
    let handle = PersistentTpmHandle::new(AK_HANDLE).map_err(|e| e.to_string())?;
    let persisted = ctx.execute_with_session(Some(AuthSession::Password), |ctx| {
        ctx.evict_control(
            Provision::Owner,
            created.key_handle.into(),
            Persistent::Persistent(handle),
        )
    });
    let _ = ctx.flush_context(created.key_handle.into());
    persisted.map_err(|e| format!("TPM2_EvictControl to {AK_HANDLE:#010x}: {e}"))?;
    Ok(public)
}
