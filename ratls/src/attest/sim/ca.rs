//! The simulated AMD chain: generation, certificate encoding, storage.

use core::fmt;
use std::fs;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use der::asn1::{Any, BitString, Ia5StringRef, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PSS_SHA384,
};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Version;

use super::{backend, SimError};
use crate::attest::AttestError;
use crate::digest::HashAlg;
use crate::pki::Cert;

/// The organisation in every simulated name: nobody can mistake these for AMD's certificates.
pub(super) const SIM_ORGANIZATION: &str = "SIMULATED — not Advanced Micro Devices";
/// The product the simulated chain names (`ARK-Genoa`, `SEV-Genoa`); the reports carry a
/// matching Genoa CPUID.
const PRODUCT: &str = "Genoa";
/// The VCEK productName extension (Genoa, stepping B1: CPUID family 0x19 model 0x11 stepping 1).
const PRODUCT_NAME: &str = "Genoa-B1";
const RSA_BITS: usize = 4096;
const VALID_BEFORE_NOW: Duration = Duration::from_secs(24 * 3600);
const VALID_AFTER_NOW: Duration = Duration::from_secs(3652 * 24 * 3600);

// File names inside the CA directory. The ARK certificate is written last and marks a complete
// set: without it, `load_or_generate` regenerates.
const ARK_PEM: &str = "ark.pem";
const ASK_PEM: &str = "ask.pem";
const VCEK_PEM: &str = "vcek.pem";
const ARK_KEY: &str = "ark-key.pem";
const ASK_KEY: &str = "ask-key.pem";
const VCEK_KEY: &str = "vcek-key.pem";

const CERT_MODE: u32 = 0o644;
const KEY_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

const OID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

// AMD's VCEK extensions ("Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
// Specification"), in the order AMD's KDS writes them.
const OID_STRUCT_VERSION: &str = "1.3.6.1.4.1.3704.1.1";
const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SPL_4: &str = "1.3.6.1.4.1.3704.1.3.4";
const OID_SPL_5: &str = "1.3.6.1.4.1.3704.1.3.5";
const OID_SPL_6: &str = "1.3.6.1.4.1.3704.1.3.6";
const OID_SPL_7: &str = "1.3.6.1.4.1.3704.1.3.7";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// The RSASSA-PSS parameters exactly as AMD encodes them in its ARK/ASK/VCEK certificates:
/// hashAlgorithm SHA-384 (with NULL parameters), maskGenAlgorithm MGF1 with SHA-384, saltLength
/// 48, trailerField 1 (AMD writes the default explicitly; we match its bytes so that any verifier
/// accepting AMD's chain accepts this one).
pub(super) const PSS_SHA384_PARAMS: [u8; 59] = [
    0x30, 0x39, // RSASSA-PSS-params
    0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, // [0] sha384, NULL
    0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30,
    0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, // [1] mgf1
    0xa2, 0x03, 0x02, 0x01, 0x30, // [2] saltLength 48
    0xa3, 0x03, 0x02, 0x01, 0x01, // [3] trailerField 1
];

/// The TCB the simulated VCEK certifies and the reports claim (Genoa layout). The default is a
/// recent real Genoa TCB (bootloader 10, TEE 0, SNP 23, microcode 84).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTcb {
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl Default for SimTcb {
    fn default() -> Self {
        Self {
            bootloader: 10,
            tee: 0,
            snp: 23,
            microcode: 84,
        }
    }
}

impl SimTcb {
    /// The TCB_VERSION as a report carries it (Milan/Genoa layout: byte 0 bootloader, byte 1
    /// TEE, bytes 2–5 reserved, byte 6 SNP, byte 7 microcode).
    pub fn raw(self) -> u64 {
        u64::from_le_bytes([
            self.bootloader,
            self.tee,
            0,
            0,
            0,
            0,
            self.snp,
            self.microcode,
        ])
    }
}

/// One certificate of the simulated chain with its private key (PKCS#8 DER).
struct Issued {
    der: Vec<u8>,
    pkcs8: Vec<u8>,
}

