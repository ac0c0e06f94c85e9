//! Unit tests for the certificate table, the report checks and the `/dev/sev-guest` pieces that
//! do not need the device. The real AMD certificates are in `ratls/tests/real_tsm.rs`.

use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

use super::*;
use crate::snp::REPORT_LEN;

fn self_signed(cn: &str) -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let params = CertificateParams::new(vec![cn.to_owned()]).unwrap();
    params
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn table(entries: &[([u8; 16], &[u8])]) -> CertTable {
    CertTable {
        entries: entries
            .iter()
            .map(|(guid, data)| CertEntry {
                guid: *guid,
                data: data.to_vec(),
            })
            .collect(),
    }
}

/// A report that parses: version 2, everything else zero but `report_data` and `vmpl`.
fn report(report_data: &[u8; 64], vmpl: u32) -> Vec<u8> {
    let mut r = vec![0u8; REPORT_LEN];
    r[0..4].copy_from_slice(&2u32.to_le_bytes());
    r[0x30..0x34].copy_from_slice(&vmpl.to_le_bytes());
    r[0x50..0x90].copy_from_slice(report_data);
    r
}

fn entry_bytes(guid: [u8; 16], offset: u32, length: u32) -> Vec<u8> {
    let mut out = guid.to_vec();
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&length.to_le_bytes());
    out
}

#[test]
fn guids_are_amds_in_wire_order() {
    // GHCB specification 56421 and AMD's sev-guest tool: the text form, bytes in written order.
    assert_eq!(
        guid_text(&GUID_VCEK),
        "63da758d-e664-4564-adc5-f4b93be8accd"
    );
    assert_eq!(
        guid_text(&GUID_VLEK),
        "a8074bc2-a25a-483e-aae6-39c045a0b8a1"
    );
    assert_eq!(guid_text(&GUID_ASK), "4ab7b379-bbac-4fe4-a02f-05aef327c782");
    assert_eq!(guid_text(&GUID_ARK), "c0b406a4-a803-4952-9743-3fb6014cd0ae");
    for kind in [CertKind::Vcek, CertKind::Vlek, CertKind::Ask, CertKind::Ark] {
        assert_eq!(CertKind::from_guid(&kind.guid().unwrap()), kind);
    }
    assert_eq!(CertKind::from_guid(&[0x11; 16]), CertKind::Other);
    assert_eq!(CertKind::Other.guid(), None);
}

#[test]
fn table_round_trips_and_keeps_unknown_guids() {
    let crl_guid = [0x92; 16];
    let t = table(&[
        (GUID_VCEK, b"vcek bytes"),
        (GUID_ASK, b"ask"),
        (crl_guid, b"a CRL"),
        (GUID_ARK, b"ark!"),
    ]);
    let bytes = t.encode();
    assert_eq!(bytes.len(), 5 * ENTRY_LEN + 10 + 3 + 5 + 4);
    let parsed = CertTable::parse(&bytes).unwrap();
    assert_eq!(parsed, t);
    assert_eq!(parsed.get(CertKind::Vcek), Some(&b"vcek bytes"[..]));
    assert_eq!(parsed.get(CertKind::Vlek), None);
    assert_eq!(parsed.entries[2].kind(), CertKind::Other);

    // Page padding after the certificates is what hosts send.
    let mut padded = bytes.clone();
    padded.resize(4096, 0);
    assert_eq!(CertTable::parse(&padded).unwrap(), t);

    // An empty table is just the terminator.
    assert_eq!(
        CertTable::parse(&[0; ENTRY_LEN]).unwrap(),
        CertTable::default()
    );
}

