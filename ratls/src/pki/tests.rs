//! Unit tests for `pki`: certificates built at test time with rcgen, plus the real AMD and Intel
//! chains (built-in anchors, and the captured evidence when present).

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};

use super::algorithm::*;
use super::cert::*;
use super::der::*;
use super::*;
use crate::hexfmt::hex;
use crate::snp::Product;
use x509_parser::asn1_rs::Oid;

/// 2030-01-01T00:00:00Z, inside every window below unless a test says otherwise.
const NOW: UnixTime = UnixTime::from_secs(1_893_456_000);

fn at(text: &str) -> UnixTime {
    UnixTime::parse_rfc3339(text).unwrap()
}

fn params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "pki tests");
    params
        .distinguished_name
        .push(DnType::CommonName, cn);
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = params(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = params(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

/// A certificate together with what it takes to issue others.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    cert: Cert,
}

impl Ca {
    fn root(params: CertificateParams, key: KeyPair) -> Self {
        let cert = Cert::from_der(params.self_signed(&key).unwrap().der()).unwrap();
        Self { params, key, cert }
    }

    fn issue(&self, params: &CertificateParams, key: &KeyPair) -> Vec<u8> {
        params
            .signed_by(key, &Issuer::from_params(&self.params, &self.key))
            .unwrap()
            .der()
            .to_vec()
    }

    fn issue_ca(&self, params: CertificateParams, key: KeyPair) -> Self {
        let cert = Cert::from_der(&self.issue(&params, &key)).unwrap();
        Self { params, key, cert }
    }

    fn issue_leaf(&self, params: &CertificateParams) -> Cert {
        Cert::from_der(&self.issue(params, &p256())).unwrap()
    }
}

/// root ← inter ← leaf, all ECDSA P-256 / SHA-256.
struct Pki {
    root: Ca,
    inter: Ca,
    leaf: Cert,
}

fn pki() -> Pki {
    let root = Ca::root(ca_params("root"), p256());
    let inter = root.issue_ca(ca_params("inter"), p256());
    let leaf = inter.issue_leaf(&leaf_params("leaf"));
    Pki { root, inter, leaf }
}

impl Pki {
    fn issuers(&self) -> Vec<Cert> {
        vec![self.inter.cert.clone(), self.root.cert.clone()]
    }

    fn verify(&self, leaf: &Cert, now: UnixTime) -> Result<[u8; 32], CertError> {
        verify_chain(leaf, &self.issuers(), &[self.root.cert.sha256()], now)
    }
}

fn pem_of(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

#[test]
fn a_valid_p256_chain_verifies() {
    let p = pki();
    assert_eq!(p.verify(&p.leaf, NOW), Ok(p.root.cert.sha256()));
    p.leaf
        .check_issued_by(&p.inter.cert)
        .unwrap();
    p.inter
        .cert
        .check_issued_by(&p.root.cert)
        .unwrap();
    // A self-signed root is issued by itself.
    p.root
        .cert
        .check_issued_by(&p.root.cert)
        .unwrap();
    p.leaf
        .check_key_usage_digital_signature()
        .unwrap();

    assert_eq!(p.leaf.subject_cn(), "leaf");
    assert_eq!(p.leaf.issuer_cn(), "inter");
    assert!(p
        .leaf
        .subject_name()
        .contains("CN=leaf"));
    assert!(p
        .leaf
        .issuer_name()
        .contains("O=pki tests"));
    assert_eq!(
        p.leaf.signature_algorithm(),
        Ok(SignatureAlgorithm::EcdsaSha256)
    );
    assert_eq!(p.leaf.key_algorithm(), &KeyAlgorithm::EcP256);
    assert_eq!(
        p.leaf
            .subject_public_key()
            .unwrap()
            .len(),
        65
    );
    assert!(p.root.cert.is_self_issued() && !p.leaf.is_self_issued());
    assert!(p.inter.cert.is_ca() && !p.leaf.is_ca());
    assert_eq!(p.root.cert.fingerprint(), hex(p.root.cert.sha256()));
    assert!(format!("{:?}", p.leaf).contains("leaf"));
    // The root is pinned and valid; the others must still chain up to it.
    assert_eq!(
        verify_chain(
            &p.leaf,
            std::slice::from_ref(&p.root.cert),
            &[p.root.cert.sha256()],
            NOW
        ),
        Err(CertError::IssuerMismatch {
            subject: "leaf".into(),
            issuer_name: p.leaf.issuer_name(),
            parent_subject: p.root.cert.subject_name(),
        })
    );
}

#[test]
fn a_p384_root_signing_with_sha384_verifies() {
    let mut params = ca_params("root384");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root = Ca::root(
        params,
        KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap(),
    );
    assert_eq!(root.cert.key_algorithm(), &KeyAlgorithm::EcP384);
    let leaf = root.issue_leaf(&leaf_params("leaf"));
    assert_eq!(
        leaf.signature_algorithm(),
        Ok(SignatureAlgorithm::EcdsaSha384)
    );
    leaf.check_issued_by(&root.cert)
        .unwrap();
    assert_eq!(
        leaf.check_signature_algorithm(&[SignatureAlgorithm::EcdsaSha256]),
        Err(CertError::UnsupportedAlgorithm {
            subject: "leaf".into(),
            presented: "ecdsa-with-SHA384".into(),
            supported: "ecdsa-with-SHA256".into(),
        })
    );
}

#[test]
fn an_expired_leaf_is_refused_with_its_window() {
    let p = pki();
    let mut params = leaf_params("old leaf");
    params.not_after = date_time_ymd(2025, 1, 1);
    let leaf = p.inter.issue_leaf(&params);
    let expected = CertError::Expired {
        subject: "old leaf".into(),
        not_before: at("2020-01-01T00:00:00Z"),
        not_after: at("2025-01-01T00:00:00Z"),
        now: NOW,
    };
    assert_eq!(leaf.check_validity(NOW), Err(expected.clone()));
    assert_eq!(p.verify(&leaf, NOW), Err(expected));
    // Both ends of the window are inclusive.
    leaf.check_validity(at("2025-01-01T00:00:00Z"))
        .unwrap();
    leaf.check_validity(at("2020-01-01T00:00:00Z"))
        .unwrap();
    assert!(p
        .verify(&leaf, at("2024-06-01T00:00:00Z"))
        .is_ok());
}

#[test]
fn a_not_yet_valid_leaf_is_refused() {
    let p = pki();
    let mut params = leaf_params("future leaf");
    params.not_before = date_time_ymd(2035, 1, 1);
    let leaf = p.inter.issue_leaf(&params);
    let err = p.verify(&leaf, NOW).unwrap_err();
    assert_eq!(
        err,
        CertError::NotYetValid {
            subject: "future leaf".into(),
            not_before: at("2035-01-01T00:00:00Z"),
            not_after: at("2040-01-01T00:00:00Z"),
            now: NOW,
        }
    );
    assert!(err
        .to_string()
        .contains("not valid before 2035-01-01T00:00:00Z, now is 2030-01-01T00:00:00Z"));
    // An expired CA fails the chain too.
    assert!(matches!(
        p.verify(&p.leaf, at("2041-01-01T00:00:00Z")),
        Err(CertError::Expired { subject, .. }) if subject == "leaf"
    ));
}

#[test]
fn a_wrong_issuer_name_is_refused_even_with_a_valid_signature() {
    let p = pki();
    // Signed with the intermediate's key, but naming another issuer.
    let impostor = ca_params("somebody else");
    let der = leaf_params("leaf")
        .signed_by(&p256(), &Issuer::from_params(&impostor, &p.inter.key))
        .unwrap()
        .der()
        .to_vec();
    let leaf = Cert::from_der(&der).unwrap();
    leaf.verify_signed_by(&p.inter.cert)
        .unwrap();
    let err = leaf
        .check_issued_by(&p.inter.cert)
        .unwrap_err();
    let CertError::IssuerMismatch {
        subject,
        issuer_name,
        parent_subject,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert_eq!(subject, "leaf");
    assert!(issuer_name.contains("CN=somebody else"), "{err}");
    assert!(parent_subject.contains("CN=inter"), "{err}");
    assert_eq!(p.verify(&leaf, NOW), Err(err));
}

#[test]
fn a_parent_that_is_not_a_ca_is_refused() {
    let root = Ca::root(ca_params("root"), p256());
    for (is_ca, key_usages, expected) in [
        (
            IsCa::NoCa,
            vec![KeyUsagePurpose::KeyCertSign],
            CertError::NotACa {
                subject: "parent".into(),
            },
        ),
        (
            IsCa::ExplicitNoCa,
            vec![KeyUsagePurpose::KeyCertSign],
            CertError::NotACa {
                subject: "parent".into(),
            },
        ),
        (
            IsCa::Ca(BasicConstraints::Unconstrained),
            vec![KeyUsagePurpose::DigitalSignature],
            CertError::KeyUsage {
                subject: "parent".into(),
                needed: "keyCertSign",
            },
        ),
    ] {
        let mut params = params("parent");
        params.is_ca = is_ca;
        params.key_usages = key_usages;
        let parent = root.issue_ca(params, p256());
        let leaf = parent.issue_leaf(&leaf_params("leaf"));
        // The signature is fine; the parent may not issue certificates.
        leaf.verify_signed_by(&parent.cert)
            .unwrap();
        assert_eq!(leaf.check_chains_to(&parent.cert), Err(expected.clone()));
        assert_eq!(leaf.check_issued_by(&parent.cert), Err(expected.clone()));
        assert_eq!(
            verify_chain(
                &leaf,
                &[parent.cert.clone(), root.cert.clone()],
                &[root.cert.sha256()],
                NOW
            ),
            Err(expected)
        );
    }
    // A CA without keyUsage may sign certificates.
    let mut params = params("parent");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let parent = root.issue_ca(params, p256());
    parent
        .issue_leaf(&leaf_params("leaf"))
        .check_issued_by(&parent.cert)
        .unwrap();
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let p = pki();
    // Same name as the intermediate, another key.
    let forger = Ca {
        params: ca_params("inter"),
        key: p256(),
        cert: p.inter.cert.clone(),
    };
    let leaf = forger.issue_leaf(&leaf_params("leaf"));
    leaf.check_chains_to(&p.inter.cert)
        .unwrap();
    let expected = CertError::BadSignature {
        subject: "leaf".into(),
        issuer: "inter".into(),
    };
    assert_eq!(leaf.check_issued_by(&p.inter.cert), Err(expected.clone()));
    assert_eq!(p.verify(&leaf, NOW), Err(expected));
    // And an intermediate signed by a root of the same name but another key.
    let other_root = Ca::root(ca_params("root"), p256());
    let inter = other_root.issue_ca(ca_params("inter"), p256());
    assert_eq!(
        inter.cert.check_issued_by(&p.root.cert),
        Err(CertError::BadSignature {
            subject: "inter".into(),
            issuer: "root".into(),
        })
    );
}

/// The DER with the last (outer, unsigned) or first (TBS) ecdsa-with-SHA256 OID turned into
/// ecdsa-with-SHA384.
fn patch_algorithm(der: &[u8], outer: bool) -> Vec<u8> {
    let positions: Vec<usize> = der
        .windows(OID_ECDSA_SHA256.len())
        .enumerate()
        .filter(|(_, w)| *w == OID_ECDSA_SHA256)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(positions.len(), 2);
    let at = if outer { positions[1] } else { positions[0] };
    let mut out = der.to_vec();
    out[at + OID_ECDSA_SHA256.len() - 1] = 0x03;
    out
}

#[test]
fn outer_and_tbs_algorithms_must_match() {
    let p = pki();
    for outer in [true, false] {
        let leaf = Cert::from_der(&patch_algorithm(p.leaf.der(), outer)).unwrap();
        let expected = CertError::AlgorithmMismatch {
            subject: "leaf".into(),
        };
        assert_eq!(leaf.verify_signed_by(&p.inter.cert), Err(expected.clone()));
        assert_eq!(leaf.check_issued_by(&p.inter.cert), Err(expected.clone()));
        assert_eq!(p.verify(&leaf, NOW), Err(expected));
    }
}

#[test]
fn a_pem_bundle_tolerates_text_around_blocks_and_nothing_else() {
    let p = pki();
    let (leaf, inter) = (pem_of(p.leaf.der()), pem_of(p.inter.cert.der()));
    let key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
    let good = format!("subject=CN=leaf\n{leaf}\nsome notes\r\n{key}{inter}trailing text\n\0\0");
    let certs = Cert::many_from_der_or_pem(good.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].der(), p.leaf.der());
    assert_eq!(certs[1].der(), p.inter.cert.der());
    assert_eq!(
        Cert::from_der_or_pem(good.as_bytes()).unwrap_err(),
        CertError::Count {
            expected: 1,
            found: 2
        }
    );
    assert_eq!(
        Cert::from_der_or_pem(leaf.as_bytes())
            .unwrap()
            .der(),
        p.leaf.der()
    );
    assert_eq!(
        Cert::from_der_or_pem(p.leaf.der())
            .unwrap()
            .der(),
        p.leaf.der()
    );

    let body_line = leaf.lines().nth(1).unwrap();
    let bad = [
        // Junk inside the base64.
        leaf.replacen(body_line, &format!("{body_line}!!"), 1),
        // An unterminated block after a good one.
        format!("{leaf}{}", leaf.replace("-----END CERTIFICATE-----", "")),
        // A block that ends with another label.
        leaf.replace("END CERTIFICATE", "END PUBLIC KEY"),
        // RFC 1421 headers.
        leaf.replacen(
            "-----BEGIN CERTIFICATE-----\r\n",
            "-----BEGIN CERTIFICATE-----\r\nProc-Type: 4,ENCRYPTED\r\n\r\n",
            1,
        ),
    ];
    for text in &bad {
        assert_ne!(*text, leaf);
        let err = Cert::many_from_der_or_pem(text.as_bytes()).unwrap_err();
        assert!(
            matches!(err, CertError::Pem { .. } | CertError::Parse { .. }),
            "{err:?} for {text:?}"
        );
    }
    // No CERTIFICATE block at all.
    assert_eq!(
        Cert::many_from_der_or_pem(key.as_bytes()).unwrap_err(),
        CertError::Count {
            expected: 1,
            found: 0
        }
    );
    // Text without any block is taken as DER, and is not.
    assert!(matches!(
        Cert::many_from_der_or_pem(b"hello").unwrap_err(),
        CertError::Parse { .. }
    ));
    // A PEM block holding something that is not a certificate.
    let not_cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x00]));
    assert!(matches!(
        Cert::many_from_der_or_pem(not_cert.as_bytes()).unwrap_err(),
        CertError::Parse { .. }
    ));
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let p = pki();
    assert_eq!(
        Cert::from_der(&vec![0x30; MAX_CERT_LEN + 1]).unwrap_err(),
        CertError::TooLarge {
            what: "certificate",
            size: MAX_CERT_LEN + 1,
            limit: MAX_CERT_LEN,
        }
    );
    let mut padded = pem_of(p.leaf.der());
    padded.push_str(&" ".repeat(MAX_BUNDLE_LEN));
    assert!(matches!(
        Cert::many_from_der_or_pem(padded.as_bytes()).unwrap_err(),
        CertError::TooLarge {
            what: "certificate input",
            ..
        }
    ));
    let many = pem_of(p.leaf.der()).repeat(MAX_BUNDLE_CERTS + 1);
    assert_eq!(
        Cert::many_from_der_or_pem(many.as_bytes()).unwrap_err(),
        CertError::TooMany {
            count: MAX_BUNDLE_CERTS + 1,
            limit: MAX_BUNDLE_CERTS,
        }
    );
    let enough = pem_of(p.leaf.der()).repeat(MAX_BUNDLE_CERTS);
    assert_eq!(
        Cert::many_from_der_or_pem(enough.as_bytes())
            .unwrap()
            .len(),
        MAX_BUNDLE_CERTS
    );
}