/// A simulated AMD chain (ARK → ASK → VCEK) with its private keys.
///
/// The chain verifies exactly like AMD's (same algorithms, same PSS parameters, same VCEK
/// extensions) except that its ARK is not a pinned AMD root. `Debug` shows names and
/// fingerprints, never keys.
pub struct SimCa {
    ark: Issued,
    ask: Issued,
    vcek: Issued,
    vcek_key: EcdsaKeyPair,
    chip_id: [u8; 64],
    tcb: SimTcb,
}

impl fmt::Debug for SimCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fingerprint = |der: &[u8]| crate::hexfmt::hex(HashAlg::Sha256.digest(der));
        f.debug_struct("SimCa")
            .field("ark_sha256", &fingerprint(&self.ark.der))
            .field("ask_sha256", &fingerprint(&self.ask.der))
            .field("vcek_sha256", &fingerprint(&self.vcek.der))
            .field("chip_id", &crate::hexfmt::hex(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

impl SimCa {
    /// Generate a new chain: two RSA-4096 keys (about a second each, more in unoptimised
    /// builds), one P-384 key, a random 64-byte chip id, and the default [`SimTcb`].
    pub fn generate() -> Result<Self, AttestError> {
        Self::generate_with_tcb(SimTcb::default())
    }

    /// [`SimCa::generate`] for a machine at `tcb` (its VCEK is issued for it and its reports
    /// carry it): tests of TCB policies and of the audit log's TCB queries.
    pub fn generate_with_tcb(tcb: SimTcb) -> Result<Self, AttestError> {
        let rng = SystemRandom::new();
        let now = SystemTime::now();
        let validity = Validity::new(
            time(
                now.checked_sub(VALID_BEFORE_NOW)
                    .unwrap_or(now),
            )?,
            time(
                now.checked_add(VALID_AFTER_NOW)
                    .ok_or_else(|| backend("simulated certificate validity", "time overflow"))?,
            )?,
        );
        let chip_id = random_chip_id(&rng)?;

        let ark_pkcs8 = generate_rsa(&rng)?;
        let ark_key = rsa_key_pair(&ark_pkcs8)?;
        let ask_pkcs8 = generate_rsa(&rng)?;
        let ask_key = rsa_key_pair(&ask_pkcs8)?;
        let vcek_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|e| backend("simulated VCEK key generation", e))?
            .as_ref()
            .to_vec();
        let vcek_key = ecdsa_key_pair(&vcek_pkcs8, &rng)?;

        let ark_name = sim_name(&format!("ARK-{PRODUCT}"))?;
        let ask_name = sim_name(&format!("SEV-{PRODUCT}"))?;
        let vcek_name = sim_name("SEV-VCEK")?;
        let ark_spki = rsa_spki(&ark_key)?;
        let ask_spki = rsa_spki(&ask_key)?;
        let ark_ski = key_identifier(ark_key.public().as_ref())?;
        let ask_ski = key_identifier(ask_key.public().as_ref())?;

        let ark = issue(
            &rng,
            &ark_key,
            Template {
                serial: serial(&rng)?,
                issuer: ark_name.clone(),
                subject: ark_name.clone(),
                validity,
                spki: ark_spki,
                extensions: vec![
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.15"),
                        true,
                        &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
                    )?,
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.14"),
                        false,
                        &SubjectKeyIdentifier(ark_ski.clone()),
                    )?,
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.19"),
                        true,
                        &BasicConstraints {
                            ca: true,
                            path_len_constraint: None,
                        },
                    )?,
                ],
            },
        )?;
        let ask = issue(
            &rng,
            &ark_key,
            Template {
                serial: serial(&rng)?,
                issuer: ark_name,
                subject: ask_name.clone(),
                validity,
                spki: ask_spki,
                extensions: vec![
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.14"),
                        false,
                        &SubjectKeyIdentifier(ask_ski),
                    )?,
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.35"),
                        false,
                        &AuthorityKeyIdentifier {
                            key_identifier: Some(ark_ski),
                            authority_cert_issuer: None,
                            authority_cert_serial_number: None,
                        },
                    )?,
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.19"),
                        true,
                        &BasicConstraints {
                            ca: true,
                            path_len_constraint: Some(0),
                        },
                    )?,
                    extension(
                        ObjectIdentifier::new_unwrap("2.5.29.15"),
                        true,
                        &KeyUsage(KeyUsages::KeyCertSign.into()),
                    )?,
                ],
            },
        )?;
        let vcek = issue(
            &rng,
            &ask_key,
            Template {
                serial: serial(&rng)?,
                issuer: ask_name,
                subject: vcek_name,
                validity,
                spki: ec_spki(&vcek_key)?,
                extensions: vcek_extensions(&tcb, &chip_id)?,
            },
        )?;
        Ok(Self {
            ark: Issued {
                der: ark,
                pkcs8: ark_pkcs8,
            },
            ask: Issued {
                der: ask,
                pkcs8: ask_pkcs8,
            },
            vcek: Issued {
                der: vcek,
                pkcs8: vcek_pkcs8,
            },
            vcek_key,
            chip_id,
            tcb,
        })
    }

    /// Load the chain from `dir` if it holds one, otherwise generate one and store it there.
    ///
    /// `ark.pem` is written last and marks a complete set: a directory without it (a first start,
    /// or a crash while writing) gets a new chain; a directory with it must hold a consistent one.
    pub fn load_or_generate(dir: &Path) -> Result<Self, AttestError> {
        if dir.join(ARK_PEM).exists() {
            return Self::load(dir);
        }
        let ca = Self::generate()?;
        ca.to_pem_files(dir)?;
        Ok(ca)
    }

    /// Store the certificates (`ark.pem`, `ask.pem`, `vcek.pem`, mode 0644) and the private
    /// keys (`ark-key.pem`, `ask-key.pem`, `vcek-key.pem`: PKCS#8 PEM, mode 0600) in `dir`
    /// (created with mode 0700 when missing). Each file is written to a temporary file, synced
    /// and renamed over the final name; the directory is synced last.
    pub fn to_pem_files(&self, dir: &Path) -> Result<(), AttestError> {
        create_dir(dir)?;
        let files: [(&str, &str, &[u8], u32); 6] = [
            (ARK_KEY, "PRIVATE KEY", &self.ark.pkcs8, KEY_MODE),
            (ASK_KEY, "PRIVATE KEY", &self.ask.pkcs8, KEY_MODE),
            (VCEK_KEY, "PRIVATE KEY", &self.vcek.pkcs8, KEY_MODE),
            (ASK_PEM, "CERTIFICATE", &self.ask.der, CERT_MODE),
            (VCEK_PEM, "CERTIFICATE", &self.vcek.der, CERT_MODE),
            (ARK_PEM, "CERTIFICATE", &self.ark.der, CERT_MODE),
        ];
        for (name, tag, der, mode) in files {
            write_atomic(dir, name, pem_encode(tag, der).as_bytes(), mode)?;
        }
        sync_dir(dir)
    }

    /// Load a chain stored by [`to_pem_files`](Self::to_pem_files), checking that it is
    /// consistent: ARK self-signed, ASK signed by the ARK, VCEK signed by the ASK (with our own
    /// certificate verifier), each private key matching its certificate, and the VCEK carrying
    /// the TCB and hwID extensions.
    pub fn load(dir: &Path) -> Result<Self, AttestError> {
        let ark = Issued {
            der: read_pem(dir, ARK_PEM, "CERTIFICATE")?,
            pkcs8: read_pem(dir, ARK_KEY, "PRIVATE KEY")?,
        };
        let ask = Issued {
            der: read_pem(dir, ASK_PEM, "CERTIFICATE")?,
            pkcs8: read_pem(dir, ASK_KEY, "PRIVATE KEY")?,
        };
        let vcek = Issued {
            der: read_pem(dir, VCEK_PEM, "CERTIFICATE")?,
            pkcs8: read_pem(dir, VCEK_KEY, "PRIVATE KEY")?,
        };
        Self::from_parts(ark, ask, vcek).map_err(|why| AttestError::BadResponse {
            what: "simulated CA",
            why: format!("{}: {why}", dir.display()),
        })
    }

    fn from_parts(ark: Issued, ask: Issued, vcek: Issued) -> Result<Self, String> {
        let cert = |name: &str, der: &[u8]| {
            Cert::from_der(der).map_err(|e| format!("{name} certificate: {e}"))
        };
        let ark_cert = cert("ARK", &ark.der)?;
        let ask_cert = cert("ASK", &ask.der)?;
        let vcek_cert = cert("VCEK", &vcek.der)?;
        ark_cert
            .verify_signed_by(&ark_cert)
            .map_err(|e| format!("ARK: {e}"))?;
        ask_cert
            .verify_signed_by(&ark_cert)
            .map_err(|e| format!("ASK: {e}"))?;
        vcek_cert
            .verify_signed_by(&ask_cert)
            .map_err(|e| format!("VCEK: {e}"))?;

        let rng = SystemRandom::new();
        for (name, pkcs8, cert) in [
            ("ARK", &ark.pkcs8, &ark_cert),
            ("ASK", &ask.pkcs8, &ask_cert),
        ] {
            let key = RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| format!("{name} key: {e}"))?;
            if Some(key.public().as_ref()) != cert.subject_public_key().ok() {
                return Err(format!(
                    "the {name} key does not match the {name} certificate"
                ));
            }
        }
        let vcek_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &vcek.pkcs8, &rng)
                .map_err(|e| format!("VCEK key: {e}"))?;
        if Some(vcek_key.public_key().as_ref()) != vcek_cert.subject_public_key().ok() {
            return Err("the VCEK key does not match the VCEK certificate".into());
        }

        let spl = |oid: &str| -> Result<u8, String> {
            let value = vcek_cert
                .extension_value(oid)
                .ok_or_else(|| format!("VCEK extension {oid} missing"))?;
            u8::from_der(value).map_err(|e| format!("VCEK extension {oid}: {e}"))
        };
        let tcb = SimTcb {
            bootloader: spl(OID_BL_SPL)?,
            tee: spl(OID_TEE_SPL)?,
            snp: spl(OID_SNP_SPL)?,
            microcode: spl(OID_UCODE_SPL)?,
        };
        let chip_id: [u8; 64] = vcek_cert
            .extension_value(OID_HWID)
            .ok_or("VCEK hwID extension missing")?
            .try_into()
            .map_err(|_| "VCEK hwID is not 64 bytes")?;
        Ok(Self {
            ark,
            ask,
            vcek,
            vcek_key,
            chip_id,
            tcb,
        })
    }

    /// The simulated ARK (DER): what the verifier's `--insecure-sim-root` must be given.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark.der
    }

    /// The simulated ARK as PEM.
    pub fn ark_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.ark.der)
    }

    /// The simulated ASK (DER).
    pub fn ask_der(&self) -> &[u8] {
        &self.ask.der
    }

    /// The simulated VCEK (DER).
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek.der
    }

    /// The ASK then the ARK, PEM: the form AMD KDS serves `cert_chain` in.
    pub fn chain_pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.ask.der) + &pem_encode("CERTIFICATE", &self.ark.der)
    }

    /// The simulated chip id (the VCEK's hwID).
    pub fn chip_id(&self) -> &[u8; 64] {
        &self.chip_id
    }

    /// The TCB the VCEK certifies.
    pub fn tcb(&self) -> SimTcb {
        self.tcb
    }

    /// The ASK's serial number (big-endian magnitude, as [`Cert::serial`] gives it).
    pub fn ask_serial(&self) -> Result<Vec<u8>, AttestError> {
        serial_of("ASK", &self.ask.der)
    }

    /// The VCEK's serial number (big-endian magnitude, as [`Cert::serial`] gives it).
    pub fn vcek_serial(&self) -> Result<Vec<u8>, AttestError> {
        serial_of("VCEK", &self.vcek.der)
    }

    /// A CRL as AMD's KDS serves it (`/vcek/v1/{product}/crl`): version 2, issued under the ARK's
    /// name and signed by the ARK with RSASSA-PSS/SHA-384 (salt 48), listing `revoked` (serial
    /// magnitudes), valid `this_update .. next_update`.
    pub fn crl(
        &self,
        revoked: &[&[u8]],
        this_update: SystemTime,
        next_update: SystemTime,
    ) -> Result<Vec<u8>, AttestError> {
        self.crl_signed_with(&self.ark.pkcs8, revoked, this_update, next_update)
    }

    /// The same CRL (ARK's name as issuer) but signed with the ASK's key: what a forger
    /// without the ARK key could produce (negative tests).
    pub fn crl_signed_by_ask(
        &self,
        revoked: &[&[u8]],
        this_update: SystemTime,
        next_update: SystemTime,
    ) -> Result<Vec<u8>, AttestError> {
        self.crl_signed_with(&self.ask.pkcs8, revoked, this_update, next_update)
    }

    fn crl_signed_with(
        &self,
        signer_pkcs8: &[u8],
        revoked: &[&[u8]],
        this_update: SystemTime,
        next_update: SystemTime,
    ) -> Result<Vec<u8>, AttestError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        let what = "simulated CRL";
        let rng = SystemRandom::new();
        let key = rsa_key_pair(signer_pkcs8)?;
        let algorithm = AlgorithmIdentifierOwned {
            oid: OID_RSASSA_PSS,
            parameters: Some(Any::from_der(&PSS_SHA384_PARAMS).map_err(|e| backend(what, e))?),
        };
        let revoked = revoked
            .iter()
            .map(|serial| {
                let serial: &[u8] = if serial.is_empty() { &[0] } else { serial };
                Ok(RevokedCert::<x509_cert::certificate::Rfc5280> {
                    serial_number: SerialNumber::<x509_cert::certificate::Rfc5280>::new(serial)
                        .map_err(|e| backend(what, e))?,
                    revocation_date: time(this_update)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, AttestError>>()?;
        let tbs = TbsCertList {
            version: Version::V2,
            signature: algorithm.clone(),
            issuer: sim_name(&format!("ARK-{PRODUCT}"))?,
            this_update: time(this_update)?,
            next_update: Some(time(next_update)?),
            revoked_certificates: (!revoked.is_empty()).then_some(revoked),
            crl_extensions: None,
        };
        let tbs_der = tbs
            .to_der()
            .map_err(|e| backend(what, e))?;
        let mut signature = vec![0u8; key.public().modulus_len()];
        key.sign(&RSA_PSS_SHA384, &rng, &tbs_der, &mut signature)
            .map_err(|e| backend(what, e))?;
        CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&signature).map_err(|e| backend(what, e))?,
        }
        .to_der()
        .map_err(|e| backend(what, e))
    }

    /// Sign `message` with the VCEK: ECDSA P-384 with SHA-384, r || s big-endian.
    pub(super) fn sign(&self, rng: &SystemRandom, message: &[u8]) -> Result<[u8; 96], AttestError> {
        let signature = self
            .vcek_key
            .sign(rng, message)
            .map_err(|e| backend("simulated VCEK signature", e))?;
        signature
            .as_ref()
            .try_into()
            .map_err(|_| backend("simulated VCEK signature", "not 96 bytes"))
    }
}

