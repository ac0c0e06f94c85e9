//! `cosmian_vm owner enroll`, and the owner key and certificate it creates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::{Method, StatusCode};

use super::admin::{admin_session, report_admin};
use super::{read_policy, Ctx, Outcome, Stop};
use crate::cli::{Global, OwnerEnrollArgs, UsageError};
use crate::files;
use crate::net::OwnerIdentity;

/// `cosmian_vm owner enroll`.
pub async fn owner_enroll(global: &Global, args: &OwnerEnrollArgs) -> Outcome {
    let ctx = Ctx::new(global)?;
    let (owner, where_) = match (&global.owner_cert, &global.owner_key) {
        (Some(cert), Some(key)) => (OwnerIdentity::load(cert, key)?, cert.clone()),
        _ => {
            let dir = match &args.out {
                Some(d) => d.clone(),
                None => files::config_dir()
                    .ok_or_else(|| UsageError("no home directory: give --out DIR".into()))?,
            };
            ensure_owner_files(&dir)?
        }
    };
    let owner = Arc::new(owner);
    let spki = owner.spki_sha256().unwrap_or_default();
    let genuineness = if args.session.snapshot.is_none() {
        Some(read_policy(args.policy.as_deref())?)
    } else {
        None
    };
    let token = args
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (mut session, check) =
        admin_session(&ctx, &args.session, "owner enroll", owner, genuineness).await?;
    // The token travels only now, on the session whose evidence just verified.
    let response = session
        .request_json(
            Method::POST,
            "/api/v1/owner",
            &serde_json::json!({ "token": token }),
        )
        .await?;
    if response.status == StatusCode::BAD_REQUEST && token.is_none() {
        return Err(Stop::Usage(UsageError(format!(
            "the agent needs its one-time enrolment token: give --token TOKEN (printed in the \
             agent's log at its first start, and in <data_dir>/enrolment-token in the VM): {}",
            response.error_message()
        ))));
    }
    if response.status == StatusCode::CONFLICT {
        return Err(Stop::Usage(UsageError(format!(
            "an owner is already enrolled with this agent; the certificate {} (spki sha256 \
             {spki}) was not enrolled",
            where_.display()
        ))));
    }
    report_admin(
        &ctx,
        "owner enroll",
        &response,
        check.as_ref(),
        StatusCode::CREATED,
    )
}

/// The owner key and certificate in `dir`: reused when both exist, else generated (P-256,
/// self-signed) and written atomically, the key with mode 0600.
fn ensure_owner_files(dir: &Path) -> Result<(OwnerIdentity, PathBuf), UsageError> {
    let (cert, key) = (dir.join("owner.pem"), dir.join("owner.key"));
    if cert.is_file() && key.is_file() {
        tracing::info!(
            path = %cert.display(),
            "using the existing owner certificate {}",
            cert.display()
        );
        return Ok((OwnerIdentity::load(&cert, &key)?, cert));
    }
    if cert.exists() || key.exists() {
        return Err(UsageError(format!(
            "{} holds only half of an owner identity (owner.pem / owner.key): remove it or give \
             --owner-cert and --owner-key",
            dir.display()
        )));
    }
    create_private_dir(dir)?;
    let (cert_pem, key_pem) = generate_owner()?;
    files::write_atomic(&key, key_pem.as_bytes(), 0o600)?;
    files::write_atomic(&cert, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(
        key = %key.display(),
        path = %cert.display(),
        "created the owner key {} and certificate {}",
        key.display(),
        cert.display()
    );
    Ok((OwnerIdentity::load(&cert, &key)?, cert))
}

fn create_private_dir(dir: &Path) -> Result<(), UsageError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| UsageError(format!("cannot create {}: {e}", dir.display())))
}

/// A P-256 key and a self-signed certificate for it (PEM): the owner's identity.
fn generate_owner() -> Result<(String, String), UsageError> {
    let fail = |e: rcgen::Error| UsageError(format!("generating the owner certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "cosmian_vm owner");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_identity_generates_and_loads() {
        let dir = std::env::temp_dir().join(format!("cosmian_vm_owner_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (id, cert) = ensure_owner_files(&dir).unwrap();
        assert!(cert.ends_with("owner.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("owner.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A second call reuses the same key.
        let (again, _) = ensure_owner_files(&dir).unwrap();
        assert_eq!(id.spki_sha256(), again.spki_sha256());
        assert_eq!(id.spki_sha256().unwrap().len(), 64);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