#[test]
fn trailing_bytes_after_the_der_are_refused() {
    let p = pki();
    let mut der = p.leaf.der().to_vec();
    der.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        Cert::from_der(&der).unwrap_err(),
        CertError::TrailingBytes { count: 3 }
    );
    assert_eq!(
        Cert::from_der_or_pem(&der).unwrap_err(),
        CertError::TrailingBytes { count: 3 }
    );
    assert_eq!(
        Cert::many_from_der_or_pem(pem_of(&der).as_bytes()).unwrap_err(),
        CertError::TrailingBytes { count: 3 }
    );
    // Truncated DER is a parse error.
    assert!(matches!(
        Cert::from_der(&p.leaf.der()[..p.leaf.der().len() - 1]).unwrap_err(),
        CertError::Parse { .. }
    ));
}

#[test]
fn unhandled_critical_extensions_are_refused() {
    let p = pki();
    let mut params = leaf_params("leaf");
    let mut critical = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 1], vec![5, 0]);
    critical.set_criticality(true);
    params.custom_extensions = vec![critical];
    let leaf = p.inter.issue_leaf(&params);
    let expected = CertError::UnhandledCriticalExtension {
        subject: "leaf".into(),
        oid: "1.3.6.1.4.1.99999.1".into(),
    };
    assert_eq!(leaf.check_issued_by(&p.inter.cert), Err(expected.clone()));
    assert_eq!(p.verify(&leaf, NOW), Err(expected));

    // The same extension, not critical, is just data.
    let mut params = leaf_params("leaf");
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 4, 1, 99999, 1],
        vec![5, 0],
    )];
    let leaf = p.inter.issue_leaf(&params);
    p.verify(&leaf, NOW).unwrap();
    assert_eq!(
        leaf.extension_value("1.3.6.1.4.1.99999.1"),
        Some(&[5, 0][..])
    );
    assert_eq!(leaf.extension_value("1.3.6.1.4.1.99999.2"), None);
}

