//! Signed attestation results for the application behind a verifier: an EAR (IETF RATS
//! "EAT Attestation Results", draft-ietf-rats-ear) as a JWT signed with ES256, bound to one
//! connection between the verifier and the application (`docs/ear.md`).
//!
//! The proxy verifies its peer, then hands the application an EAR per connection (PROXY v2 TLV
//! `0xE2`, or the `X-Attestation-EAR` header): `ear.status` and the `ear.trustworthiness-vector`
//! tiers of the AR4SI information model, the appraisal policy (the policy digest), and ours
//! under `cosmian.*`: platform, TCB, measurement, evidence digest, batch size and the binding —
//! the TLS session's exporter hash and the peer's key hash (what was verified), and the two ends
//! of the proxy-to-application connection (what the application can check). [`verify`] is the
//! application's side: a few lines with the proxy's JWKS file.
//!
//! Why the connection's ends: the application cannot see the TLS session the proxy terminated,
//! but it sees its own socket. A token copied onto another connection (by any process that can
//! reach the application's port) names other ends and is refused at `ear.connection`; a stale
//! one is refused at `ear.expiry` (tokens live `--ear-ttl`, one minute by default).

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::{Deserialize, Serialize};

use crate::audit::Tcb;
use crate::claims::Claims;
use crate::time::UnixTime;
use crate::verdict::Verdict;

/// The EAR profile this implementation follows.
pub const EAR_PROFILE: &str = "tag:github.com,2023:veraison/ear";

/// The submodule name of our appraisal in `submods`.
pub const SUBMOD: &str = "cosmian-vm";

/// The longest token [`verify`] reads.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// How far in the future an `iat` may be (clock skew between proxy and application).
pub const MAX_SKEW_SECS: u64 = 30;

/// AR4SI trustworthiness tiers (draft-ietf-rats-ar4si): the claim values and `ear.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    None,
    Affirming,
    Warning,
    Contraindicated,
}

impl Tier {
    /// The tier of a trustworthiness claim value (0 none, 2..=31 affirming, 32..=95 warning,
    /// 96..=127 contraindicated; negative values are the verifier's own errors).
    pub fn of_claim(value: i8) -> Self {
        match value {
            2..=31 => Self::Affirming,
            32..=95 => Self::Warning,
            96..=127 | i8::MIN..=-1 => Self::Contraindicated,
            _ => Self::None,
        }
    }
}

/// The AR4SI trustworthiness vector; absent claims were not appraised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrustVector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_identity: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executables: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_system: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<i8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_opaque: Option<i8>,
}

impl TrustVector {
    fn values(&self) -> impl Iterator<Item = i8> {
        [
            self.instance_identity,
            self.configuration,
            self.executables,
            self.file_system,
            self.hardware,
            self.runtime_opaque,
        ]
        .into_iter()
        .flatten()
    }

    /// The worst tier among the appraised claims (`none` when none was).
    pub fn status(&self) -> Tier {
        self.values()
            .map(Tier::of_claim)
            .max()
            .unwrap_or(Tier::None)
    }
}

/// The two ends of the connection between the verifier and the application, as
/// `ip:port` text: what the application checks against its own socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppConnection {
    /// The application's end (its socket's local address).
    pub app: String,
    /// The verifier's end (the application socket's peer address).
    pub proxy: String,
}

/// What ties the result to one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// SHA-256 of 32 bytes exported from the peer's TLS session (label
    /// [`EXPORTER_LABEL`]): names the session the verdict was reached on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_exporter_sha256: Option<String>,
    /// SHA-256 of the peer's SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_spki_sha256: Option<String>,
    pub connection_id: String,
    pub app_connection: AppConnection,
}

/// The TLS exporter label of [`Binding::tls_exporter_sha256`].
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-cosmian-vm-ear";