/// What goes into a certificate besides the issuer's signature.
struct Template {
    serial: SerialNumber,
    issuer: Name,
    subject: Name,
    validity: Validity,
    spki: SubjectPublicKeyInfoOwned,
    extensions: Vec<Extension>,
}

/// `TBSCertificate` (RFC 5280 section 4.1), version 3, no unique identifiers.
#[derive(Sequence)]
struct TbsCertificate {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: Name,
    validity: Validity,
    subject: Name,
    subject_public_key_info: SubjectPublicKeyInfoOwned,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Vec<Extension>>,
}

/// `Certificate` (RFC 5280 section 4.1).
#[derive(Sequence)]
struct Certificate {
    tbs_certificate: TbsCertificate,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Build and sign a certificate with an RSA issuer key (RSASSA-PSS, SHA-384, salt 48).
fn issue(rng: &SystemRandom, issuer_key: &RsaKeyPair, t: Template) -> Result<Vec<u8>, AttestError> {
    let what = "simulated certificate";
    let algorithm = AlgorithmIdentifierOwned {
        oid: OID_RSASSA_PSS,
        parameters: Some(Any::from_der(&PSS_SHA384_PARAMS).map_err(|e| backend(what, e))?),
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: t.serial,
        signature: algorithm.clone(),
        issuer: t.issuer,
        validity: t.validity,
        subject: t.subject,
        subject_public_key_info: t.spki,
        extensions: Some(t.extensions),
    };
    let tbs_der = tbs
        .to_der()
        .map_err(|e| backend(what, e))?;
    let mut signature = vec![0u8; issuer_key.public().modulus_len()];
    issuer_key
        .sign(&RSA_PSS_SHA384, rng, &tbs_der, &mut signature)
        .map_err(|e| backend(what, e))?;
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: algorithm,
        signature: BitString::from_bytes(&signature).map_err(|e| backend(what, e))?,
    }
    .to_der()
    .map_err(|e| backend(what, e))
}