#[test]
fn duplicate_extensions_are_a_parse_error() {
    let p = pki();
    let mut params = leaf_params("leaf");
    let ext = || CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 99999, 2], vec![5, 0]);
    params.custom_extensions = vec![ext(), ext()];
    let der = p.inter.issue(&params, &p256());
    let err = Cert::from_der(&der).unwrap_err();
    const DUPLICATE: &str = "duplicate extension 1.3.6.1.4.1.99999.2";
    assert!(
        matches!(&err, CertError::Parse { reason } if reason.contains(DUPLICATE)),
        "{err:?}"
    );
}

#[test]
fn path_length_constraints_are_enforced() {
    let mut params = ca_params("root");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let root = Ca::root(params, p256());
    let inter = root.issue_ca(ca_params("inter"), p256());
    let leaf = inter.issue_leaf(&leaf_params("leaf"));
    let issuers = [inter.cert.clone(), root.cert.clone()];
    assert_eq!(root.cert.path_len_constraint(), Some(0));
    assert_eq!(
        verify_chain(&leaf, &issuers, &[root.cert.sha256()], NOW),
        Err(CertError::PathLength {
            subject: "root".into(),
            limit: 0,
            below: 1,
        })
    );
    // A leaf directly under the constrained root is fine.
    let direct = root.issue_leaf(&leaf_params("leaf"));
    verify_chain(
        &direct,
        std::slice::from_ref(&root.cert),
        &[root.cert.sha256()],
        NOW,
    )
    .unwrap();
}

