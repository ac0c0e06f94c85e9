//! Intel: a TDX quote's collateral from PCS v4 or any PCCS (same API): TCB info by FMSPC, QE
//! identity, the PCK CRL of the quote's CA, the root CA CRL, and the issuer chains that travel in
//! response headers. Assembled into the collateral JSON the TDX verifier reads
//! ([`crate::tdx::Collateral`]), with the signed JSON objects byte for byte as served.

use serde::Deserialize;
use serde_bytes::ByteBuf;
use serde_json::value::RawValue;

use super::http::percent_decode;
use super::{crl_der, crl_next_update, CollateralClient, CollateralError, Entry, Item, Origin};
use crate::hexfmt::hex;
use crate::time::UnixTime;
use crate::verdict::Check;
use crate::verdict::Step;

const STEP: Step = Step::COLLATERAL_TDX;

/// `{"tcbInfo": {...}, "signature": "hex"}` or `{"enclaveIdentity": {...}, "signature": ...}`.
#[derive(Deserialize)]
struct Signed<'a> {
    #[serde(borrow, alias = "tcbInfo", alias = "enclaveIdentity")]
    body: &'a RawValue,
    signature: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NextUpdate {
    next_update: String,
}

/// The signed object's exact text, its signature, and its `nextUpdate`.
fn signed(body: &[u8]) -> Result<(String, Vec<u8>, Option<u64>), String> {
    let signed: Signed<'_> =
        serde_json::from_slice(body).map_err(|e| format!("signed JSON: {e}"))?;
    let text = signed.body.get().to_owned();
    let signature = hex::decode(&signed.signature).map_err(|e| format!("signature hex: {e}"))?;
    let next: NextUpdate = serde_json::from_str(&text).map_err(|e| format!("nextUpdate: {e}"))?;
    let next = UnixTime::parse_rfc3339(&next.next_update)?;
    Ok((text, signature, Some(next.as_secs())))
}

/// The issuer chain header of `entry`, decoded (PEM).
fn chain(entry: &Entry, names: &[&str], url: &str) -> Result<String, CollateralError> {
    let raw = names
        .iter()
        .find_map(|n| entry.header(n))
        .ok_or_else(|| CollateralError::Malformed {
            url: url.to_owned(),
            why: format!("no {} header", names.join(" / ")),
        })?;
    percent_decode(raw).map_err(|why| CollateralError::Malformed {
        url: url.to_owned(),
        why: format!(
            "{}: {why}",
            names
                .first()
                .copied()
                .unwrap_or("issuer chain")
        ),
    })
}

const TCB_CHAIN: [&str; 2] = ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"];
const QE_CHAIN: [&str; 1] = ["SGX-Enclave-Identity-Issuer-Chain"];
const CRL_CHAIN: [&str; 1] = ["SGX-PCK-CRL-Issuer-Chain"];

fn needs_header<'a>(
    names: &'a [&'a str],
) -> impl Fn(&[(String, String)]) -> Result<(), String> + 'a {
    move |headers| {
        headers
            .iter()
            .any(|(n, _)| {
                names
                    .iter()
                    .any(|w| n.eq_ignore_ascii_case(w))
            })
            .then_some(())
            .ok_or_else(|| format!("no {} header", names.join(" / ")))
    }
}

/// The PCS base without a trailing `/` or API suffix.
fn base(pcs: &str) -> &str {
    pcs.trim_end_matches('/')
        .trim_end_matches("/sgx/certification/v4")
        .trim_end_matches("/tdx/certification/v4")
}

pub(crate) fn complete(
    client: &CollateralClient,
    quote: &[u8],
    collateral: &mut Option<ByteBuf>,
    now: UnixTime,
) -> Vec<Check> {
    if collateral.is_some() {
        return Vec::new();
    }
    let Ok(parsed) = crate::tdx::Quote::parse(quote) else {
        // The verifier reports the parse error at its own step.
        return Vec::new();
    };
    let chain_id = crate::digest::sha256(parsed.signature_data.pck_chain_pem);
    let known = client
        .pck_ids
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&chain_id)
        .cloned();
    let (fmspc, ca) = match known {
        Some(ids) => ids,
        None => {
            // Only a PCK chain that verifies to Intel's pinned root makes us fetch anything: a
            // peer cannot send us to PCS for made-up FMSPCs.
            let chain =
                crate::tdx::chain::check_pck_chain(parsed.signature_data.pck_chain_pem, now);
            if let Err(e) = &chain.result {
                return vec![Check::fail(
                    STEP,
                    "a quote whose PCK chain verifies to the Intel SGX root CA",
                    "a PCK chain that does not",
                    format!("no collateral fetched for it: {e}"),
                )];
            }
            match dcap_qvl::quote::Quote::parse(quote).and_then(|q| {
                Ok((
                    dcap_qvl::intel::quote_fmspc(&q)?,
                    dcap_qvl::intel::quote_ca(&q)?,
                ))
            }) {
                Ok((fmspc, ca)) => {
                    let ids = (hex(fmspc).to_uppercase(), ca.as_id_str());
                    super::bounded_insert(&client.pck_ids, chain_id, ids.clone());
                    ids
                }
                Err(e) => {
                    return vec![Check::fail(
                        STEP,
                        "the quote's FMSPC and PCK CA (from its PCK certificate)",
                        "unreadable",
                        format!("cannot tell which collateral to fetch: {e:#}"),
                    )]
                }
            }
        }
    };
    let expected = format!("Intel collateral for FMSPC {fmspc} (PCK {ca} CA)");
    let memo_key = (fmspc.clone(), ca.to_owned());
    let refresh_by = now
        .as_secs()
        .saturating_add(client.cfg.refresh_ahead.as_secs());
    if let Some((json, _)) = client
        .tdx_memo
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&memo_key)
        .filter(|(_, expires)| expires.is_none_or(|e| refresh_by < e))
    {
        *collateral = Some(ByteBuf::from(json.clone()));
        return vec![Check::pass(
            STEP,
            expected,
            "already assembled by this verifier (cache)",
        )];
    }
    match fetch(client, &fmspc, ca, now) {
        Ok((json, origins, expires)) => {
            super::bounded_insert(&client.tdx_memo, memo_key, (json.clone(), expires));
            *collateral = Some(ByteBuf::from(json));
            vec![Check::pass(STEP, expected, origins)]
        }
        Err(e) => vec![
            Check::fail(STEP, expected, "not obtained", e.to_string()).with_detail(format!(
                "{e}; PCS {} (--pcs-url), cache {}",
                client.cfg.pcs_url,
                client.cache_name()
            )),
        ],
    }
}

