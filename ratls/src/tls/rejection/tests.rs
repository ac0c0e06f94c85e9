use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};

use super::{catch_rejection, certificate_error, AttestationRejected, RejectionSlot};
use crate::verdict::{Check, Platform, Step, Verdict};

fn alert(step: Step) -> AlertDescription {
    AlertDescription::from(certificate_error(step))
}

fn rejection(step: Step) -> AttestationRejected {
    let mut v = Verdict::new(Platform::Unknown);
    v.push(Check::fail(step, "expected", "presented", ""));
    AttestationRejected {
        verdict: Arc::new(v),
    }
}

/// The rows of the table in `text` (a doc comment or a Markdown page): each step named in the
/// first column (braces expanded), with the error and the alert of its row.
fn table_rows(text: &str) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start_matches("///").trim();
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| steps | `Error` | `alert` |": empty, steps, error, alert, empty.
        if cells.len() != 5 || !cells[2].starts_with('`') || cells[2].contains(' ') {
            continue;
        }
        let error = cells[2].trim_matches('`').to_owned();
        let alert = cells[3].trim_matches('`').to_owned();
        for quoted in cells[1].split('`').skip(1).step_by(2) {
            for name in expand_braces(quoted) {
                rows.insert(name, (error.clone(), alert.clone()));
            }
        }
    }
    rows
}

/// `a.{b,c}` -> `a.b`, `a.c`.
fn expand_braces(s: &str) -> Vec<String> {
    match (s.find('{'), s.find('}')) {
        (Some(open), Some(close)) => s[open + 1..close]
            .split(',')
            .map(|alt| format!("{}{}{}", &s[..open], alt, &s[close + 1..]))
            .collect(),
        _ => vec![s.to_owned()],
    }
}

/// `bad_certificate` for `BadCertificate`, `unknown_ca` for `UnknownCA`.
fn snake(alert: AlertDescription) -> String {
    let mut out = String::new();
    let mut after_lower = false;
    for c in format!("{alert:?}").chars() {
        if c.is_uppercase() && after_lower {
            out.push('_');
        }
        after_lower = c.is_lowercase();
        out.extend(c.to_lowercase());
    }
    out
}

/// Every step named in `text`'s table maps as the row says, and every step that does not fall
/// to the default (`access_denied`) is named.
fn assert_table_matches(what: &str, text: &str) {
    let rows = table_rows(text);
    for step in Step::ALL {
        let error = certificate_error(*step);
        match rows.get(step.as_str()) {
            Some((row_error, row_alert)) => {
                assert_eq!(&format!("{error:?}"), row_error, "{what}: {step}");
                assert_eq!(&snake(alert(*step)), row_alert, "{what}: {step}");
            }
            None => assert_eq!(
                error,
                CertificateError::ApplicationVerificationFailure,
                "{what}: {step} is not in the table"
            ),
        }
    }
    for name in rows.keys() {
        assert!(
            Step::ALL
                .iter()
                .any(|s| s.as_str() == name),
            "{what}: the table names {name}, which is no step"
        );
    }
}

#[test]
fn the_documented_tables_are_the_mapping() {
    assert_table_matches("the doc comment", include_str!("../rejection.rs"));
    assert_table_matches(
        "docs/verification.md",
        include_str!("../../../../docs/verification.md"),
    );
}

#[test]
fn every_step_maps_to_an_alert_of_its_kind_never_certificate_unknown() {
    use AlertDescription as A;
    for step in Step::ALL {
        let name = step.as_str();
        let got = alert(*step);
        let want = if name.ends_with(".parse") {
            Some(A::BadCertificate)
        } else if name.ends_with(".signature") {
            Some(A::DecryptError)
        } else if name.ends_with("validity") || name.ends_with("freshness") {
            Some(A::CertificateExpired)
        } else if name.starts_with("tee.chain.") {
            Some(A::UnknownCA)
        } else if name.contains(".policy.")
            || name.starts_with("ima.")
            || name.starts_with("snapshot.")
            || name.starts_with("binding.")
            || name.starts_with("boot.")
        {
            Some(A::AccessDenied)
        } else {
            None
        };
        if let Some(want) = want {
            assert_eq!(got, want, "{step}");
        }
        assert!(
            [
                A::BadCertificate,
                A::CertificateExpired,
                A::CertificateRevoked,
                A::UnknownCA,
                A::DecryptError,
                A::AccessDenied
            ]
            .contains(&got),
            "{step}: {got:?}"
        );
    }
}