#[test]
fn the_root_must_be_pinned_and_present() {
    let p = pki();
    let other = [0x11u8; 32];
    let err = verify_chain(&p.leaf, &p.issuers(), &[other], NOW).unwrap_err();
    assert_eq!(
        err,
        CertError::UntrustedRoot {
            subject: "root".into(),
            presented: p.root.cert.fingerprint(),
            pinned: hex(other),
        }
    );
    assert_eq!(
        verify_chain(&p.leaf, &[], &[p.root.cert.sha256()], NOW),
        Err(CertError::MissingIssuer {
            subject: "leaf".into()
        })
    );
    // The intermediate is not a pinned root.
    assert!(matches!(
        verify_chain(
            &p.leaf,
            std::slice::from_ref(&p.inter.cert),
            &[p.root.cert.sha256()],
            NOW
        ),
        Err(CertError::UntrustedRoot { .. })
    ));
}

#[test]
fn leaf_key_usage_must_allow_digital_signatures_when_present() {
    let p = pki();
    let mut params = params("signer");
    params.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    assert_eq!(
        p.inter
            .issue_leaf(&params)
            .check_key_usage_digital_signature(),
        Err(CertError::KeyUsage {
            subject: "signer".into(),
            needed: "digitalSignature",
        })
    );
    // No keyUsage extension: no restriction.
    p.inter
        .issue_leaf(&self::params("signer"))
        .check_key_usage_digital_signature()
        .unwrap();
}