/// Our appraisal of the peer (one entry of `submods`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appraisal {
    #[serde(rename = "ear.status")]
    pub status: Tier,
    #[serde(rename = "ear.trustworthiness-vector")]
    pub trust_vector: TrustVector,
    /// `sha256:` and the policy digest.
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
    #[serde(rename = "cosmian.binding")]
    pub binding: Binding,
    #[serde(rename = "cosmian.platform")]
    pub platform: String,
    #[serde(rename = "cosmian.simulated")]
    pub simulated: bool,
    #[serde(
        rename = "cosmian.role",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub role: Option<String>,
    #[serde(
        rename = "cosmian.measurement",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub measurement: Option<String>,
    #[serde(
        rename = "cosmian.tcb",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tcb: Option<Tcb>,
    #[serde(
        rename = "cosmian.chip-id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chip_id: Option<String>,
    #[serde(
        rename = "cosmian.fmspc",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fmspc: Option<String>,
    #[serde(
        rename = "cosmian.evidence-sha256",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub evidence_sha256: Option<String>,
    #[serde(
        rename = "cosmian.batch-size",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub batch_size: Option<u64>,
}

/// Who produced the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifierId {
    pub developer: String,
    pub build: String,
}

/// The JWT claims set of an EAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarClaims {
    pub eat_profile: String,
    pub iat: u64,
    pub exp: u64,
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    pub submods: BTreeMap<String, Appraisal>,
}

impl EarClaims {
    /// Our appraisal (the [`SUBMOD`] entry).
    pub fn appraisal(&self) -> Option<&Appraisal> {
        self.submods.get(SUBMOD)
    }
}

/// Our appraisal of a trusted `verdict`: every tier affirming for hardware evidence; the
/// simulated TEE's identity and hardware claims are `warning` (32), so its status is `warning`.
/// `executables` and `file-system` are appraised only when an IMA log was replayed.
pub fn appraise(verdict: &Verdict, policy_sha256: &[u8; 32], binding: Binding) -> Appraisal {
    const AFFIRMING: i8 = 2;
    const UNSAFE_HARDWARE: i8 = 32;
    let record = crate::audit::Record::from_verdict(verdict, policy_sha256, "", "", "");
    let ima_replayed = match &verdict.claims {
        Claims::Bundle(b) => b.ima.is_some() && b.ima_deferred.is_none(),
        _ => false,
    };
    let tee = if verdict.simulated {
        UNSAFE_HARDWARE
    } else {
        AFFIRMING
    };
    let trust_vector = TrustVector {
        instance_identity: Some(tee),
        configuration: Some(AFFIRMING),
        executables: ima_replayed.then_some(AFFIRMING),
        file_system: ima_replayed.then_some(AFFIRMING),
        hardware: Some(tee),
        runtime_opaque: Some(AFFIRMING),
    };
    Appraisal {
        status: if verdict.is_trusted() {
            trust_vector.status()
        } else {
            Tier::Contraindicated
        },
        trust_vector,
        policy_id: format!("sha256:{}", hex::encode(policy_sha256)),
        binding,
        platform: record.platform,
        simulated: record.simulated,
        role: record.role,
        measurement: record.measurement,
        tcb: record.reported_tcb,
        chip_id: record.chip_id,
        fmspc: record.fmspc,
        evidence_sha256: record.evidence_sha256,
        batch_size: record.batch_size,
    }
}

/// Why an EAR could not be made or was refused: the step, what was expected and presented.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("EAR rejected at {step}: expected {expected}, presented {presented}")]
pub struct EarError {
    pub step: &'static str,
    pub expected: String,
    pub presented: String,
}

fn fail(step: &'static str, expected: impl Into<String>, presented: impl Into<String>) -> EarError {
    EarError {
        step,
        expected: expected.into(),
        presented: presented.into(),
    }
}

/// One public key of a JWKS (EC P-256 only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub y: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    /// The uncompressed SEC1 point (0x04 ‖ x ‖ y).
    fn point(&self) -> Result<Vec<u8>, EarError> {
        if self.kty != "EC" || self.crv != "P-256" {
            return Err(fail(
                "ear.key",
                "an EC P-256 key",
                format!("kty {} crv {}", self.kty, self.crv),
            ));
        }
        let coord = |name: &str, text: &str| {
            B64.decode(text)
                .ok()
                .filter(|c| c.len() == 32)
                .ok_or_else(|| {
                    fail(
                        "ear.key",
                        format!("{name}: 32 bytes, base64url"),
                        format!("{text:?}"),
                    )
                })
        };
        let mut point = vec![4u8];
        point.extend(coord("x", &self.x)?);
        point.extend(coord("y", &self.y)?);
        Ok(point)
    }
}

