//! The pure parts of the TPM attester; everything that talks to a TPM is tested against swtpm
//! in `tests/harness/tests/`.

use super::*;

#[test]
fn selections_keep_the_bank_order_given() {
    for banks in [
        [HashAlg::Sha1, HashAlg::Sha256],
        [HashAlg::Sha256, HashAlg::Sha1],
    ] {
        let list = selection_list(&banks, &[0, 7, 8, 10, 23]).unwrap();
        let got: Vec<u16> = list
            .get_selections()
            .iter()
            .map(|s| u16::from(s.hashing_algorithm()))
            .collect();
        assert_eq!(got, banks.map(HashAlg::tpm_alg_id));
        for sel in list.get_selections() {
            let slots: Vec<u32> = sel
                .selected()
                .into_iter()
                .map(|s| u32::from(s).trailing_zeros())
                .collect();
            assert_eq!(slots, [0, 7, 8, 10, 23]);
        }
    }
}

#[test]
fn selections_are_checked() {
    assert!(check_selection(&[HashAlg::Sha256], &[0, 23]).is_ok());
    for (banks, pcrs) in [
        (&[][..], &[0u8][..]),
        (&[HashAlg::Sha256][..], &[][..]),
        (&[HashAlg::Sha256][..], &[24][..]),
        (&[HashAlg::Sha1, HashAlg::Sha1][..], &[1][..]),
    ] {
        assert!(
            matches!(
                check_selection(banks, pcrs),
                Err(AttestError::BadResponse { .. })
            ),
            "{banks:?} {pcrs:?}"
        );
    }
}

#[test]
fn der_is_trimmed_to_its_sequence() {
    let mut cert = vec![0x30, 0x82, 0x01, 0x00];
    cert.extend([0xaa; 0x100]);
    let mut padded = cert.clone();
    padded.extend([0xff; 300]);
    assert_eq!(trim_der(padded), cert);
    assert_eq!(
        trim_der(vec![0x30, 0x03, 1, 2, 3, 0, 0]),
        [0x30, 0x03, 1, 2, 3]
    );
    assert_eq!(
        trim_der(vec![0x30, 0x81, 0x01, 9, 0]),
        [0x30, 0x81, 0x01, 9]
    );
    // Not DER, or shorter than it says: left as it is.
    assert_eq!(trim_der(vec![0x04, 0x01, 0]), [0x04, 0x01, 0]);
    assert_eq!(trim_der(vec![0x30, 0x05, 1]), [0x30, 0x05, 1]);
    assert_eq!(trim_der(Vec::new()), Vec::<u8>::new());
}

/// A `TPMS_ATTEST` quoting `selection` with `digest`.
fn attest(selection: &[(HashAlg, &[u8])], digest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(0xff54_4347u32.to_be_bytes());
    out.extend(0x8018u16.to_be_bytes());
    out.extend(0u16.to_be_bytes()); // qualifiedSigner
    out.extend(0u16.to_be_bytes()); // extraData
    out.extend([0; 17]); // clockInfo
    out.extend([0; 8]); // firmwareVersion
    out.extend(
        u32::try_from(selection.len())
            .unwrap()
            .to_be_bytes(),
    );
    for (bank, pcrs) in selection {
        out.extend(bank.tpm_alg_id().to_be_bytes());
        out.push(3);
        let mut select = [0u8; 3];
        for pcr in *pcrs {
            select[usize::from(pcr / 8)] |= 1 << (pcr % 8);
        }
        out.extend(select);
    }
    out.extend(
        u16::try_from(digest.len())
            .unwrap()
            .to_be_bytes(),
    );
    out.extend(digest);
    out
}

#[test]
fn the_pcr_digest_follows_the_quote_selection_order() {
    let mut values = PcrMap::new();
    for bank in [HashAlg::Sha1, HashAlg::Sha256] {
        for i in [0u8, 10] {
            values
                .entry(bank)
                .or_default()
                .insert(i, vec![i + bank.digest_len() as u8; bank.digest_len()]);
        }
    }
    let v = |bank: HashAlg, i: u8| values[&bank][&i].as_slice();
    let sha256_first = HashAlg::Sha256.digest_all([
        v(HashAlg::Sha256, 0),
        v(HashAlg::Sha256, 10),
        v(HashAlg::Sha1, 0),
        v(HashAlg::Sha1, 10),
    ]);
    let selection: [(HashAlg, &[u8]); 2] = [(HashAlg::Sha256, &[0, 10]), (HashAlg::Sha1, &[0, 10])];
    assert!(digest_matches(&attest(&selection, &sha256_first), &values).is_ok());
    let swapped: [(HashAlg, &[u8]); 2] = [(HashAlg::Sha1, &[0, 10]), (HashAlg::Sha256, &[0, 10])];
    assert!(digest_matches(&attest(&swapped, &sha256_first), &values).is_err());
    // A PCR the quote selects but that was not read.
    let more: [(HashAlg, &[u8]); 1] = [(HashAlg::Sha256, &[0, 1, 10])];
    let err = digest_matches(&attest(&more, &sha256_first), &values).unwrap_err();
    assert!(err.contains("PCR 1"), "{err}");
    assert!(digest_matches(b"junk", &values).is_err());
}