/// RSASSA-PSS-params contents as AMD encodes them (SHA-384, MGF1-SHA-384, salt 48, trailer 1).
fn amd_pss_params() -> Vec<u8> {
    let mut out = vec![0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09];
    out.extend_from_slice(OID_SHA384);
    out.extend_from_slice(&[0x05, 0x00, 0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09]);
    out.extend_from_slice(OID_MGF1);
    out.extend_from_slice(&[0x30, 0x0d, 0x06, 0x09]);
    out.extend_from_slice(OID_SHA384);
    out.extend_from_slice(&[
        0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02, 0x01, 0x01,
    ]);
    out
}

#[test]
fn dotted_oids_encode_to_der() {
    assert_eq!(oid_der("2.5.29.19").as_deref(), Some(OID_BASIC_CONSTRAINTS));
    assert_eq!(
        oid_der("1.2.840.10045.4.3.2").as_deref(),
        Some(OID_ECDSA_SHA256)
    );
    assert_eq!(oid_der("1.3.132.0.34").as_deref(), Some(OID_P384));
    assert_eq!(
        oid_der("1.3.6.1.4.1.3704.1.4").as_deref(),
        Some(&[0x2b, 0x06, 0x01, 0x04, 0x01, 0x9c, 0x78, 0x01, 0x04][..])
    );
    // X.690 8.19.5 example: 2.999.3.
    assert_eq!(oid_der("2.999.3").unwrap(), [0x88, 0x37, 0x03]);
    assert_eq!(
        oid_der("1.2.4294967295").map(|d| Oid::new(d.into()).to_id_string()),
        Some("1.2.4294967295".to_owned())
    );
    // u64::MAX takes ten base-128 groups.
    assert_eq!(
        oid_der("1.2.18446744073709551615").unwrap(),
        [&[0x2a, 0x81][..], &[0xff; 8], &[0x7f]].concat()
    );
    for bad in [
        "",
        "1",
        "3.1",
        "1.40",
        "1.2.x",
        "1..2",
        "1.2.99999999999999999999",
    ] {
        assert_eq!(oid_der(bad), None, "{bad}");
    }
}

