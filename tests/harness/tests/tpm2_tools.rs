//! An independent implementation agrees with ours: `tpm2_checkquote` (tpm2-tools 5.4) accepts
//! the quotes `TssTpm` makes, and `ratls::tpm::verify` accepts the quotes `tpm2_quote` makes
//! with the same persistent AK.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::Output;

use ratls::attest::tpm::PcrMap;
use ratls::attest::TpmAttester;
use ratls::bundle::TpmEvidence;
use ratls::digest::HashAlg;
use ratls::tpm::{self, PcrValues, QuoteInput, TpmPolicy};
use ratls_harness::{ak_pem, open_tpm, simulate_boot, Swtpm, BOOT_AND_IMA_PCRS, DEFAULT_AK_HANDLE};
use ratls_test::swtpm::require;

/// The quote's qualifying data: a domain-separated raw nonce (the attesters sign nothing else).
fn nonce() -> ratls::binding::QualifyingData {
    ratls::binding::QualifyingData::for_raw_nonce(b"harness test nonce").unwrap()
}

fn tools() -> Option<Swtpm> {
    if !require("tpm2_checkquote", "tpm2-tools") || !require("tpm2_quote", "tpm2-tools") {
        return None;
    }
    Swtpm::start()
}

/// `-l` syntax: `sha1:0,1,2+sha256:0,1,2`.
fn pcr_list(banks: &[HashAlg], pcrs: &[u8]) -> String {
    let indices = pcrs
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(",");
    banks
        .iter()
        .map(|b| format!("{}:{indices}", b.name()))
        .collect::<Vec<_>>()
        .join("+")
}

/// tpm2-tools' own PCR file (what `tpm2_quote -o` writes, "serialized" format): the C structs
/// in little-endian, as the tools dump them. `TPML_PCR_SELECTION` (u32 count, 16 ×
/// {u16 hash, u8 sizeofSelect, u8[4] pcrSelect, u8 padding}), a u32 number of digest lists, then
/// `TPML_DIGEST`s (u32 count, 8 × {u16 size, u8[64] buffer}) holding the values in selection
/// order, eight per list.
fn tpm2_tools_pcr_file(banks: &[HashAlg], pcrs: &[u8], values: &PcrMap) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend(
        u32::try_from(banks.len())
            .unwrap()
            .to_le_bytes(),
    );
    let mut select = [0u8; 4];
    for pcr in pcrs {
        select[usize::from(pcr / 8)] |= 1 << (pcr % 8);
    }
    for i in 0..16 {
        match banks.get(i) {
            Some(bank) => {
                out.extend(bank.tpm_alg_id().to_le_bytes());
                out.push(3);
                out.extend(select);
                out.push(0);
            }
            None => out.extend([0u8; 8]),
        }
    }
    let digests: Vec<&Vec<u8>> = banks
        .iter()
        .flat_map(|bank| {
            pcrs.iter()
                .map(move |i| &values[bank][i])
        })
        .collect();
    let lists = digests.chunks(8).collect::<Vec<_>>();
    out.extend(
        u32::try_from(lists.len())
            .unwrap()
            .to_le_bytes(),
    );
    for list in lists {
        out.extend(
            u32::try_from(list.len())
                .unwrap()
                .to_le_bytes(),
        );
        for slot in 0..8 {
            match list.get(slot) {
                Some(digest) => {
                    out.extend(
                        u16::try_from(digest.len())
                            .unwrap()
                            .to_le_bytes(),
                    );
                    let mut buffer = [0u8; 64];
                    buffer[..digest.len()].copy_from_slice(digest);
                    out.extend(buffer);
                }
                None => out.extend([0u8; 66]),
            }
        }
    }
    out
}

