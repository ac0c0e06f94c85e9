use serde_bytes::ByteBuf;

use super::*;
use crate::binding::Role;

fn sample() -> Bundle {
    let mut pcrs = BTreeMap::new();
    pcrs.insert(
        HashAlg::Sha256,
        (0u8..=10)
            .map(|i| (i, ByteBuf::from(vec![i; 32])))
            .collect(),
    );
    Bundle {
        version: VERSION,
        tee: Some(TeeEvidence::SevSnp {
            report: ByteBuf::from(vec![7; 1184]),
            vcek: Some(ByteBuf::from(vec![1, 2, 3])),
            vlek: None,
            chain: None,
        }),
        tpm: Some(TpmEvidence {
            attest: ByteBuf::from(vec![0xff, 0x54, 0x43, 0x47]),
            signature: ByteBuf::from(vec![0; 8]),
            ak_public: ByteBuf::from(vec![0, 0x23]),
            pcrs,
            ek_cert: None,
        }),
        ima: Some(ImaEvidence::Digest {
            len: 1000,
            sha256: ByteBuf::from(vec![9; 32]),
        }),
        binding: BindingClaims {
            role: Role::agent(),
            spki_sha256: [1; 32],
            ak_sha256: Some([2; 32]),
            issued_at: 1_700_000_000,
            challenge: None,
            exporter: None,
        },
    }
}

#[test]
fn cmw_round_trip() {
    let bundle = sample();
    let cmw = bundle.to_cmw();
    assert_eq!(Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN).unwrap(), bundle);
    // Byte strings stay byte strings (compact): the 1184-byte report costs ~1187 bytes.
    assert!(cmw.len() < 1184 + 11 * 35 + 400, "{}", cmw.len());
    assert_eq!(
        bundle.digest(),
        Bundle::from_cmw(&cmw, MAX_BUNDLE_LEN)
            .unwrap()
            .digest()
    );
}

#[test]
fn decoding_refuses_bad_input_with_typed_errors() {
    let cmw = sample().to_cmw();
    assert!(matches!(
        Bundle::from_cmw(&cmw, 100),
        Err(BundleError::TooLarge { .. })
    ));
    let mut trailing = cmw.clone();
    trailing.push(0);
    assert!(matches!(
        Bundle::from_cmw(&trailing, MAX_BUNDLE_LEN),
        Err(BundleError::NotCmw(_))
    ));
    for cut in [0, 1, 10, cmw.len() / 2, cmw.len() - 1] {
        assert!(
            Bundle::from_cmw(&cmw[..cut], MAX_BUNDLE_LEN).is_err(),
            "{cut}"
        );
    }
    // Another media type.
    let mut other = Vec::new();
    ciborium::into_writer(
        &Cmw("application/cbor".into(), ByteBuf::from(sample().to_cbor())),
        &mut other,
    )
    .unwrap();
    assert!(matches!(
        Bundle::from_cmw(&other, MAX_BUNDLE_LEN),
        Err(BundleError::WrongType { .. })
    ));
    // Another version.
    let mut future = sample();
    future.version = 2;
    assert!(matches!(
        Bundle::from_cmw(&future.to_cmw(), MAX_BUNDLE_LEN),
        Err(BundleError::UnsupportedVersion { presented: 2, .. })
    ));
    // A byte string declaring an absurd length must not allocate it.
    let mut huge = Vec::new();
    ciborium::into_writer(
        &Cmw(
            MEDIA_TYPE.into(),
            ByteBuf::from(vec![0x5b, 0x10, 0, 0, 0, 0, 0, 0, 0]),
        ),
        &mut huge,
    )
    .unwrap();
    assert!(matches!(
        Bundle::from_cmw(&huge, MAX_BUNDLE_LEN),
        Err(BundleError::Malformed(_))
    ));
}

#[test]
fn mutated_bundles_never_panic() {
    let cmw = sample().to_cmw();
    let mut rng = 0x1234_5678_u64;
    for i in 0..3000 {
        let mut m = cmw.clone();
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let at = (rng >> 33) as usize % m.len();
        m[at] ^= 1 << (i % 8);
        let _ = Bundle::from_cmw(&m, MAX_BUNDLE_LEN);
    }
}