#[test]
fn rsassa_pss_parameters_must_be_exactly_sha384_mgf1_salt48() {
    let amd = amd_pss_params();
    assert!(pss_is_sha384(&amd));
    // Without the (default) trailer field, and without the NULL hash parameters.
    assert!(pss_is_sha384(&amd[..amd.len() - 5]));
    let no_null: Vec<u8> = {
        let mut v = vec![0xa0, 0x0d, 0x30, 0x0b, 0x06, 0x09];
        v.extend_from_slice(OID_SHA384);
        v.extend_from_slice(&[0xa1, 0x1a, 0x30, 0x18, 0x06, 0x09]);
        v.extend_from_slice(OID_MGF1);
        v.extend_from_slice(&[0x30, 0x0b, 0x06, 0x09]);
        v.extend_from_slice(OID_SHA384);
        v.extend_from_slice(&[0xa2, 0x03, 0x02, 0x01, 0x30]);
        v
    };
    assert!(pss_is_sha384(&no_null));

    let mutate = |at: usize, value: u8| {
        let mut v = amd.clone();
        v[at] = value;
        v
    };
    let sha256_last = 6 + OID_SHA384.len() - 1;
    let salt = amd.len() - 6;
    let trailer = amd.len() - 1;
    for (what, bad) in [
        ("hash SHA-256", mutate(sha256_last, 0x01)),
        ("salt 32", mutate(salt, 0x20)),
        ("trailer 2", mutate(trailer, 0x02)),
        ("trailing byte", [amd.clone(), vec![0]].concat()),
        ("empty", Vec::new()),
        ("hash only", amd[..17].to_vec()),
    ] {
        assert!(!pss_is_sha384(&bad), "{what}");
    }
}

#[test]
fn the_builtin_amd_anchors_are_cas_and_chain() {
    for product in Product::ALL {
        let ark = Cert::from_der_or_pem(product.ark_pem()).unwrap();
        ark.check_issued_by(&ark).unwrap();
        assert!(ark.is_ca() && ark.is_self_issued());
        assert_eq!(ark.key_algorithm(), &KeyAlgorithm::Rsa);
        assert_eq!(
            ark.signature_algorithm(),
            Ok(SignatureAlgorithm::RsaPssSha384)
        );
        for vlek in [false, true] {
            let mid = Cert::from_der_or_pem(product.intermediate_pem(vlek)).unwrap();
            mid.check_issued_by(&ark).unwrap();
            assert_eq!(mid.path_len_constraint(), Some(0), "{product}");
            // The ASK is not the ARK's issuer, and is not pinned.
            assert!(matches!(
                ark.check_issued_by(&mid),
                Err(CertError::IssuerMismatch { .. })
            ));
        }
    }
}

