//! `verify --save-evidence DIR`: the fresh evidence the verdict was made on, as the bundle
//! itself and as the separate files `cosmian_vm evidence verify` takes, so a verification can be
//! replayed offline, archived, or turned into test fixtures (`testdata/qemu/`).

use std::collections::BTreeMap;
use std::path::Path;

use ratls::bundle::{Bundle, EventLogEvidence, ImaEvidence, TeeEvidence, MAX_BUNDLE_LEN};
use ratls::fsutil::{write_atomic, PUBLIC_MODE};
use ratls::hexfmt::hex;

/// Every file [`save`] may write.
const NAMES: [&str; 10] = [
    "evidence.cmw",
    "tpm-quote.bin",
    "tpm-signature.bin",
    "ak-public.bin",
    "pcrs.json",
    "tpm-nonce.hex",
    "ek-cert.der",
    "ima-log.bin",
    "event-log.bin",
    "tee-report.bin",
];

/// Write `cmw` (an evidence bundle) and its parts into `dir`; returns the names written. Files
/// of an earlier save into the same directory are removed first.
///
/// `evidence.cmw` always; when present: `tpm-quote.bin` (TPMS_ATTEST), `tpm-signature.bin`,
/// `ak-public.bin`, `pcrs.json` (`{"sha256": {"0": "hex", ...}}`), `tpm-nonce.hex` (the
/// digest the bundle claims the quote signs: its binding's, or its batch's
/// ([`Bundle::claimed_digests`]); `verify` compared the binding and the batch proof with this
/// session's own values at its `binding.*` steps, so offline the file proves only that the
/// quote signed it), `ek-cert.der`,
/// `ima-log.bin` (binary_runtime_measurements), `event-log.bin` (the firmware's TCG event
/// log), `tee-report.bin`.
pub fn save(dir: &Path, cmw: &[u8]) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), String> {
        write_atomic(&dir.join(name), bytes, PUBLIC_MODE)
            .map_err(|e| format!("--save-evidence: writing {}: {e}", dir.join(name).display()))?;
        written.push(name.to_owned());
        Ok(())
    };
    // A directory reused from another session must not mix its parts with this one's.
    for name in NAMES {
        match std::fs::remove_file(dir.join(name)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "--save-evidence: removing the old {}: {e}",
                    dir.join(name).display()
                ))
            }
        }
    }
    put("evidence.cmw", cmw)?;
    let bundle = Bundle::from_cmw(cmw, MAX_BUNDLE_LEN)
        .map_err(|e| format!("--save-evidence: the evidence does not decode: {e}"))?;
    if let Some(tpm) = &bundle.tpm {
        put("tpm-quote.bin", &tpm.attest)?;
        put("tpm-signature.bin", &tpm.signature)?;
        put("ak-public.bin", &tpm.ak_public)?;
        let pcrs: BTreeMap<String, BTreeMap<String, String>> = tpm
            .pcrs
            .iter()
            .map(|(bank, values)| {
                (
                    bank.name().to_owned(),
                    values
                        .iter()
                        .map(|(index, value)| (index.to_string(), hex(value)))
                        .collect(),
                )
            })
            .collect();
        let json = serde_json::to_vec_pretty(&pcrs)
            .map_err(|e| format!("--save-evidence: encoding pcrs.json: {e}"))?;
        put("pcrs.json", &json)?;
        let nonce = hex(bundle.claimed_digests().1.as_bytes());
        put("tpm-nonce.hex", format!("{nonce}\n").as_bytes())?;
        if let Some(ek) = &tpm.ek_cert {
            put("ek-cert.der", ek)?;
        }
    }
    if let Some(ImaEvidence::Log(log)) = &bundle.ima {
        put("ima-log.bin", log)?;
    }
    if let Some(EventLogEvidence::Log(log)) = &bundle.event_log {
        put("event-log.bin", log)?;
    }
    match &bundle.tee {
        Some(TeeEvidence::SevSnp { report, .. } | TeeEvidence::Sim { report, .. }) => {
            put("tee-report.bin", report)?;
        }
        Some(TeeEvidence::Tdx { quote, .. }) => put("tee-report.bin", quote)?,
        _ => {}
    }
    Ok(written)
}