fn serial_of(name: &str, der: &[u8]) -> Result<Vec<u8>, AttestError> {
    Cert::from_der(der)
        .map(|c| c.serial().to_vec())
        .map_err(|e| backend("simulated certificate", format!("{name}: {e}")))
}

/// A name shaped like AMD's (OU, C, L, ST, O, CN) with the simulated organisation.
fn sim_name(common_name: &str) -> Result<Name, AttestError> {
    // RFC 4514 order: the last RDN first.
    Name::from_str(&format!(
        "CN={common_name},O={SIM_ORGANIZATION},ST=CA,L=Santa Clara,C=US,OU=Engineering"
    ))
    .map_err(|e| backend("simulated certificate name", e))
}

fn time(t: SystemTime) -> Result<Time, AttestError> {
    Time::try_from(t).map_err(|e| backend("simulated certificate validity", e))
}

/// A random positive 64-bit serial number with no leading zero byte.
fn serial(rng: &SystemRandom) -> Result<SerialNumber, AttestError> {
    let mut bytes = [0u8; 8];
    rng.fill(&mut bytes)
        .map_err(|e| backend("random serial number", e))?;
    if let Some(first) = bytes.first_mut() {
        *first = (*first & 0x7f) | 0x40;
    }
    SerialNumber::new(&bytes).map_err(|e| backend("random serial number", e))
}