/// A JSON Web Key Set: the verifier's public keys, as the proxy writes them (`--ear-jwks`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    pub fn from_json(text: &str) -> Result<Self, EarError> {
        serde_json::from_str(text).map_err(|e| fail("ear.jwks", "a JWKS (JSON)", e.to_string()))
    }

    fn find(&self, kid: &str) -> Option<&Jwk> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

/// The verifier's signing key (ES256).
pub struct EarSigner {
    key: EcdsaKeyPair,
    jwk: Jwk,
    /// The JWS header `{"alg":"ES256","typ":"JWT","kid":…}`, base64url: the same on every token.
    header: String,
    rng: SystemRandom,
    verifier_id: VerifierId,
}

impl std::fmt::Debug for EarSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EarSigner")
            .field("kid", &self.jwk.kid)
            .finish()
    }
}

impl EarSigner {
    /// A new key, generated now (its JWKS must reach the applications: [`EarSigner::jwks`]).
    pub fn generate(verifier_id: VerifierId) -> Result<Self, EarError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| fail("ear.key", "a generated P-256 key", "the generator failed"))?;
        Self::from_pkcs8(pkcs8.as_ref(), verifier_id)
    }

    /// The P-256 key of a PKCS#8 PEM (`PRIVATE KEY`).
    pub fn from_pem(pem_text: &str, verifier_id: VerifierId) -> Result<Self, EarError> {
        let block = pem::parse(pem_text)
            .map_err(|e| fail("ear.key", "a PEM PRIVATE KEY", e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(fail(
                "ear.key",
                "a PKCS#8 PRIVATE KEY (P-256)",
                block.tag().to_owned(),
            ));
        }
        Self::from_pkcs8(block.contents(), verifier_id)
    }

    fn from_pkcs8(pkcs8: &[u8], verifier_id: VerifierId) -> Result<Self, EarError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|e| fail("ear.key", "a PKCS#8 P-256 key", e.to_string()))?;
        let point = key.public_key().as_ref();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) if point.len() == 65 => (B64.encode(x), B64.encode(y)),
            _ => {
                return Err(fail(
                    "ear.key",
                    "an uncompressed P-256 point",
                    format!("{} bytes", point.len()),
                ))
            }
        };
        // RFC 7638 thumbprint: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = B64.encode(crate::digest::sha256(canonical.as_bytes()));
        let header = b64_json(&serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid}))?;
        Ok(Self {
            key,
            header,
            jwk: Jwk {
                kty: "EC".into(),
                crv: "P-256".into(),
                x,
                y,
                kid,
                alg: Some("ES256".into()),
                use_: Some("sig".into()),
            },
            rng,
            verifier_id,
        })
    }

    /// The key's id (its RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.jwk.kid
    }

    /// The JWKS applications verify with.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.jwk.clone()],
        }
    }

    /// A signed EAR for `appraisal`, valid `ttl_secs` from `now`.
    pub fn sign(
        &self,
        appraisal: Appraisal,
        now: UnixTime,
        ttl_secs: u64,
    ) -> Result<String, EarError> {
        let claims = EarClaims {
            eat_profile: EAR_PROFILE.into(),
            iat: now.as_secs(),
            exp: now.as_secs().saturating_add(ttl_secs),
            verifier_id: self.verifier_id.clone(),
            submods: BTreeMap::from([(SUBMOD.to_owned(), appraisal)]),
        };
        let mut token = format!("{}.{}", self.header, b64_json(&claims)?);
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| fail("ear.sign", "an ES256 signature", "the signer failed"))?;
        token.push('.');
        token.push_str(&B64.encode(signature.as_ref()));
        Ok(token)
    }
}

