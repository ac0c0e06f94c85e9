//! AMD: the VCEK and the CRLs from KDS, the VCEK from Azure THIM.

use serde_bytes::ByteBuf;

use super::{CollateralClient, CollateralError, Item, Origin};
use crate::hexfmt::hex;
use crate::snp::{AttestationReport, Product, SigningKey};
use crate::time::UnixTime;
use crate::verdict::Check;
use crate::verdict::Step;

const STEP_VCEK: Step = Step::COLLATERAL_VCEK;
const STEP_CRL: Step = Step::COLLATERAL_CRL;

/// KDS's VCEK URL for `chip_id` at `tcb` (the report's reported TCB). Turin identifies the chip
/// by the first 8 bytes of its id and adds the FMC SPL.
pub(crate) fn vcek_url(kds: &str, product: Product, report: &AttestationReport) -> String {
    let kds = kds.trim_end_matches('/');
    let turin = product == Product::Turin;
    let tcb = report.reported_tcb.decode(turin);
    let hwid = if turin {
        hex(report
            .chip_id
            .get(..8)
            .unwrap_or(&report.chip_id))
    } else {
        hex(report.chip_id)
    };
    let fmc = match tcb.fmc {
        Some(fmc) if turin => format!("fmcSPL={fmc:02}&"),
        _ => String::new(),
    };
    format!(
        "{kds}/vcek/v1/{}/{hwid}?{fmc}blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
        product.name(),
        tcb.bootloader,
        tcb.tee,
        tcb.snp,
        tcb.microcode
    )
}

/// KDS's CRL URL for `product` (`vcek` or `vlek` certificates).
pub(crate) fn crl_url(kds: &str, product: Product, vlek: bool) -> String {
    format!(
        "{}/{}/v1/{}/crl",
        kds.trim_end_matches('/'),
        if vlek { "vlek" } else { "vcek" },
        product.name()
    )
}

/// A DER (or PEM) certificate's `notAfter`.
fn cert_not_after(body: &[u8]) -> Result<Option<u64>, String> {
    let cert = crate::pki::Cert::from_der_or_pem(body).map_err(|e| e.to_string())?;
    Ok(Some(cert.validity().1.as_secs()))
}

fn origin_text(origin: &Origin, url: &str) -> String {
    match origin {
        Origin::Fetched => format!("downloaded from {url}"),
        Origin::Cache => format!("from the cache ({url})"),
        Origin::CacheAfterFailedRefresh(why) => {
            format!("from the cache: the refresh failed ({why})")
        }
    }
}