#[test]
fn table_errors_are_typed() {
    // No terminator.
    let mut bytes = entry_bytes(GUID_VCEK, 48, 1);
    bytes.push(0xaa);
    assert!(matches!(
        CertTable::parse(&bytes),
        Err(ParseError::Truncated {
            field: "entry.guid",
            ..
        })
    ));
    // A zero GUID with a length is not a terminator.
    assert!(matches!(
        CertTable::parse(&entry_bytes([0; 16], 0, 5)),
        Err(ParseError::InvalidValue {
            field: "terminator",
            ..
        })
    ));
    // Certificate data inside the table.
    let mut bytes = entry_bytes(GUID_VCEK, 8, 4);
    bytes.extend_from_slice(&[0; ENTRY_LEN]);
    assert!(matches!(
        CertTable::parse(&bytes),
        Err(ParseError::InvalidValue {
            field: "entry.offset",
            ..
        })
    ));
    // Empty certificate.
    let mut bytes = entry_bytes(GUID_VCEK, 48, 0);
    bytes.extend_from_slice(&[0; ENTRY_LEN]);
    assert!(matches!(
        CertTable::parse(&bytes),
        Err(ParseError::InvalidValue {
            field: "entry.length",
            ..
        })
    ));
    // Certificate past the end, and an offset near u32::MAX.
    for (offset, length) in [(48, 100), (u32::MAX, 16), (48, u32::MAX)] {
        let mut bytes = entry_bytes(GUID_VCEK, offset, length);
        bytes.extend_from_slice(&[0; ENTRY_LEN]);
        bytes.extend_from_slice(&[1; 10]);
        let err = CertTable::parse(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ParseError::Truncated {
                    field: "certificate",
                    ..
                } | ParseError::TooLarge {
                    field: "certificate",
                    ..
                }
            ),
            "{offset} {length}: {err}"
        );
    }
    // The same known certificate twice.
    let dup = table(&[(GUID_VCEK, b"one"), (GUID_VCEK, b"two")]).encode();
    assert!(matches!(
        CertTable::parse(&dup),
        Err(ParseError::InvalidValue {
            field: "entry.guid",
            ..
        })
    ));
    // Unknown GUIDs may repeat.
    let other = table(&[([7; 16], b"one"), ([7; 16], b"two")]).encode();
    assert_eq!(
        CertTable::parse(&other)
            .unwrap()
            .entries
            .len(),
        2
    );
    // Caps.
    let many: Vec<([u8; 16], &[u8])> = (0..=MAX_ENTRIES)
        .map(|i| ([u8::try_from(i).unwrap() + 1; 16], &b"x"[..]))
        .collect();
    assert!(matches!(
        CertTable::parse(&table(&many).encode()),
        Err(ParseError::TooLarge {
            field: "entries",
            ..
        })
    ));
    assert!(matches!(
        CertTable::parse(&vec![0; MAX_TABLE_LEN + 1]),
        Err(ParseError::TooLarge { field: "table", .. })
    ));
    let big = vec![0x30; MAX_CERT_LEN + 1];
    assert!(matches!(
        CertTable::parse(&table(&[(GUID_ARK, &big)]).encode()),
        Err(ParseError::TooLarge {
            field: "certificate",
            ..
        })
    ));
    assert!(matches!(
        CertTable::parse(&[]),
        Err(ParseError::Truncated { .. })
    ));
}

#[test]
fn host_certs_are_normalised_to_der_and_a_pem_chain() {
    let vcek = self_signed("vcek");
    let ask = self_signed("ask");
    let ark = self_signed("ark");
    let ark_pem = pem::encode(&pem::Pem::new("CERTIFICATE", ark.clone()));
    let t = table(&[
        (GUID_ARK, ark_pem.as_bytes()),
        (GUID_VCEK, &vcek),
        (GUID_ASK, &ask),
    ]);
    let certs = HostCerts::from_table(&t).unwrap();
    assert_eq!(certs.vcek.as_deref(), Some(&vcek[..]));
    assert_eq!(certs.vlek, None);
    let chain = pem::parse_many(certs.chain.unwrap()).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].contents(), &ask[..], "ASK first");
    assert_eq!(chain[1].contents(), &ark[..], "then ARK");

    // Half a chain is no chain: the verifier then uses its built-in one.
    let half = HostCerts::from_table(&table(&[(GUID_VLEK, &vcek), (GUID_ASK, &ask)])).unwrap();
    assert_eq!(half.vlek.as_deref(), Some(&vcek[..]));
    assert_eq!(half.chain, None);

    // Junk where a certificate should be.
    let err = HostCerts::from_table(&table(&[(GUID_VCEK, b"not a certificate")])).unwrap_err();
    assert!(
        matches!(&err, AttestError::BadResponse { why, .. } if why.contains("VCEK")),
        "{err}"
    );
    // Unknown entries are not looked at.
    let other = HostCerts::from_table(&table(&[([9; 16], b"junk")])).unwrap();
    assert_eq!(other, HostCerts::default());
}