/// JSON then base64url: one JWS part.
fn b64_json<T: Serialize>(value: &T) -> Result<String, EarError> {
    serde_json::to_vec(value)
        .map(|json| B64.encode(json))
        .map_err(|e| fail("ear.sign", "claims that encode as JSON", e.to_string()))
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// The application's check of an EAR: well-formed, ES256 by a key of `keys`, not expired at
/// `now`, made for the connection whose two ends are `connection`, and affirming or warning.
/// Returns the claims (the application reads `appraisal()` for platform, TCB, measurement).
pub fn verify(
    token: &str,
    keys: &Jwks,
    connection: &AppConnection,
    now: UnixTime,
) -> Result<EarClaims, EarError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(fail(
            "ear.format",
            format!("at most {MAX_TOKEN_LEN} bytes"),
            format!("{} bytes", token.len()),
        ));
    }
    let mut parts = token.trim().split('.');
    let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fail(
            "ear.format",
            "a JWS compact serialisation (three base64url parts)",
            format!("{} part(s)", token.split('.').count()),
        ));
    };
    let decode = |what: &str, text: &str| {
        B64.decode(text)
            .map_err(|e| fail("ear.format", format!("{what} in base64url"), e.to_string()))
    };
    let header: Header = serde_json::from_slice(&decode("the header", header_b64)?)
        .map_err(|e| fail("ear.format", "a JSON JWS header", e.to_string()))?;
    if header.alg != "ES256" {
        return Err(fail("ear.alg", "ES256", header.alg));
    }
    let kid = header.kid.unwrap_or_default();
    let jwk = keys.find(&kid).ok_or_else(|| {
        let known: Vec<&str> = keys
            .keys
            .iter()
            .map(|k| k.kid.as_str())
            .collect();
        fail("ear.kid", format!("one of {known:?}"), format!("{kid:?}"))
    })?;
    let signed = token
        .trim()
        .get(..header_b64.len() + 1 + payload_b64.len())
        .unwrap_or_default();
    let signature = decode("the signature", sig_b64)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, jwk.point()?)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| {
            fail(
                "ear.signature",
                format!("an ES256 signature by key {kid}"),
                "a signature that does not verify",
            )
        })?;
    let claims: EarClaims = serde_json::from_slice(&decode("the claims", payload_b64)?)
        .map_err(|e| fail("ear.claims", "EAR claims", e.to_string()))?;
    if claims.eat_profile != EAR_PROFILE {
        return Err(fail("ear.claims", EAR_PROFILE, claims.eat_profile));
    }
    if now.as_secs() >= claims.exp {
        return Err(fail(
            "ear.expiry",
            format!("a result valid at {now}"),
            format!("one that expired at {}", UnixTime::from_secs(claims.exp)),
        ));
    }
    if claims.iat
        > now
            .as_secs()
            .saturating_add(MAX_SKEW_SECS)
    {
        return Err(fail(
            "ear.expiry",
            format!("issued by {now} (+{MAX_SKEW_SECS} s)"),
            format!("issued at {}", UnixTime::from_secs(claims.iat)),
        ));
    }
    let appraisal = claims
        .appraisal()
        .ok_or_else(|| fail("ear.claims", format!("submod {SUBMOD}"), "none"))?;
    if !same_connection(&appraisal.binding.app_connection, connection) {
        let show = |c: &AppConnection| format!("app {} / proxy {}", c.app, c.proxy);
        return Err(fail(
            "ear.connection",
            format!("this connection ({})", show(connection)),
            format!(
                "a result for {} (connection {})",
                show(&appraisal.binding.app_connection),
                appraisal.binding.connection_id
            ),
        ));
    }
    match appraisal.status {
        Tier::Affirming | Tier::Warning => {}
        other => {
            return Err(fail(
                "ear.status",
                "affirming or warning",
                format!("{other:?}").to_lowercase(),
            ))
        }
    }
    Ok(claims)
}

/// The same two ends: as socket addresses with IPv4-mapped IPv6 read as IPv4 (an application
/// listening on `[::]` sees `[::ffff:127.0.0.1]:8080` where the proxy dialled `127.0.0.1:8080`),
/// as text when either does not parse.
fn same_connection(a: &AppConnection, b: &AppConnection) -> bool {
    fn same(x: &str, y: &str) -> bool {
        match (
            x.parse::<std::net::SocketAddr>(),
            y.parse::<std::net::SocketAddr>(),
        ) {
            (Ok(x), Ok(y)) => {
                x.ip().to_canonical() == y.ip().to_canonical() && x.port() == y.port()
            }
            _ => x == y,
        }
    }
    same(&a.app, &b.app) && same(&a.proxy, &b.proxy)
}

#[cfg(test)]
mod tests;