fn values_of(evidence: &TpmEvidence) -> PcrMap {
    evidence
        .pcrs
        .iter()
        .map(|(b, v)| {
            (
                *b,
                v.iter()
                    .map(|(i, d)| (*i, d.to_vec()))
                    .collect(),
            )
        })
        .collect()
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `tpm2_checkquote` on our quote with the PCR values in `pcr_file` (and `-l list` when the
/// file holds bare values).
fn checkquote(
    dir: &Path,
    evidence: &TpmEvidence,
    nonce: &[u8],
    pcr_file: &[u8],
    list: Option<&str>,
) -> Output {
    std::fs::write(dir.join("ak.pem"), ak_pem(&evidence.ak_public).unwrap()).unwrap();
    std::fs::write(dir.join("quote.msg"), &evidence.attest).unwrap();
    std::fs::write(dir.join("quote.sig"), &evidence.signature).unwrap();
    std::fs::write(dir.join("quote.pcrs"), pcr_file).unwrap();
    let mut cmd = std::process::Command::new("tpm2_checkquote");
    cmd.env("TSS2_LOG", "all+none")
        .arg("-u")
        .arg(dir.join("ak.pem"))
        .arg("-m")
        .arg(dir.join("quote.msg"))
        .arg("-s")
        .arg(dir.join("quote.sig"))
        .arg("-f")
        .arg(dir.join("quote.pcrs"))
        .args(["-g", "sha256", "-q", &hex::encode(nonce)]);
    if let Some(list) = list {
        cmd.args(["-l", list]);
    }
    cmd.output().unwrap()
}

#[test]
fn tpm2_checkquote_accepts_our_quotes() {
    let Some(swtpm) = tools() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "checkquote").unwrap();
    let dir = swtpm.state_dir();
    for banks in [vec![HashAlg::Sha256], vec![HashAlg::Sha1, HashAlg::Sha256]] {
        let evidence = tpm
            .quote(&nonce(), &banks, &BOOT_AND_IMA_PCRS)
            .unwrap();
        let file = tpm2_tools_pcr_file(&banks, &BOOT_AND_IMA_PCRS, &values_of(&evidence));
        let out = checkquote(dir, &evidence, nonce().as_bytes(), &file, None);
        assert!(out.status.success(), "{banks:?}: {}", show(&out));

        // Refused: another nonce, another PCR value, another quote's signature.
        let out = checkquote(dir, &evidence, b"another nonce", &file, None);
        assert!(
            !out.status.success(),
            "wrong nonce accepted: {}",
            show(&out)
        );
        let mut changed = values_of(&evidence);
        changed
            .get_mut(&HashAlg::Sha256)
            .unwrap()
            .get_mut(&3)
            .unwrap()[0] ^= 1;
        let changed = tpm2_tools_pcr_file(&banks, &BOOT_AND_IMA_PCRS, &changed);
        let out = checkquote(dir, &evidence, nonce().as_bytes(), &changed, None);
        assert!(
            !out.status.success(),
            "changed PCR accepted: {}",
            show(&out)
        );
        let mut other = tpm
            .quote(
                &ratls::binding::QualifyingData::for_raw_nonce(b"other").unwrap(),
                &banks,
                &BOOT_AND_IMA_PCRS,
            )
            .unwrap();
        other.attest = evidence.attest.clone();
        let out = checkquote(dir, &other, nonce().as_bytes(), &file, None);
        assert!(
            !out.status.success(),
            "wrong signature accepted: {}",
            show(&out)
        );
    }
}

#[test]
fn tpm2_checkquote_accepts_bare_values_with_a_pcr_list() {
    let Some(swtpm) = tools() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "bare").unwrap();
    // Seven PCRs: tpm2-tools 5.4 reads bare values (`-f` with `-l`) into lists of eight digests
    // but never counts the eighth of a list, so selections of eight or more PCRs fail there
    // whatever the quote; its own serialized format (the test above) has no such limit.
    let pcrs = [0u8, 1, 2, 3, 4, 7, 10];
    let banks = [HashAlg::Sha256];
    let evidence = tpm
        .quote(&nonce(), &banks, &pcrs)
        .unwrap();
    let bare: Vec<u8> = evidence.pcrs[&HashAlg::Sha256]
        .values()
        .flat_map(|v| v.to_vec())
        .collect();
    let list = pcr_list(&banks, &pcrs);
    let out = checkquote(
        swtpm.state_dir(),
        &evidence,
        nonce().as_bytes(),
        &bare,
        Some(&list),
    );
    assert!(out.status.success(), "{}", show(&out));
    let out = checkquote(swtpm.state_dir(), &evidence, &[0; 20], &bare, Some(&list));
    assert!(
        !out.status.success(),
        "wrong nonce accepted: {}",
        show(&out)
    );
}

#[test]
fn our_verifier_accepts_tpm2_quote_with_our_ak() {
    let Some(swtpm) = tools() else {
        return;
    };
    let tpm = open_tpm(&swtpm).unwrap();
    simulate_boot(&tpm, "tpm2_quote").unwrap();
    let dir = swtpm.state_dir();
    let banks = [HashAlg::Sha1, HashAlg::Sha256];
    let out = swtpm
        .command("tpm2_quote")
        .args(["-c", &format!("{DEFAULT_AK_HANDLE:#x}")])
        .args(["-l", &pcr_list(&banks, &BOOT_AND_IMA_PCRS)])
        .args(["-q", &hex::encode(nonce().as_bytes())])
        .arg("-m")
        .arg(dir.join("theirs.msg"))
        .arg("-s")
        .arg(dir.join("theirs.sig"))
        .arg("-o")
        .arg(dir.join("theirs.pcrs"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", show(&out));
    let attest = std::fs::read(dir.join("theirs.msg")).unwrap();
    let signature = std::fs::read(dir.join("theirs.sig")).unwrap();
    let values = tpm
        .read_pcrs(&banks, &BOOT_AND_IMA_PCRS)
        .unwrap();
    // Their PCR file is the serialized format our helper writes, byte for byte.
    assert_eq!(
        std::fs::read(dir.join("theirs.pcrs")).unwrap(),
        tpm2_tools_pcr_file(&banks, &BOOT_AND_IMA_PCRS, &values)
    );
    let mut pcrs = PcrValues::default();
    for (bank, bank_values) in values {
        for (index, value) in bank_values {
            pcrs.insert(bank, index, value);
        }
    }
    let ak = tpm.ak_public().unwrap();
    let input = QuoteInput {
        attest: &attest,
        signature: &signature,
        ak_public: &ak,
        nonce: Some(nonce().as_bytes().to_vec()),
        pcrs: Some(pcrs),
    };
    let verdict = tpm::verify(&input, &TpmPolicy::default());
    assert!(verdict.is_trusted(), "{:?}", verdict.first_failure());
}