#[test]
fn evidence_checks_report_data_vmpl_and_table() {
    let rd = [0x5a; 64];
    let vcek = self_signed("vcek");
    let aux = table(&[(GUID_VCEK, &vcek)]).encode();

    match evidence(&rd, report(&rd, 0), Some(0), Some(&aux)).unwrap() {
        TeeEvidence::SevSnp {
            report: r,
            vcek: v,
            vlek,
            chain,
            ..
        } => {
            assert_eq!(r.as_slice(), &report(&rd, 0)[..]);
            assert_eq!(v.unwrap().as_slice(), &vcek[..]);
            assert_eq!((vlek, chain), (None, None));
        }
        other => panic!("{other:?}"),
    }
    // No table, or an empty one: no certificates.
    for aux in [None, Some(&[][..])] {
        assert!(matches!(
            evidence(&rd, report(&rd, 2), None, aux).unwrap(),
            TeeEvidence::SevSnp {
                vcek: None,
                chain: None,
                ..
            }
        ));
    }
    let bad = |e: AttestError, needle: &str| {
        assert!(
            matches!(&e, AttestError::BadResponse { why, .. } if why.contains(needle)),
            "{e}"
        )
    };
    bad(
        evidence(&rd, report(&[0; 64], 0), None, None).unwrap_err(),
        "report_data",
    );
    bad(
        evidence(&rd, report(&rd, 1), Some(0), None).unwrap_err(),
        "VMPL 1",
    );
    bad(
        evidence(&rd, report(&rd, 0)[..100].to_vec(), None, None).unwrap_err(),
        "truncated",
    );
    // Hex text is a valid form for files, never for what the kernel returns.
    let hex_report = hex(report(&rd, 0)).into_bytes();
    assert!(evidence(&rd, hex_report, None, None).is_err());
    bad(
        evidence(&rd, report(&rd, 0), None, Some(&[1, 2, 3])).unwrap_err(),
        "certificate table",
    );
}

#[test]
fn table_mutations_never_panic() {
    let vcek = self_signed("vcek");
    let ask = self_signed("ask");
    let sample = table(&[(GUID_VCEK, &vcek), (GUID_ASK, &ask), ([3; 16], b"other")]).encode();
    let rd = [1; 64];
    let rep = report(&rd, 0);
    let mutations = ratls_test::Mutations::of(&sample, 0x7ab1e, 2000);
    assert!(mutations.count() > 1000);
    let mut parsed = 0;
    for (what, bytes) in mutations.iter() {
        if let Ok(t) = CertTable::parse(bytes) {
            parsed += 1;
            // Whatever parses re-encodes to a table that parses the same way.
            assert_eq!(CertTable::parse(&t.encode()).unwrap(), t, "{what}");
        }
        match evidence(&rd, rep.clone(), None, Some(bytes)) {
            Ok(TeeEvidence::SevSnp { report, .. }) => assert_eq!(report.as_slice(), &rep[..]),
            Ok(other) => panic!("{what}: {other:?}"),
            Err(AttestError::BadResponse { .. }) => {}
            Err(e) => panic!("{what}: unexpected error kind {e}"),
        }
    }
    assert!(parsed > 0);
}

#[test]
fn missing_device_is_unavailable() {
    let dir = std::env::temp_dir().join(format!("ratls-sev-guest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("sev-guest");
    assert!(matches!(
        check_device(&missing),
        Err(AttestError::Unavailable { .. })
    ));
    std::fs::write(&missing, b"").unwrap();
    assert!(check_device(&missing).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[cfg(all(feature = "sev-guest", target_os = "linux"))]
mod device {
    use sev::error::{CertError, FirmwareError, UserApiError, VmmError};

    use super::super::{map_firmware_error, SevGuest, SEV_GUEST_DEVICE};
    use crate::attest::AttestError;

    #[test]
    fn open_without_the_device_is_unavailable() {
        if std::path::Path::new(SEV_GUEST_DEVICE).exists() {
            eprintln!("SKIPPED: this machine has {SEV_GUEST_DEVICE}");
            return;
        }
        let err = SevGuest::open().unwrap_err();
        assert!(
            matches!(&err, AttestError::Unavailable { why, .. } if why.contains(SEV_GUEST_DEVICE)),
            "{err}"
        );
    }

    #[test]
    fn host_throttling_is_rate_limited() {
        let limited = [
            UserApiError::VmmError(VmmError::RateLimitRetryRequest),
            UserApiError::IOError(std::io::Error::from_raw_os_error(16)), // EBUSY
            UserApiError::IOError(std::io::Error::from_raw_os_error(11)), // EAGAIN
            UserApiError::FirmwareError(FirmwareError::IoError(std::io::Error::from_raw_os_error(
                16,
            ))),
        ];
        for e in limited {
            let shown = e.to_string();
            assert!(
                matches!(
                    map_firmware_error(e),
                    AttestError::RateLimited {
                        retry_after_ms: 2_000,
                        ..
                    }
                ),
                "{shown}"
            );
        }
        let other = [
            UserApiError::VmmError(VmmError::InvalidCertificatePageLength),
            UserApiError::FirmwareError(FirmwareError::UnknownSevError(0x16)),
            UserApiError::IOError(std::io::Error::from_raw_os_error(5)), // EIO
            UserApiError::ApiError(CertError::EmptyCertBuffer),
            UserApiError::VmplError,
        ];
        for e in other {
            let shown = e.to_string();
            match map_firmware_error(e) {
                AttestError::Backend { error, .. } => assert_eq!(error.to_string(), shown),
                mapped => panic!("{shown} became {mapped}"),
            }
        }
    }
}