fn fetch(
    client: &CollateralClient,
    fmspc: &str,
    ca: &str,
    now: UnixTime,
) -> Result<(Vec<u8>, String, Option<u64>), CollateralError> {
    let base = base(&client.cfg.pcs_url);
    let mut origins = Vec::new();
    let mut note = |what: &str, origin: &Origin| {
        origins.push(format!(
            "{what}: {}",
            match origin {
                Origin::Fetched => "downloaded",
                Origin::Cache => "cache",
                Origin::CacheAfterFailedRefresh(_) => "cache (refresh failed)",
            }
        ));
    };

    let tcb_url = format!("{base}/tdx/certification/v4/tcb?fmspc={fmspc}");
    let tcb_header = needs_header(&TCB_CHAIN);
    let (tcb, origin) = client.obtain(
        &Item {
            what: format!("TDX TCB info for FMSPC {fmspc}"),
            key: format!("intel-tdx-tcb-{fmspc}"),
            url: tcb_url.clone(),
            request_headers: &[],
            validate: &|body, headers| {
                tcb_header(headers)?;
                signed(body).map(|(_, _, next)| next)
            },
        },
        now,
    )?;
    note("TCB info", &origin);

    let qe_url = format!("{base}/tdx/certification/v4/qe/identity");
    let qe_header = needs_header(&QE_CHAIN);
    let (qe, origin) = client.obtain(
        &Item {
            what: "TDX QE identity".to_owned(),
            key: "intel-tdx-qe-identity".to_owned(),
            url: qe_url.clone(),
            request_headers: &[],
            validate: &|body, headers| {
                qe_header(headers)?;
                signed(body).map(|(_, _, next)| next)
            },
        },
        now,
    )?;
    note("QE identity", &origin);

    let crl_url = format!("{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
    let crl_header = needs_header(&CRL_CHAIN);
    let (pck_crl, origin) = client.obtain(
        &Item {
            what: format!("the PCK {ca} CA CRL"),
            key: format!("intel-pck-crl-{ca}"),
            url: crl_url.clone(),
            request_headers: &[],
            validate: &|body, headers| {
                crl_header(headers)?;
                crl_next_update(body)
            },
        },
        now,
    )?;
    note("PCK CRL", &origin);

    let root = root_ca_crl(client, base, now)?;
    note("root CA CRL", &root.1);

    let (tcb_info, tcb_sig, _) = signed(&tcb.body).map_err(|why| CollateralError::Malformed {
        url: tcb_url.clone(),
        why,
    })?;
    let (qe_identity, qe_sig, _) = signed(&qe.body).map_err(|why| CollateralError::Malformed {
        url: qe_url.clone(),
        why,
    })?;
    let malformed = |url: &str| {
        let url = url.to_owned();
        move |why: String| CollateralError::Malformed {
            url: url.clone(),
            why,
        }
    };
    let json = serde_json::json!({
        "pck_crl_issuer_chain": chain(&pck_crl, &CRL_CHAIN, &crl_url)?,
        "root_ca_crl": hex(crl_der(&root.0.body).map_err(malformed(&root.0.url))?),
        "pck_crl": hex(crl_der(&pck_crl.body).map_err(malformed(&crl_url))?),
        "tcb_info_issuer_chain": chain(&tcb, &TCB_CHAIN, &tcb_url)?,
        "tcb_info": tcb_info,
        "tcb_info_signature": hex(tcb_sig),
        "qe_identity_issuer_chain": chain(&qe, &QE_CHAIN, &qe_url)?,
        "qe_identity": qe_identity,
        "qe_identity_signature": hex(qe_sig),
    });
    let bytes = serde_json::to_vec(&json).map_err(|e| CollateralError::Malformed {
        url: tcb_url,
        why: e.to_string(),
    })?;
    let expires = [&tcb, &qe, &pck_crl, &root.0]
        .iter()
        .filter_map(|e| e.expires_at)
        .min();
    Ok((bytes, origins.join(", "), expires))
}

/// The root CA CRL: a PCCS serves it (hex text) at `rootcacrl`; Intel's PCS does not, and it
/// comes from the CRL distribution point Intel publishes (`intel_root_crl_url`).
fn root_ca_crl(
    client: &CollateralClient,
    base: &str,
    now: UnixTime,
) -> Result<(Entry, Origin), CollateralError> {
    let item = |url: String| Item {
        what: "the Intel SGX root CA CRL".to_owned(),
        key: "intel-root-ca-crl".to_owned(),
        url,
        request_headers: &[],
        validate: &|body, _| crl_next_update(body),
    };
    let intel = base == super::DEFAULT_PCS_URL;
    if !intel {
        match client.obtain(&item(format!("{base}/sgx/certification/v4/rootcacrl")), now) {
            Ok(found) => return Ok(found),
            Err(CollateralError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    client.obtain(&item(client.cfg.intel_root_crl_url.clone()), now)
}