/// A random chip id. AMD's hwID extension holds the raw 64 bytes; a verifier that also accepts
/// them wrapped in an inner OCTET STRING could misread an id starting with 0x04, so we avoid
/// that first byte.
fn random_chip_id(rng: &SystemRandom) -> Result<[u8; 64], AttestError> {
    let mut id = [0u8; 64];
    loop {
        rng.fill(&mut id)
            .map_err(|e| backend("random chip id", e))?;
        if id.first() != Some(&0x04) {
            return Ok(id);
        }
    }
}

/// The extensions of an AMD VCEK: structVersion, productName, the SPLs (the reserved ones 4–7
/// as zero, as AMD writes them), hwID.
fn vcek_extensions(tcb: &SimTcb, chip_id: &[u8; 64]) -> Result<Vec<Extension>, AttestError> {
    let what = "simulated VCEK extensions";
    let raw = |oid: &str, value: Vec<u8>| -> Result<Extension, AttestError> {
        Ok(Extension {
            extn_id: ObjectIdentifier::new(oid).map_err(|e| backend(what, e))?,
            critical: false,
            extn_value: OctetString::new(value).map_err(|e| backend(what, e))?,
        })
    };
    let int = |v: u8| v.to_der().map_err(|e| backend(what, e));
    let product = Ia5StringRef::new(PRODUCT_NAME)
        .and_then(|s| s.to_der())
        .map_err(|e| backend(what, e))?;
    Ok(vec![
        raw(OID_STRUCT_VERSION, int(0)?)?,
        raw(OID_PRODUCT_NAME, product)?,
        raw(OID_BL_SPL, int(tcb.bootloader)?)?,
        raw(OID_TEE_SPL, int(tcb.tee)?)?,
        raw(OID_SPL_4, int(0)?)?,
        raw(OID_SPL_5, int(0)?)?,
        raw(OID_SPL_6, int(0)?)?,
        raw(OID_SPL_7, int(0)?)?,
        raw(OID_SNP_SPL, int(tcb.snp)?)?,
        raw(OID_UCODE_SPL, int(tcb.microcode)?)?,
        raw(OID_HWID, chip_id.to_vec())?,
    ])
}