#[test]
fn the_real_milan_vcek_chains_to_the_pinned_ark() {
    let Some(dir) = ratls_test::real_testdata("sev-snp/milan-vcek-virtee") else {
        return;
    };
    let vcek = Cert::from_der_or_pem(&ratls_test::read_real(&dir, "vcek_milan.der")).unwrap();
    let chain =
        Cert::many_from_der_or_pem(&ratls_test::read_real(&dir, "cert_chain_milan")).unwrap();
    let pin: [u8; 32] = crate::hexfmt::decode_array(Product::Milan.ark_fingerprint()).unwrap();
    assert_eq!(
        verify_chain(&vcek, &chain, &[pin], at("2025-01-01T00:00:00Z")),
        Ok(pin)
    );
    assert_eq!(vcek.key_algorithm(), &KeyAlgorithm::EcP384);
    assert!(!vcek.is_ca());
    vcek.check_key_usage_digital_signature()
        .unwrap();
    assert!(vcek
        .extension_value("1.3.6.1.4.1.3704.1.4")
        .is_some());
    assert!(matches!(
        verify_chain(&vcek, &chain, &[pin], at("2031-01-01T00:00:00Z")),
        Err(CertError::Expired { subject, .. }) if subject == "SEV-VCEK"
    ));
    // The VCEK is not a CA: nothing may chain to it.
    assert!(matches!(
        chain[0].check_chains_to(&vcek),
        Err(CertError::IssuerMismatch { .. })
    ));
}

#[test]
fn the_real_intel_pck_chain_verifies() {
    let Some(dir) = ratls_test::real_testdata("tdx/v4-emr-phala-collateral") else {
        return;
    };
    // The quote is binary with the PEM chain inside: everything around it is ignored.
    let quote = ratls_test::read_real(&dir, "tdx_quote.bin");
    let certs = Cert::many_from_der_or_pem(&quote).unwrap();
    let [leaf, issuers @ ..] = certs.as_slice() else {
        panic!("no certificates");
    };
    assert_eq!(issuers.len(), 2);
    let pin = crate::tdx::INTEL_SGX_ROOT_CA_SHA256;
    assert_eq!(
        verify_chain(leaf, issuers, &[pin], at("2025-07-01T00:00:00Z")),
        Ok(pin)
    );
    leaf.check_key_usage_digital_signature()
        .unwrap();
    assert_eq!(issuers[1].subject_cn(), "Intel SGX Root CA");
    assert_eq!(issuers[1].path_len_constraint(), Some(1));
    assert!(matches!(
        verify_chain(leaf, issuers, &[pin], at("2033-01-01T00:00:00Z")),
        Err(CertError::Expired { subject, .. }) if subject == "Intel SGX PCK Certificate"
    ));
}

#[test]
fn mutated_certificates_never_panic_and_never_chain() {
    let p = pki();
    let mut samples = vec![(p.leaf.der().to_vec(), p.inter.cert.clone())];
    if let Some(dir) = ratls_test::real_testdata("sev-snp/milan-vcek-virtee") {
        let chain =
            Cert::many_from_der_or_pem(&ratls_test::read_real(&dir, "cert_chain_milan")).unwrap();
        samples.push((
            ratls_test::read_real(&dir, "vcek_milan.der"),
            chain[0].clone(),
        ));
    }
    for (seed, (sample, issuer)) in samples.iter().enumerate() {
        let mut parsed = 0;
        for (what, bytes) in ratls_test::Mutations::of(sample, seed as u64 + 11, 2000).iter() {
            let Ok(cert) = Cert::from_der(bytes) else {
                continue;
            };
            parsed += 1;
            if cert.check_issued_by(issuer).is_ok() {
                assert_eq!(bytes, sample.as_slice(), "{what} still chains");
            }
            let _ = cert.check_validity(NOW);
            let _ = cert.subject_public_key();
            let _ = cert.check_critical_extensions();
        }
        assert!(parsed > 0);
        // The same mutations as PEM text, and the PEM text itself mutated.
        let text = pem_of(sample);
        for (_, bytes) in ratls_test::Mutations::of(text.as_bytes(), seed as u64, 500).iter() {
            let _ = Cert::many_from_der_or_pem(bytes);
        }
    }
}