#[test]
fn the_slot_holds_only_the_refusal_made_inside_it_for_its_exact_error() {
    // Made outside any slot: dropped.
    let outside = rejection(Step::TEE_SIGNATURE).into_rustls();
    let ((), empty) = catch_rejection(|| ());
    assert!(AttestationRejected::from_rustls(&outside, &empty).is_none());

    let (error, slot) = catch_rejection(|| rejection(Step::TEE_POLICY_MEASUREMENT).into_rustls());
    assert_eq!(
        error,
        rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
    );
    let r = AttestationRejected::from_rustls(&error, &slot).unwrap();
    assert_eq!(r.step(), Step::TEE_POLICY_MEASUREMENT);
    // Another error (another variant, another kind) is not this refusal.
    assert!(AttestationRejected::from_rustls(&outside, &slot).is_none());
    assert!(AttestationRejected::from_rustls(
        &rustls::Error::AlertReceived(AlertDescription::AccessDenied),
        &slot
    )
    .is_none());
    // Through the io::Error tokio-rustls returns.
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, error.clone());
    assert_eq!(
        AttestationRejected::from_io(&io, &slot)
            .unwrap()
            .step(),
        Step::TEE_POLICY_MEASUREMENT
    );

    // An inner slot hides the outer one, which is restored after it.
    let ((inner_error, inner), outer) = catch_rejection(|| {
        let inner = catch_rejection(|| rejection(Step::CERT_PARSE).into_rustls());
        let _ = rejection(Step::CERT_VALIDITY).into_rustls();
        inner
    });
    assert_eq!(
        AttestationRejected::from_rustls(&inner_error, &inner)
            .unwrap()
            .step(),
        Step::CERT_PARSE
    );
    assert!(AttestationRejected::from_rustls(&inner_error, &outer).is_none());
    let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
    assert_eq!(
        AttestationRejected::from_rustls(&expired, &outer)
            .unwrap()
            .step(),
        Step::CERT_VALIDITY
    );
    // Nothing is left open on the thread.
    let _ = rejection(Step::CERT_PARSE).into_rustls();
    assert!(AttestationRejected::from_rustls(&inner_error, &RejectionSlot::default()).is_none());
}

#[cfg(all(feature = "sim", feature = "issue"))]
mod handshakes {
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use rustls::sign::SingleCertAndKey;
    use rustls::{AlertDescription, ClientConfig, ServerConfig};

    use crate::attest::sim::{SimCa, SimTee};
    use crate::attest::Attester;
    use crate::binding::Role;
    use crate::tls::cert::{self, CertParams, IssuedCert};
    use crate::tls::{
        catch_rejection, danger, AttestationPolicy, AttestationRejected, AttestedClientVerifier,
        AttestedServerVerifier, CatchRejection, Mode, RejectionSlot,
    };
    use crate::verdict::Step;
    use crate::{Policy, UnixTime};

    fn ca() -> Arc<SimCa> {
        static CA: OnceLock<Arc<SimCa>> = OnceLock::new();
        CA.get_or_init(|| Arc::new(SimCa::generate().unwrap()))
            .clone()
    }

    /// A TEE-only (simulated) machine's certificate for `role`, issued at `at`.
    fn issued(role: Role, at: UnixTime, validity: Duration) -> IssuedCert {
        let tee = SimTee::new(ca()).unwrap();
        let attester = Attester::new(Some(Arc::new(tee)), None, None);
        let mut params = CertParams::new(role, "vm.example", vec!["vm.example".into()]);
        params.validity = validity;
        cert::issue(&attester, &params, at).unwrap()
    }

    fn served(c: &IssuedCert) -> Arc<SingleCertAndKey> {
        let key = c
            .certified_key(&crate::tls::provider())
            .unwrap();
        Arc::new(SingleCertAndKey::from(key))
    }

    /// The sim root trusted, a TEE required (no TPM, no IMA), `policy` otherwise.
    fn attestation_policy(policy: Policy, role: Role) -> AttestationPolicy {
        let mut p = AttestationPolicy::new(policy, role).with_requirements(true, false, false);
        danger::trust_simulated_root(&mut p, ca().ark_der());
        p
    }

    fn client(policy: Policy, own: Option<&IssuedCert>) -> Arc<ClientConfig> {
        let verifier = AttestedServerVerifier::new(
            attestation_policy(policy, Role::server()),
            Mode::Certificate,
        );
        let own = own.map(|c| served(c) as Arc<dyn rustls::client::ResolvesClientCert>);
        Arc::new(crate::tls::client_config(Arc::new(verifier), own, Vec::new()).unwrap())
    }

    fn server(
        served_cert: Arc<SingleCertAndKey>,
        verify_clients: Option<Policy>,
    ) -> Arc<ServerConfig> {
        let verifier = verify_clients.map(|p| {
            Arc::new(AttestedClientVerifier::new(
                attestation_policy(p, Role::client()),
                Mode::Certificate,
            )) as Arc<dyn rustls::server::danger::ClientCertVerifier>
        });
        Arc::new(crate::tls::server_config(served_cert, verifier, Vec::new()).unwrap())
    }