fn extension(
    oid: ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension, AttestError> {
    let what = "simulated certificate extension";
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(
            value
                .to_der()
                .map_err(|e| backend(what, e))?,
        )
        .map_err(|e| backend(what, e))?,
    })
}

/// RFC 5280 section 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
fn key_identifier(public_key: &[u8]) -> Result<OctetString, AttestError> {
    OctetString::new(HashAlg::Sha1.digest(public_key))
        .map_err(|e| backend("simulated key identifier", e))
}

fn rsa_spki(key: &RsaKeyPair) -> Result<SubjectPublicKeyInfoOwned, AttestError> {
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        subject_public_key: BitString::from_bytes(key.public().as_ref())
            .map_err(|e| backend("simulated RSA public key", e))?,
    })
}

fn ec_spki(key: &EcdsaKeyPair) -> Result<SubjectPublicKeyInfoOwned, AttestError> {
    let what = "simulated VCEK public key";
    Ok(SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: OID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&OID_SECP384R1).map_err(|e| backend(what, e))?),
        },
        subject_public_key: BitString::from_bytes(key.public_key().as_ref())
            .map_err(|e| backend(what, e))?,
    })
}

/// Generate an RSA-4096 key with the `rsa` crate (ring cannot generate RSA keys) and return it
/// as PKCS#8 DER, the form ring signs with and the key files hold.
fn generate_rsa(rng: &SystemRandom) -> Result<Vec<u8>, AttestError> {
    use rsa::pkcs8::EncodePrivateKey;
    let what = "simulated RSA-4096 key generation";
    let key = rsa::PrivateKey::new(&mut RingRng(rng), RSA_BITS).map_err(|e| backend(what, e))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| backend(what, e))?;
    Ok(pkcs8.as_bytes().to_vec())
}