/// Fill the VCEK (when the report is VCEK-signed and none came with it) and the CRL.
pub(crate) fn complete(
    client: &CollateralClient,
    report_bytes: &[u8],
    vcek: &mut Option<ByteBuf>,
    has_vlek: bool,
    crl: &mut Option<ByteBuf>,
    now: UnixTime,
) -> Vec<Check> {
    // A report that does not parse fails at the verifier's own step.
    let Ok(report) = AttestationReport::parse(report_bytes) else {
        return Vec::new();
    };
    let key = report.signing_key();
    let products: Vec<Product> = match report
        .cpuid
        .and_then(Product::from_cpuid)
    {
        Some(p) => vec![p],
        // Version 2 reports carry no CPUID: Milan or Genoa (Turin reports are v3+).
        None => vec![Product::Milan, Product::Genoa],
    };
    let mut checks = Vec::new();
    let mut product = products.first().copied();
    if vcek.is_none() && !has_vlek && key == SigningKey::Vcek {
        let tcb = report
            .reported_tcb
            .decode(product == Some(Product::Turin));
        let expected = format!(
            "the VCEK of chip {}… at TCB bl {} tee {} snp {} ucode {}",
            hex(report.chip_id.get(..8).unwrap_or(&[])),
            tcb.bootloader,
            tcb.tee,
            tcb.snp,
            tcb.microcode
        );
        if report.chip_id_masked() {
            checks.push(Check::fail(
                STEP_VCEK,
                expected,
                "the report masks its chip id",
                "KDS finds a VCEK by chip id: a report with MASK_CHIP_ID must come with its VCEK",
            ));
            return checks;
        }
        let mut errors = Vec::new();
        let mut found = None;
        for p in &products {
            let url = vcek_url(&client.cfg.kds_url, *p, &report);
            let item = Item {
                what: format!(
                    "the VCEK ({p}, chip {}…)",
                    hex(report.chip_id.get(..8).unwrap_or(&[]))
                ),
                key: format!(
                    "amd-vcek-{}-{}-{:016x}",
                    p.name(),
                    hex(report.chip_id),
                    report.reported_tcb.0
                ),
                url: url.clone(),
                request_headers: &[],
                validate: &|body, _| cert_not_after(body),
            };
            match client.obtain(&item, now) {
                Ok((entry, origin)) => {
                    found = Some((entry, origin, url, *p));
                    break;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        match found {
            Some((entry, origin, url, p)) => {
                checks.push(Check::pass(STEP_VCEK, expected, origin_text(&origin, &url)));
                *vcek = Some(ByteBuf::from(entry.body));
                product = Some(p);
            }
            None => {
                checks.push(
                    Check::fail(STEP_VCEK, expected, "not obtained", errors.join("; "))
                        .with_detail(format!(
                            "{}; KDS {} (--kds-url), cache {}",
                            errors.join("; "),
                            client.cfg.kds_url,
                            client.cache_name()
                        )),
                );
                return checks;
            }
        }
    }
    if crl.is_none() {
        if let Some(p) = product {
            let vlek = has_vlek || key == SigningKey::Vlek;
            let url = crl_url(&client.cfg.kds_url, p, vlek);
            let item = Item {
                what: format!("AMD's {} CRL for {p}", if vlek { "VLEK" } else { "VCEK" }),
                key: format!(
                    "amd-crl-{}-{}",
                    if vlek { "vlek" } else { "vcek" },
                    p.name()
                ),
                url: url.clone(),
                request_headers: &[],
                validate: &|body, _| super::crl_next_update(body),
            };
            // A CRL that cannot be obtained is not a failure here: the verifier's policy
            // (`snp.require_crl`) decides, and its claims say revocation was not checked.
            match client.obtain(&item, now) {
                Ok((entry, origin)) => {
                    checks.push(Check::pass(
                        STEP_CRL,
                        format!("AMD's CRL for {p}"),
                        origin_text(&origin, &url),
                    ));
                    *crl = super::crl_der(&entry.body)
                        .ok()
                        .map(ByteBuf::from);
                }
                Err(e) => {
                    if let Some(last) = checks.last_mut() {
                        last.detail = format!("{} (no CRL: {e})", last.detail)
                            .trim_start()
                            .to_owned();
                    }
                }
            }
        }
    }
    checks
}

/// What Azure THIM returns for this VM's host.
#[derive(Debug, Clone)]
pub struct ThimCerts {
    /// The VCEK, PEM.
    pub vcek: Vec<u8>,
    /// ASK then ARK, PEM.
    pub chain: Vec<u8>,
    /// The TCB the VCEK certifies (`tcbm`, hex), as THIM says.
    pub tcbm: String,
}

pub(crate) fn thim(client: &CollateralClient, now: UnixTime) -> Result<ThimCerts, CollateralError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Thim {
        vcek_cert: String,
        certificate_chain: String,
        #[serde(default)]
        tcbm: String,
    }
    let url = client.cfg.thim_url.clone();
    let parse = |body: &[u8]| -> Result<Thim, String> {
        serde_json::from_slice(body).map_err(|e| format!("THIM JSON: {e}"))
    };
    let item = Item {
        what: "the VCEK from Azure THIM".to_owned(),
        key: "azure-thim-vcek".to_owned(),
        url: url.clone(),
        request_headers: &[("Metadata", "true")],
        validate: &|body, _| {
            let thim = parse(body)?;
            cert_not_after(thim.vcek_cert.as_bytes())
        },
    };
    let (entry, _) = client.obtain(&item, now)?;
    let thim = parse(&entry.body).map_err(|why| CollateralError::Malformed { url, why })?;
    Ok(ThimCerts {
        vcek: thim.vcek_cert.into_bytes(),
        chain: thim.certificate_chain.into_bytes(),
        tcbm: thim.tcbm,
    })
}