    /// A certificate whose evidence extension holds bytes that are no bundle.
    fn not_a_bundle() -> Arc<SingleCertAndKey> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(vec!["vm.example".to_owned()]).unwrap();
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &cert::CMW_EXTENSION_OID_ARCS,
                cert::der_octet_string_encode(b"not a bundle"),
            ));
        let der = p
            .self_signed(&key)
            .unwrap()
            .der()
            .clone();
        let key = crate::tls::provider()
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .unwrap();
        Arc::new(SingleCertAndKey::from(rustls::sign::CertifiedKey::new(
            vec![der],
            key,
        )))
    }

    fn other_measurement() -> Policy {
        let mut p = Policy::default();
        p.snp.measurement = Some("ab".repeat(48));
        p
    }

    /// An in-memory handshake with a slot open around it: the refusing side's error and verdict
    /// step, and the error its peer received.
    #[track_caller]
    fn refused_by_client(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
    ) -> (Step, rustls::Error, rustls::Error) {
        let (h, slot) =
            catch_rejection(|| ratls_test::tls::handshake(client, server, "vm.example"));
        let refusal = h
            .outcome
            .client_error
            .expect("the client should refuse");
        let peer = h
            .outcome
            .server_error
            .expect("the server should get an alert");
        let step = AttestationRejected::from_rustls(&refusal, &slot)
            .unwrap_or_else(|| panic!("no verdict for {refusal}"))
            .step();
        (step, refusal, peer)
    }

    #[test]
    fn the_server_receives_the_alert_of_the_step_the_client_refused_at() {
        let now = UnixTime::now();
        let good = issued(Role::server(), now, Duration::from_secs(3600));
        let cases = [
            (
                server(not_a_bundle(), None),
                Policy::default(),
                Step::BUNDLE_PARSE,
                AlertDescription::BadCertificate,
            ),
            (
                server(
                    served(&issued(
                        Role::server(),
                        UnixTime::from_secs(now.as_secs() - 7200),
                        Duration::from_secs(3600),
                    )),
                    None,
                ),
                Policy::default(),
                Step::CERT_VALIDITY,
                AlertDescription::CertificateExpired,
            ),
            (
                server(served(&good), None),
                other_measurement(),
                Step::TEE_POLICY_MEASUREMENT,
                AlertDescription::AccessDenied,
            ),
        ];
        for (server, policy, want_step, want_alert) in cases {
            let (step, refusal, peer) = refused_by_client(client(policy, None), server);
            assert_eq!(step, want_step);
            assert_eq!(
                refusal,
                rustls::Error::InvalidCertificate(super::certificate_error(want_step))
            );
            assert_eq!(
                peer,
                rustls::Error::AlertReceived(want_alert),
                "{want_step}"
            );
        }
        // The same pair with the accepting policy completes: the slot stays empty.
        let (h, slot) = catch_rejection(|| {
            ratls_test::tls::handshake(
                client(Policy::default(), None),
                server(served(&good), None),
                "vm.example",
            )
        });
        assert!(h.outcome.is_ok(), "{:?}", h.outcome);
        let e = rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding);
        assert!(AttestationRejected::from_rustls(&e, &slot).is_none());
    }

    #[test]
    fn the_client_receives_the_alert_of_the_step_the_server_refused_it_at() {
        let now = UnixTime::now();
        let server_cert = issued(Role::server(), now, Duration::from_secs(3600));
        let client_cert = issued(Role::client(), now, Duration::from_secs(3600));
        let (h, slot) = catch_rejection(|| {
            ratls_test::tls::handshake(
                client(Policy::default(), Some(&client_cert)),
                server(served(&server_cert), Some(other_measurement())),
                "vm.example",
            )
        });
        let refusal = h
            .outcome
            .server_error
            .expect("the server should refuse");
        assert_eq!(
            AttestationRejected::from_rustls(&refusal, &slot)
                .unwrap()
                .step(),
            Step::TEE_POLICY_MEASUREMENT
        );
        assert_eq!(
            h.outcome.client_error,
            Some(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
        );
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn a_tokio_rustls_connect_returns_its_verdict_through_the_slot() {
        use rustls::pki_types::ServerName;
        use tokio_rustls::{TlsAcceptor, TlsConnector};

        let cert = issued(Role::server(), UnixTime::now(), Duration::from_secs(3600));
        let (c, s) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from("vm.example").unwrap();
        let connector = TlsConnector::from(client(other_measurement(), None));
        let acceptor = TlsAcceptor::from(server(served(&cert), None));
        let ((connected, slot), accepted) = tokio::join!(
            CatchRejection::new(connector.connect(name, c)),
            acceptor.accept(s)
        );
        let e = connected.unwrap_err();
        assert_eq!(
            AttestationRejected::from_io(&e, &slot)
                .unwrap()
                .step(),
            Step::TEE_POLICY_MEASUREMENT
        );
        let peer = accepted.unwrap_err();
        let peer = peer
            .get_ref()
            .and_then(|i| i.downcast_ref::<rustls::Error>())
            .unwrap();
        assert_eq!(
            peer,
            &rustls::Error::AlertReceived(AlertDescription::AccessDenied)
        );
        // The acceptor polled outside the slot: its side has nothing, and nothing leaked.
        assert!(AttestationRejected::from_io(&e, &RejectionSlot::default()).is_none());
    }
}