fn rsa_key_pair(pkcs8: &[u8]) -> Result<RsaKeyPair, AttestError> {
    RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| backend("simulated RSA key", e))
}

fn ecdsa_key_pair(pkcs8: &[u8], rng: &SystemRandom) -> Result<EcdsaKeyPair, AttestError> {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8, rng)
        .map_err(|e| backend("simulated VCEK key", e))
}

/// ring's system RNG as the `rand_core` RNG the `rsa` crate takes for key generation.
struct RingRng<'a>(&'a SystemRandom);

impl rsa::rand_core::TryRng for RingRng<'_> {
    type Error = SimError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0
            .fill(dst)
            .map_err(|_| SimError("the system random number generator failed".into()))
    }
}

impl rsa::rand_core::TryCryptoRng for RingRng<'_> {}

fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

fn io_error(path: &Path, error: std::io::Error) -> AttestError {
    AttestError::Io {
        what: "simulated CA",
        path: path.display().to_string(),
        error: Arc::new(error),
    }
}

/// Read a file holding exactly one PEM block with `tag`.
fn read_pem(dir: &Path, name: &str, tag: &str) -> Result<Vec<u8>, AttestError> {
    let path = dir.join(name);
    let text = fs::read(&path).map_err(|e| io_error(&path, e))?;
    let block = pem::parse(&text).map_err(|e| AttestError::BadResponse {
        what: "simulated CA",
        why: format!("{}: {e}", path.display()),
    })?;
    if block.tag() != tag {
        return Err(AttestError::BadResponse {
            what: "simulated CA",
            why: format!("{}: a {tag} PEM block, not {}", path.display(), block.tag()),
        });
    }
    Ok(block.into_contents())
}

fn create_dir(dir: &Path) -> Result<(), AttestError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder
        .create(dir)
        .map_err(|e| io_error(dir, e))
}

/// Write `contents` to `dir/name` atomically (`crate::fsutil`) with `mode`.
fn write_atomic(dir: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), AttestError> {
    let path = dir.join(name);
    crate::fsutil::write_atomic(&path, contents, mode).map_err(|e| io_error(&path, e))
}

fn sync_dir(dir: &Path) -> Result<(), AttestError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(dir, e))?;
    }
    Ok(())
}
