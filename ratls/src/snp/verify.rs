//! SEV-SNP report verification: chain, signature, TCB binding, policy.

use ring::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_FIXED};

use super::anchors::{self, Product};
use super::report::{AttestationReport, SigningKey, TcbVersion};
use super::{floors, CertInput, MinTcb, PlatformFlag, SnpClaims, SnpPolicy, TcbFloor};
use crate::codec::Reader;
use crate::hexfmt::{self, hex};
use crate::pki::{Cert, Crl};
use crate::time::UnixTime;
use crate::verdict::Step;
use crate::verdict::{Check, Claims, Platform, Verdict};

/// VCEK/VLEK extension OIDs (AMD "VCEK certificate and KDS interface" specification).
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";

/// Parse and verify a report (raw or hex) with its certificates.
pub fn verify_bytes(
    report: &[u8],
    certs: &CertInput,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Verdict {
    match AttestationReport::parse(report) {
        Ok(report) => verify(&report, certs, policy, now),
        Err(e) => {
            let mut v = Verdict::new(Platform::SevSnp);
            v.push(Check::parse_failure(Step::TEE_PARSE, &e));
            v
        }
    }
}

/// Verify a parsed report with its certificates against `policy` at time `now`.
pub fn verify(
    report: &AttestationReport,
    certs: &CertInput,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Verdict {
    verify_anchored(report, certs, policy, now, Anchor::Amd)
}

/// Verify a report from the simulated TEE: the same checks, but the chain must end at
/// `insecure_sim_root` (the simulated ARK, DER or PEM) instead of a pinned AMD root. Without it
/// the verdict is rejected at `tee.chain.ark`. The verdict is always marked simulated.
pub fn verify_simulated(
    report: &[u8],
    certs: &CertInput,
    policy: &SnpPolicy,
    now: UnixTime,
    insecure_sim_root: Option<&[u8]>,
) -> Verdict {
    let mut v = match AttestationReport::parse(report) {
        Ok(report) => verify_anchored(
            &report,
            certs,
            policy,
            now,
            Anchor::Simulated(insecure_sim_root),
        ),
        Err(e) => {
            let mut v = Verdict::new(Platform::SevSnp);
            v.push(Check::parse_failure(Step::TEE_PARSE, &e));
            v
        }
    };
    v.simulated = true;
    v
}

/// Where the chain must end.
#[derive(Debug, Clone, Copy)]
enum Anchor<'a> {
    /// A pinned AMD ARK (Milan, Genoa, Turin).
    Amd,
    /// The simulated ARK the verifier was explicitly given, if any.
    Simulated(Option<&'a [u8]>),
}

fn verify_anchored(
    report: &AttestationReport,
    certs: &CertInput,
    policy: &SnpPolicy,
    now: UnixTime,
    anchor: Anchor<'_>,
) -> Verdict {
    let mut v = Verdict::new(Platform::SevSnp);
    v.push(Check::pass(
        Step::TEE_PARSE,
        "SEV-SNP report v2-v5",
        format!("version {}", report.version),
    ));
    let chain = check_chain(&mut v, certs, now, anchor);
    let product = chain.as_ref().map(|c| c.product);
    let turin = product == Some(Product::Turin)
        || report
            .cpuid
            .and_then(Product::from_cpuid)
            == Some(Product::Turin);
    let reported = report.reported_tcb.decode(turin);

    let mut applied_min = None;
    let mut revocation = match (&certs.crl, &chain) {
        (None, _) => "not checked: no CRL".to_owned(),
        (Some(_), None) => "not checked: no valid certificate chain".to_owned(),
        (Some(_), Some(_)) => String::new(),
    };
    match &chain {
        Some(chain) => {
            if let Some(checked) = check_crl(&mut v, certs.crl.as_deref(), chain, policy, now) {
                revocation = checked;
            }
            check_signing_key(&mut v, report, chain.vlek);
            check_signature(&mut v, report, &chain.leaf);
            applied_min = check_tcb(&mut v, &chain.leaf, &reported, turin, chain.product, policy);
            check_chip_id(&mut v, report, &chain.leaf, chain.vlek);
            check_product(&mut v, report, chain.product);
        }
        None => v.push(Check::fail(
            Step::TEE_SIGNATURE,
            "a report signed by a key certified by AMD",
            "no usable certificate chain",
            "the report signature cannot be checked without a valid VCEK/VLEK chain",
        )),
    }
    check_policy(&mut v, report, &reported, product, policy);
    check_platform(&mut v, report, turin, applied_min.as_ref(), policy);
    let mut claims = SnpClaims::from_report(report, product);
    claims.revocation = revocation;
    v.claims = Claims::Snp(Box::new(claims));
    v
}

/// `tee.crl`: AMD's CRL for the product, signed by the chain's ARK and issued under its name,
/// current at `now`, lists neither the intermediate (ASK/ASVK) nor the endorsement key
/// (VCEK/VLEK). Without a CRL the step is recorded only when the policy requires one. Returns
/// the revocation claim when a CRL was given ("checked: …" or why it was refused).
fn check_crl(
    v: &mut Verdict,
    crl: Option<&[u8]>,
    chain: &Chain,
    policy: &SnpPolicy,
    now: UnixTime,
) -> Option<String> {
    const STEP: Step = Step::TEE_CRL;
    let product = chain.product;
    let (mid_name, leaf_name) = if chain.vlek {
        ("ASVK", "VLEK")
    } else {
        ("ASK", "VCEK")
    };
    let kind = if chain.vlek { "vlek" } else { "vcek" };
    let Some(bytes) = crl else {
        if policy.require_crl {
            v.push(Check::fail(
                STEP,
                format!("AMD's CRL for {product} (KDS /{kind}/v1/{product}/crl), signed by ARK-{product}"),
                "no CRL given",
                "the policy sets require_crl: give AMD KDS's CRL for the product so that \
                 revocation of the ASK/ASVK and VCEK/VLEK can be checked",
            ));
        }
        return None;
    };
    let refused = |v: &mut Verdict, expected: String, presented: String, detail: String| {
        v.push(Check::fail(STEP, expected, presented, detail));
        Some("not checked: the CRL was refused".to_owned())
    };
    let crl = match Crl::from_der_or_pem(bytes) {
        Ok(crl) => crl,
        Err(e) => {
            return refused(
                v,
                format!("a DER X.509 CRL for {product} signed by ARK-{product}"),
                format!("{} bytes that do not parse as a CRL", bytes.len()),
                e.to_string(),
            )
        }
    };
    let ark = &chain.ark;
    if !crl.issued_by_name(ark) {
        return refused(
            v,
            format!("a CRL issued by the ARK [{}]", ark.subject_name()),
            format!("a CRL issued by [{}]", crl.issuer_name()),
            "the CRL belongs to another authority (another product's ARK?)".into(),
        );
    }
    if let Err(e) = crl.verify_signed_by(ark) {
        return refused(
            v,
            format!(
                "a CRL signed by the key of {} (RSASSA-PSS/SHA-384)",
                ark.subject_cn()
            ),
            format!(
                "a CRL of {} whose signature does not verify",
                crl.this_update()
            ),
            e.to_string(),
        );
    }
    let window = match crl.next_update() {
        Some(next) => format!("thisUpdate {} .. nextUpdate {next}", crl.this_update()),
        None => format!("thisUpdate {}, no nextUpdate", crl.this_update()),
    };
    if !crl.is_current(now) {
        return refused(
            v,
            format!("a CRL current at {now} (thisUpdate <= now < nextUpdate)"),
            window,
            "fetch a fresh CRL from AMD KDS (or verify old evidence with --at)".into(),
        );
    }
    let mut listed = Vec::new();
    for (name, cert) in [(mid_name, &chain.mid), (leaf_name, &chain.leaf)] {
        if crl.lists(cert.serial()) {
            listed.push(format!(
                "{name} {} serial {}",
                cert.subject_cn(),
                cert.serial_hex()
            ));
        }
    }
    let expected = format!(
        "{mid_name} serial {} and {leaf_name} serial {} not listed by the CRL of ARK-{product}",
        chain.mid.serial_hex(),
        chain.leaf.serial_hex()
    );
    if !listed.is_empty() {
        v.push(Check::fail(
            STEP,
            expected,
            format!("REVOKED: {}", listed.join(", ")),
            format!("CRL {window}, {} entries", crl.revoked_count()),
        ));
        return Some(format!("REVOKED: {}", listed.join(", ")));
    }
    v.push(
        Check::pass(
            STEP,
            expected,
            format!("not listed ({} entries)", crl.revoked_count()),
        )
        .with_detail(format!("CRL {window}")),
    );
    Some(format!("checked: CRL of {}", crl.this_update()))
}

struct Chain {
    product: Product,
    vlek: bool,
    ark: Cert,
    mid: Cert,
    leaf: Cert,
}

fn check_chain(
    v: &mut Verdict,
    certs: &CertInput,
    now: UnixTime,
    anchor: Anchor<'_>,
) -> Option<Chain> {
    let (vlek, leaf_bytes) = match (&certs.vcek, &certs.vlek) {
        (Some(vcek), None) => (false, vcek),
        (None, Some(vlek)) => (true, vlek),
        (Some(_), Some(_)) => {
            v.push(Check::fail(
                Step::TEE_CHAIN_VCEK,
                "one endorsement key certificate (VCEK or VLEK)",
                "both a VCEK and a VLEK",
                "give the certificate of the key named by the report's SIGNING_KEY",
            ));
            return None;
        }
        (None, None) => {
            v.push(Check::fail(
                Step::TEE_CHAIN_VCEK,
                "a VCEK or VLEK certificate",
                "none given",
                "pass --vcek (from AMD KDS or the extended report) or --vlek",
            ));
            return None;
        }
    };
    let (leaf_step, mid_step, leaf_name, mid_name) = if vlek {
        (Step::TEE_CHAIN_VLEK, Step::TEE_CHAIN_ASVK, "VLEK", "ASVK")
    } else {
        (Step::TEE_CHAIN_VCEK, Step::TEE_CHAIN_ASK, "VCEK", "ASK")
    };
    let leaf = match Cert::from_der_or_pem(leaf_bytes) {
        Ok(leaf) => leaf,
        Err(e) => {
            v.push(Check::fail(
                leaf_step,
                format!("a {leaf_name} certificate"),
                "unparseable certificate",
                e.to_string(),
            ));
            return None;
        }
    };

    // The intermediate and the ARK: given, or built in for the product the leaf's issuer names.
    let given: Vec<Cert>;
    let (mid, ark, source): (&Cert, &Cert, &str) = match &certs.chain {
        Some(bytes) => match Cert::many_from_der_or_pem(bytes) {
            Ok(list) if list.len() == 2 => {
                given = list;
                match (given.first(), given.get(1)) {
                    (Some(mid), Some(ark)) => (mid, ark, "given"),
                    _ => return None,
                }
            }
            Ok(list) => {
                v.push(Check::fail(
                    Step::TEE_CHAIN_ARK,
                    format!("a chain of two certificates: {mid_name} then ARK"),
                    format!("{} certificates", list.len()),
                    "",
                ));
                return None;
            }
            Err(e) => {
                v.push(Check::fail(
                    Step::TEE_CHAIN_ARK,
                    format!("a PEM chain: {mid_name} then ARK"),
                    "unparseable chain",
                    e.to_string(),
                ));
                return None;
            }
        },
        None => {
            let issuer = leaf.issuer_cn();
            let Some(product) = Product::from_common_name(&issuer) else {
                v.push(Check::fail(
                    Step::TEE_CHAIN_ARK,
                    "a leaf issued by SEV-Milan, SEV-Genoa or SEV-Turin (or their VLEK CAs)",
                    issuer,
                    "no chain given and no built-in chain for this issuer",
                ));
                return None;
            };
            match anchors::built_in(product, vlek) {
                Some(b) => (&b.intermediate, &b.ark, "built in"),
                None => {
                    v.push(Check::fail(
                        Step::TEE_CHAIN_ARK,
                        "the built-in AMD chain",
                        "does not verify",
                        "the built-in anchors are corrupt",
                    ));
                    return None;
                }
            }
        }
    };

    // ARK: pinned by fingerprint and self-signed.
    let fingerprint = ark.fingerprint();
    let pinned = Product::ALL
        .iter()
        .map(|p| format!("{p} {}", p.ark_fingerprint()))
        .collect::<Vec<_>>()
        .join(" | ");
    let product = match anchor {
        Anchor::Amd => Product::from_ark_fingerprint(&fingerprint),
        Anchor::Simulated(root) => {
            let root = root.map(Cert::from_der_or_pem);
            match root {
                Some(Ok(root)) if root.fingerprint() == fingerprint => {
                    Product::from_common_name(&ark.subject_cn())
                }
                Some(Ok(root)) => {
                    v.push(Check::fail(
                        Step::TEE_CHAIN_ARK,
                        format!("the simulated ARK {}", root.fingerprint()),
                        format!("{} {fingerprint}", ark.subject_cn()),
                        "SIMULATED evidence from another simulated TEE",
                    ));
                    return None;
                }
                Some(Err(e)) => {
                    v.push(Check::fail(
                        Step::TEE_CHAIN_ARK,
                        "a readable simulated ARK certificate",
                        "unparseable",
                        e.to_string(),
                    ));
                    return None;
                }
                None => {
                    v.push(Check::fail(
                        Step::TEE_CHAIN_ARK,
                        "a pinned AMD ARK (simulated evidence needs --insecure-sim-root)",
                        format!("{} {fingerprint} (SIMULATED)", ark.subject_cn()),
                        "evidence from the simulated TEE is never trusted unless the verifier \
                         is explicitly given the simulated root",
                    ));
                    return None;
                }
            }
        }
    };
    let Some(product) = product else {
        v.push(Check::fail(
            Step::TEE_CHAIN_ARK,
            format!("a pinned AMD ARK: {pinned}"),
            format!("{} {fingerprint}", ark.subject_cn()),
            format!("ARK {source}; not an AMD root we trust"),
        ));
        return None;
    };
    // The built-in ARK and intermediate were verified once per process; a given chain that is
    // byte-identical to them needs no second RSA-4096 verification, only the (cheap) name and
    // CA checks of `check_chains_to`. AMD's ARK, ASK and ASVK all carry a critical
    // basicConstraints cA=TRUE and a critical keyUsage with keyCertSign (the ASK/ASVK with
    // pathLenConstraint 0), so the full CA checks apply to them; the VCEK/VLEK has neither
    // extension and is only ever a leaf.
    let known = anchors::built_in(product, vlek);
    let ark_known = known.is_some_and(|b| b.ark.der() == ark.der());
    let mid_known = ark_known && known.is_some_and(|b| b.intermediate.der() == mid.der());
    let issued = |child: &Cert, parent: &Cert, known: bool| {
        if known {
            child.check_chains_to(parent)
        } else {
            child.check_issued_by(parent)
        }
    };
    // The ARK is self-signed: its issuer is its own subject.
    if let Err(e) = issued(ark, ark, ark_known) {
        v.push(Check::fail(
            Step::TEE_CHAIN_ARK,
            "a self-signed ARK",
            format!("ARK-{product} {fingerprint}"),
            e.to_string(),
        ));
        return None;
    }
    v.push(
        Check::pass(
            Step::TEE_CHAIN_ARK,
            format!("a pinned AMD ARK: {pinned}"),
            format!("ARK-{product} {fingerprint}"),
        )
        .with_detail(format!("chain {source}")),
    );

    // Intermediate: names the same product, signed by the ARK.
    let mid_cn = mid.subject_cn();
    let mid_expected = if vlek {
        format!("SEV-VLEK-{product} signed by ARK-{product}")
    } else {
        format!("SEV-{product} signed by ARK-{product}")
    };
    let mid_product = Product::from_common_name(&mid_cn);
    let mid_kind_ok = mid_cn.starts_with("SEV-VLEK-") == vlek;
    match issued(mid, ark, mid_known) {
        Ok(()) if mid_product == Some(product) && mid_kind_ok => {
            v.push(Check::pass(mid_step, mid_expected, mid_cn.clone()));
        }
        Ok(()) => {
            v.push(Check::fail(
                mid_step,
                mid_expected,
                mid_cn,
                format!("the {mid_name} belongs to another product or key kind"),
            ));
            return None;
        }
        Err(e) => {
            v.push(Check::fail(mid_step, mid_expected, mid_cn, e.to_string()));
            return None;
        }
    }

    // Leaf: issued (named and signed) by the intermediate.
    let leaf_expected = format!("{leaf_name} signed by {mid_cn}");
    let leaf_presented = format!("{} issued by {}", leaf.subject_cn(), leaf.issuer_cn());
    if let Err(e) = leaf.check_issued_by(mid) {
        v.push(Check::fail(
            leaf_step,
            leaf_expected,
            leaf_presented,
            e.to_string(),
        ));
        return None;
    }
    v.push(Check::pass(leaf_step, leaf_expected, leaf_presented));

    // Validity windows.
    let problems: Vec<String> = [ark, mid, &leaf]
        .iter()
        .filter_map(|c| {
            c.check_validity(now)
                .err()
                .map(|e| e.to_string())
        })
        .collect();
    if problems.is_empty() {
        v.push(Check::pass(
            Step::TEE_CHAIN_VALIDITY,
            "every certificate valid now",
            format!("all valid at {now}"),
        ));
    } else {
        v.push(Check::fail(
            Step::TEE_CHAIN_VALIDITY,
            "every certificate valid now",
            problems.join("; "),
            "use --at to verify old evidence as of a past time",
        ));
        return None;
    }

    Some(Chain {
        product,
        vlek,
        ark: ark.clone(),
        mid: mid.clone(),
        leaf,
    })
}

fn check_signing_key(v: &mut Verdict, report: &AttestationReport, vlek: bool) {
    let expected = if vlek {
        SigningKey::Vlek
    } else {
        SigningKey::Vcek
    };
    v.push(Check::expect(
        Step::TEE_SIGNING_KEY,
        report.signing_key() == expected,
        expected.name(),
        report.signing_key().name(),
    ));
}

fn check_signature(v: &mut Verdict, report: &AttestationReport, leaf: &Cert) {
    const ECDSA_P384_SHA384: u32 = 1;
    if report.signature_algo != ECDSA_P384_SHA384 {
        v.push(Check::fail(
            Step::TEE_SIGNATURE,
            "signature algorithm 1 (ECDSA P-384 with SHA-384)",
            format!("signature algorithm {}", report.signature_algo),
            "",
        ));
        return;
    }
    let key = match leaf.subject_public_key() {
        Ok(key) => key,
        Err(e) => {
            v.push(Check::fail(
                Step::TEE_SIGNATURE,
                "an ECDSA P-384 key",
                "unsupported key",
                e.to_string(),
            ));
            return;
        }
    };
    let ok = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
        .verify(report.signed_bytes(), &report.signature_fixed())
        .is_ok();
    let sig = hex(report.signature_fixed());
    let check = Check::expect(
        Step::TEE_SIGNATURE,
        ok,
        format!("ECDSA P-384/SHA-384 signature by {}", leaf.subject_cn()),
        if ok {
            format!("valid signature r||s {}", short(&sig))
        } else {
            format!("invalid signature r||s {}", short(&sig))
        },
    );
    v.push(if ok {
        check
    } else {
        check.with_detail("the report was modified or signed by another key")
    });
}

/// The minimum `reported_tcb` must reach: the policy's `min_tcb`, else AMD's floor for the
/// product (unless `tcb_floor` is `none`). `Ok(None)`: no minimum applies; `Err`: the built-in
/// floors cannot be read (fail closed).
struct Minimum {
    tcb: Option<TcbVersion>,
    /// e.g. `policy min_tcb`, `AMD floor for Milan from AMD-SB-3019 (2025-02-03)`.
    source: String,
}

fn minimum(policy: &SnpPolicy, product: Product) -> Result<Minimum, String> {
    let to_tcb = |min: &MinTcb| TcbVersion {
        fmc: min.fmc,
        bootloader: min.bootloader,
        tee: min.tee,
        snp: min.snp,
        microcode: min.microcode,
    };
    if let Some(min) = &policy.min_tcb {
        return Ok(Minimum {
            tcb: Some(to_tcb(min)),
            source: "policy min_tcb".into(),
        });
    }
    if policy.tcb_floor == TcbFloor::None {
        return Ok(Minimum {
            tcb: None,
            source: "no minimum (policy tcb_floor \"none\")".into(),
        });
    }
    Ok(match floors::floor(product)? {
        Some(floor) => Minimum {
            tcb: floor.min_tcb.as_ref().map(to_tcb),
            source: if floor.min_tcb.is_some() {
                floor.describe()
            } else {
                format!("no AMD floor known for {product}")
            },
        },
        None => Minimum {
            tcb: None,
            source: format!("no AMD floor known for {product}"),
        },
    })
}

/// `tee.tcb`: the certificate's TCB extensions equal `reported_tcb`, and `reported_tcb` is at
/// least the minimum that applies (AMD's floor for the product by default; the policy's
/// `min_tcb`, also checked as `tee.policy.min_tcb`, replaces it).
fn check_tcb(
    v: &mut Verdict,
    leaf: &Cert,
    reported: &TcbVersion,
    turin: bool,
    product: Product,
    policy: &SnpPolicy,
) -> Option<TcbVersion> {
    let read = |oid| -> Result<u8, String> {
        let value = leaf
            .extension_value(oid)
            .ok_or_else(|| format!("extension {oid} missing"))?;
        der_small_uint(value).ok_or_else(|| format!("extension {oid} is not a small DER INTEGER"))
    };
    let cert_tcb = (|| -> Result<TcbVersion, String> {
        Ok(TcbVersion {
            fmc: if turin {
                Some(read(OID_FMC_SPL)?)
            } else {
                None
            },
            bootloader: read(OID_BL_SPL)?,
            tee: read(OID_TEE_SPL)?,
            snp: read(OID_SNP_SPL)?,
            microcode: read(OID_UCODE_SPL)?,
        })
    })();
    let cert_tcb = match cert_tcb {
        Ok(cert_tcb) => cert_tcb,
        Err(e) => {
            v.push(Check::fail(
                Step::TEE_TCB,
                "certificate TCB extensions",
                "unreadable",
                e,
            ));
            return None;
        }
    };
    let minimum = match minimum(policy, product) {
        Ok(minimum) => minimum,
        Err(e) => {
            v.push(Check::fail(
                Step::TEE_TCB,
                format!("certificate TCB {cert_tcb}, at least AMD's floor for {product}"),
                format!("reported_tcb {reported}"),
                e,
            ));
            return None;
        }
    };
    let bound = cert_tcb == *reported;
    // The policy's min_tcb has its own step (tee.policy.min_tcb): not failed twice here.
    let from_policy = policy.min_tcb.is_some();
    let floor_ok = from_policy
        || minimum
            .tcb
            .as_ref()
            .is_none_or(|min| reported.at_least(min));
    let expected = match (&minimum.tcb, from_policy) {
        (Some(min), true) => format!(
            "certificate TCB {cert_tcb}; minimum {min} from policy min_tcb (tee.policy.min_tcb)"
        ),
        (Some(min), false) => format!(
            "certificate TCB {cert_tcb}; at least {min} ({})",
            minimum.source
        ),
        (None, _) => format!("certificate TCB {cert_tcb}; {}", minimum.source),
    };
    let mut problems = Vec::new();
    if !bound {
        problems.push(format!(
            "the VCEK/VLEK certifies {cert_tcb} but the report claims {reported}"
        ));
    }
    if !floor_ok {
        problems.push(format!(
            "reported_tcb {reported} is below the {} (a platform without AMD's fixes); set \
             snp.min_tcb to accept an explicit older minimum, or tcb_floor \"none\"",
            minimum.source
        ));
    }
    let check = Check::expect(
        Step::TEE_TCB,
        bound && floor_ok,
        expected,
        format!("reported_tcb {reported}"),
    );
    v.push(if problems.is_empty() {
        check
    } else {
        check.with_detail(problems.join("; "))
    });
    minimum.tcb
}

fn check_chip_id(v: &mut Verdict, report: &AttestationReport, leaf: &Cert, vlek: bool) {
    if vlek {
        v.push(
            Check::pass(Step::TEE_CHIP_ID, "not bound (VLEK)", hex(report.chip_id))
                .with_detail("a VLEK is not tied to one chip"),
        );
        return;
    }
    if report.chip_id_masked() {
        v.push(
            Check::pass(Step::TEE_CHIP_ID, "VCEK hwID", "masked (all zero)")
                .with_detail("the host masked the chip id; the chain and signature still bind"),
        );
        return;
    }
    let Some(value) = leaf.extension_value(OID_HWID) else {
        v.push(Check::fail(
            Step::TEE_CHIP_ID,
            "a VCEK with a hwID extension",
            "no hwID extension",
            "",
        ));
        return;
    };
    // AMD stores the raw hwID (64 bytes; 8 on Turin). Only a value of another length is read as
    // a DER OCTET STRING wrapper, so a raw id that happens to start with 04 40 stays raw.
    let hwid = if matches!(value.len(), 64 | 8) {
        value.to_vec()
    } else {
        der_octet_string(value).unwrap_or_else(|| value.to_vec())
    };
    // Turin hwIDs are 8 bytes: the rest of chip_id must be zero.
    let (head, tail) = report
        .chip_id
        .split_at(hwid.len().min(64));
    let ok = !hwid.is_empty() && head == hwid.as_slice() && tail.iter().all(|&b| b == 0);
    v.push(Check::expect(
        Step::TEE_CHIP_ID,
        ok,
        format!("VCEK hwID {}", hex(&hwid)),
        format!("chip_id {}", hex(report.chip_id)),
    ));
}

fn check_product(v: &mut Verdict, report: &AttestationReport, product: Product) {
    match report.cpuid {
        Some(cpuid) => {
            let from_cpuid = Product::from_cpuid(cpuid);
            v.push(Check::expect(
                Step::TEE_PRODUCT,
                from_cpuid == Some(product),
                format!("a {product} CPU (chain)"),
                format!(
                    "CPUID family {:#x} model {:#x} stepping {:#x} ({})",
                    cpuid.family,
                    cpuid.model,
                    cpuid.stepping,
                    from_cpuid.map_or("unknown product", Product::name)
                ),
            ));
        }
        None => v.push(
            Check::pass(
                Step::TEE_PRODUCT,
                format!("{product} (chain)"),
                "no CPUID in a v2 report",
            )
            .with_detail("product taken from the certificate chain"),
        ),
    }
}

fn check_policy(
    v: &mut Verdict,
    report: &AttestationReport,
    reported: &TcbVersion,
    product: Option<Product>,
    policy: &SnpPolicy,
) {
    let gp = report.policy;
    v.push(Check::expect(
        Step::TEE_POLICY_DEBUG,
        policy.allow_debug || !gp.debug_allowed(),
        if policy.allow_debug {
            "debug allowed or not"
        } else {
            "guest policy forbids debug (bit 19 clear)"
        },
        format!(
            "policy {:#x}: debug {}",
            gp.0,
            if gp.debug_allowed() {
                "ALLOWED"
            } else {
                "forbidden"
            }
        ),
    ));
    v.push(Check::expect(
        Step::TEE_POLICY_MIGRATE_MA,
        policy.allow_migration_agent || !gp.migrate_ma_allowed(),
        if policy.allow_migration_agent {
            "migration agent allowed or not"
        } else {
            "no migration agent (bit 18 clear)"
        },
        format!(
            "policy {:#x}: migration agent {}",
            gp.0,
            if gp.migrate_ma_allowed() {
                "allowed"
            } else {
                "forbidden"
            }
        ),
    ));
    v.push(Check::expect(
        Step::TEE_POLICY_VMPL,
        report.vmpl == policy.vmpl,
        format!("VMPL {}", policy.vmpl),
        format!("VMPL {}", report.vmpl),
    ));
    if !policy.products.is_empty() {
        let names: Vec<&str> = policy
            .products
            .iter()
            .map(|p| p.name())
            .collect();
        v.push(Check::expect(
            Step::TEE_POLICY_PRODUCT,
            product.is_some_and(|p| policy.products.contains(&p)),
            names.join(" or "),
            product.map_or("unknown", Product::name),
        ));
    }
    if let Some(min) = &policy.min_tcb {
        let min = TcbVersion {
            fmc: min.fmc,
            bootloader: min.bootloader,
            tee: min.tee,
            snp: min.snp,
            microcode: min.microcode,
        };
        v.push(Check::expect(
            Step::TEE_POLICY_MIN_TCB,
            reported.at_least(&min),
            format!("at least {min}"),
            reported.to_string(),
        ));
    }
    let unauthenticated = policy.unauthenticated_id_block_pins();
    if !unauthenticated.is_empty() {
        v.push(Check::fail(
            Step::TEE_POLICY_ID_BLOCK,
            format!(
                "{} pinned together with id_key_digest or author_key_digest",
                unauthenticated.join(", ")
            ),
            format!(
                "a policy pinning {} and neither id_key_digest nor author_key_digest",
                unauthenticated.join(", ")
            ),
            "the host chooses the ID block at launch, so its family_id, image_id and guest SVN \
             prove nothing unless the key that signed it is pinned: the policy is refused",
        ));
    }
    if let Some(min) = policy.min_guest_svn {
        v.push(Check::expect(
            Step::TEE_POLICY_MIN_GUEST_SVN,
            report.guest_svn >= min,
            format!("at least {min}"),
            report.guest_svn.to_string(),
        ));
    }
    let pins: [(Step, &Option<String>, &[u8]); 7] = [
        (
            Step::TEE_POLICY_MEASUREMENT,
            &policy.measurement,
            &report.measurement,
        ),
        (
            Step::TEE_POLICY_HOST_DATA,
            &policy.host_data,
            &report.host_data,
        ),
        (
            Step::TEE_POLICY_ID_KEY_DIGEST,
            &policy.id_key_digest,
            &report.id_key_digest,
        ),
        (
            Step::TEE_POLICY_AUTHOR_KEY_DIGEST,
            &policy.author_key_digest,
            &report.author_key_digest,
        ),
        (
            Step::TEE_POLICY_REPORT_DATA,
            &policy.report_data,
            &report.report_data,
        ),
        (
            Step::TEE_POLICY_FAMILY_ID,
            &policy.family_id,
            &report.family_id,
        ),
        (
            Step::TEE_POLICY_IMAGE_ID,
            &policy.image_id,
            &report.image_id,
        ),
    ];
    for (step, expected, presented) in pins {
        if let Some(expected) = expected {
            v.push(pin_check(step, expected, presented));
        }
    }
}

/// The optional platform requirements: launch TCB, SMT, single socket, ciphertext hiding,
/// PLATFORM_INFO flags.
fn check_platform(
    v: &mut Verdict,
    report: &AttestationReport,
    turin: bool,
    minimum: Option<&TcbVersion>,
    policy: &SnpPolicy,
) {
    let gp = report.policy;
    let info = report.platform_info;
    let flags = PlatformFlag::describe(info);
    if policy.check_launch_tcb {
        let launch = report.launch_tcb.decode(turin);
        match minimum {
            Some(min) => v.push(Check::expect(
                Step::TEE_POLICY_LAUNCH_TCB,
                launch.at_least(min),
                format!("launch_tcb at least {min} (the minimum applied to reported_tcb)"),
                format!("launch_tcb {launch}"),
            )),
            None => v.push(Check::fail(
                Step::TEE_POLICY_LAUNCH_TCB,
                "a minimum TCB to compare launch_tcb with (policy min_tcb or AMD's floor)",
                format!("launch_tcb {launch}; no minimum applies"),
                "check_launch_tcb needs min_tcb, or an AMD floor for the product, and a \
                 verified chain",
            )),
        }
    }
    if policy.require_smt_off {
        let platform_off = !PlatformFlag::SMT_EN.is_set(info);
        let guest_forbids = !gp.smt_allowed();
        v.push(Check::expect(
            Step::TEE_POLICY_SMT,
            platform_off || guest_forbids,
            "SMT off: PLATFORM_INFO SMT_EN clear, or guest policy bit 16 clear",
            format!(
                "PLATFORM_INFO {info:#x} ({flags}): SMT {}; guest policy {:#x}: SMT {}",
                if platform_off { "off" } else { "ON" },
                gp.0,
                if guest_forbids {
                    "forbidden"
                } else {
                    "allowed"
                }
            ),
        ));
    }
    if policy.require_single_socket {
        v.push(Check::expect(
            Step::TEE_POLICY_SINGLE_SOCKET,
            gp.single_socket_required(),
            "guest policy SINGLE_SOCKET (bit 20) set",
            format!(
                "guest policy {:#x}: SINGLE_SOCKET {}",
                gp.0,
                if gp.single_socket_required() {
                    "set"
                } else {
                    "clear"
                }
            ),
        ));
    }
    if policy.require_ciphertext_hiding {
        let platform = PlatformFlag::CIPHERTEXT_HIDING_EN.is_set(info);
        let guest = gp.ciphertext_hiding_required();
        v.push(Check::expect(
            Step::TEE_POLICY_CIPHERTEXT_HIDING,
            platform || guest,
            "PLATFORM_INFO CIPHERTEXT_HIDING_EN (bit 4) set, or guest policy bit 24 set",
            format!(
                "PLATFORM_INFO {info:#x} ({flags}); guest policy {:#x}: ciphertext hiding {}",
                gp.0,
                if guest { "required" } else { "not required" }
            ),
        ));
    }
    if !policy.platform_info_required.is_empty()
        || !policy
            .platform_info_forbidden
            .is_empty()
    {
        let missing: Vec<&str> = policy
            .platform_info_required
            .iter()
            .filter(|f| !f.is_set(info))
            .map(|f| f.name())
            .collect();
        let present: Vec<&str> = policy
            .platform_info_forbidden
            .iter()
            .filter(|f| f.is_set(info))
            .map(|f| f.name())
            .collect();
        let names = |list: &[PlatformFlag]| {
            list.iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join("|")
        };
        let mut expected = Vec::new();
        if !policy.platform_info_required.is_empty() {
            expected.push(format!("set: {}", names(&policy.platform_info_required)));
        }
        if !policy
            .platform_info_forbidden
            .is_empty()
        {
            expected.push(format!("clear: {}", names(&policy.platform_info_forbidden)));
        }
        let check = Check::expect(
            Step::TEE_POLICY_PLATFORM_INFO,
            missing.is_empty() && present.is_empty(),
            format!("PLATFORM_INFO {}", expected.join("; ")),
            format!("PLATFORM_INFO {info:#x} ({flags})"),
        );
        let mut problems = Vec::new();
        if !missing.is_empty() {
            problems.push(format!("missing {}", missing.join(", ")));
        }
        if !present.is_empty() {
            problems.push(format!("forbidden but set {}", present.join(", ")));
        }
        v.push(if problems.is_empty() {
            check
        } else {
            check.with_detail(problems.join("; "))
        });
    }
}

/// Compare a policy's hex value with a presented field.
pub(crate) fn pin_check(step: Step, expected_hex: &str, presented: &[u8]) -> Check {
    match hexfmt::decode(expected_hex) {
        Ok(expected) => Check::expect(step, expected == presented, hex(&expected), hex(presented)),
        Err(e) => Check::fail(
            step,
            expected_hex,
            hex(presented),
            format!("the policy value is not valid hex: {e}"),
        ),
    }
}

fn short(hex: &str) -> String {
    match hex.get(..16) {
        Some(head) if hex.len() > 16 => format!("{head}…"),
        _ => hex.to_owned(),
    }
}

/// A DER INTEGER in 0..=255 (AMD's SPL extensions).
fn der_small_uint(der: &[u8]) -> Option<u8> {
    let mut r = Reader::new("DER INTEGER", der);
    if r.u8("tag").ok()? != 0x02 {
        return None;
    }
    let len = usize::from(r.u8("length").ok()?);
    let value = r.take(len, "value").ok()?;
    r.finish().ok()?;
    match value {
        [b] if *b < 0x80 => Some(*b),
        [0, b] if *b >= 0x80 => Some(*b),
        _ => None,
    }
}

/// The content of a DER OCTET STRING (short or one/two-byte long form), or `None`.
fn der_octet_string(der: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader::new("DER OCTET STRING", der);
    if r.u8("tag").ok()? != 0x04 {
        return None;
    }
    let len = match r.u8("length").ok()? {
        n if n < 0x80 => usize::from(n),
        0x81 => usize::from(r.u8("length").ok()?),
        0x82 => usize::from(r.u16_be("length").ok()?),
        _ => return None,
    };
    let value = r.take(len, "value").ok()?;
    r.finish().ok()?;
    Some(value.to_vec())
}
