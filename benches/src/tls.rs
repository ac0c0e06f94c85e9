//! The `tls` group: RA-TLS handshakes next to plain rustls, in the same run, in memory.
//!
//! Every handshake is a rustls `ClientConnection` and `ServerConnection` exchanging bytes
//! through `write_tls` / `read_tls` / `process_new_packets` on one thread
//! ([`ratls_test::tls::drive`]): no sockets, so the
//! figures are the CPU cost of both ends together (or of the server alone, where a row says so).
//!
//! - Plain: TLS 1.3, an ECDSA P-256 leaf signed by an ECDSA P-256 CA (rcgen), the client verifying
//!   it with `WebPkiServerVerifier` and that CA as its only root, ring provider, no resumption
//!   (the client keeps no sessions, the server sends no tickets), like the attested configurations.
//! - Attested: `ratls::tls::server_config` serving a [`RotatingCert`] issued from the simulated
//!   TEE + swtpm + a simulated IMA log, `ratls::tls::client_config` with an
//!   [`AttestedServerVerifier`] in [`Mode::Certificate`] trusting the simulated root; the first
//!   handshake fills the verdict cache.
//! - Memory: each figure comes from a fresh child process (`--memory-probe`) holding N established
//!   connections, from the growth of its resident set (`VmRSS`); see [`memory_probe`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratls::attest::sim::{SimCa, SimTee};
use ratls::attest::{Attester, ImaFile};
use ratls::binding::Role;
use ratls::bundle::{Bundle, MAX_CERT_BUNDLE_LEN};
use ratls::digest::HashAlg;
use ratls::tls::cert::{self, CertParams, IssueError, IssuedCert};
use ratls::tls::{
    self as ratls_tls, danger, AttestationPolicy, AttestedClientVerifier, AttestedServerVerifier,
    AttesterSource, CertSource, Mode, RotatingCert,
};
use ratls::{Policy, UnixTime};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig, ServerConnection,
};

use crate::{measure, Measurement};

/// The name every handshake is made to.
const SERVER_NAME: &str = "localhost";

// ---------------------------------------------------------------------------------------------
// In-memory handshakes (`ratls_test::tls`, shared with the TLS tests).

/// Run a handshake to completion (including post-handshake messages such as tickets). Returns
/// the time spent inside the server's calls.
fn handshake(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
    buf: &mut Vec<u8>,
) -> Duration {
    let out = ratls_test::tls::drive(client, server, buf);
    assert!(
        out.is_ok(),
        "handshake failed: client {:?}, server {:?}",
        out.client_error,
        out.server_error
    );
    assert!(
        !client.is_handshaking() && !server.is_handshaking(),
        "handshake stalled"
    );
    out.server_time
}

/// One application-data round trip on an established connection: a 100-byte request, a 100-byte
/// response.
fn round_trip(client: &mut ClientConnection, server: &mut ServerConnection, buf: &mut Vec<u8>) {
    use std::io::{Read, Write};
    let mut got = [0u8; 100];
    client
        .writer()
        .write_all(&[b'q'; 100])
        .expect("request");
    ratls_test::tls::send(client, server, buf).expect("request processed");
    server
        .reader()
        .read_exact(&mut got)
        .expect("request arrives");
    server
        .writer()
        .write_all(&[b'r'; 100])
        .expect("response");
    ratls_test::tls::send(server, client, buf).expect("response processed");
    client
        .reader()
        .read_exact(&mut got)
        .expect("response arrives");
    assert_eq!(got, [b'r'; 100]);
}

/// A pair of configurations and one handshake between them.
#[derive(Clone)]
struct Pair {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl Pair {
    fn connect(&self, buf: &mut Vec<u8>) -> (ClientConnection, ServerConnection, Duration) {
        let name = ServerName::try_from(SERVER_NAME).expect("server name");
        let mut client = ClientConnection::new(self.client.clone(), name).expect("client");
        let mut server = ServerConnection::new(self.server.clone()).expect("server");
        let server_time = handshake(&mut client, &mut server, buf);
        (client, server, server_time)
    }

    /// One full handshake; checks that it was a full one.
    fn full(&self, buf: &mut Vec<u8>) {
        let (client, _server, _) = self.connect(buf);
        assert_eq!(client.handshake_kind(), Some(HandshakeKind::Full));
    }
}

// ---------------------------------------------------------------------------------------------
// Plain rustls.

/// A CA and the leaves it signed, all ECDSA P-256 (rcgen).
struct PlainPki {
    ca_der: CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>),
    client: (CertificateDer<'static>, PrivatePkcs8KeyDer<'static>),
}

impl PlainPki {
    fn generate() -> Self {
        Self::generate_padded(0)
    }

    /// [`generate`](Self::generate), the server leaf carrying a non-critical private extension
    /// of `padding` bytes (a plain certificate as large as an RA-TLS one; 0: none).
    fn generate_padded(padding: usize) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose,
            IsCa, Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bench CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params
            .self_signed(&ca_key)
            .expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |cn: &str, sans: Vec<String>, eku: ExtendedKeyUsagePurpose, padding: usize| {
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
            let mut params = CertificateParams::new(sans).expect("leaf params");
            if padding > 0 {
                // A private-enterprise arc: ignored by every verifier (non-critical).
                params
                    .custom_extensions
                    .push(CustomExtension::from_oid_content(
                        &[1, 3, 6, 1, 4, 1, 55555, 1],
                        cert::der_octet_string_encode(&vec![0x5a; padding]),
                    ));
            }
            params
                .distinguished_name
                .push(DnType::CommonName, cn);
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![eku];
            let cert = params
                .signed_by(&key, &issuer)
                .expect("leaf cert");
            (
                cert.der().clone(),
                PrivatePkcs8KeyDer::from(key.serialize_der()),
            )
        };
        Self {
            ca_der: ca_cert.der().clone(),
            server: leaf(
                SERVER_NAME,
                vec![SERVER_NAME.to_owned()],
                ExtendedKeyUsagePurpose::ServerAuth,
                padding,
            ),
            client: leaf(
                "bench client",
                Vec::new(),
                ExtendedKeyUsagePurpose::ClientAuth,
                0,
            ),
        }
    }

    /// Plain rustls configurations: full handshakes only (`resumption` false) or with TLS 1.3
    /// tickets, optionally with WebPKI client authentication.
    fn pair(&self, mutual: bool, resumption: bool) -> Pair {
        let provider = ratls_tls::provider();
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("root");
        let roots = Arc::new(roots);
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .expect("server verifier");
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_webpki_verifier(server_verifier);
        let mut client = if mutual {
            builder
                .with_client_auth_cert(
                    vec![self.client.0.clone()],
                    PrivateKeyDer::Pkcs8(self.client.1.clone_key()),
                )
                .expect("client cert")
        } else {
            builder.with_no_client_auth()
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3");
        let builder = if mutual {
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .expect("client verifier"),
            )
        } else {
            builder.with_no_client_auth()
        };
        let mut server = builder
            .with_single_cert(
                vec![self.server.0.clone()],
                PrivateKeyDer::Pkcs8(self.server.1.clone_key()),
            )
            .expect("server cert");
        if resumption {
            server.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
        } else {
            client.resumption = rustls::client::Resumption::disabled();
            server.send_tls13_tickets = 0;
            server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        }
        Pair {
            client: Arc::new(client),
            server: Arc::new(server),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Attested.

/// A certificate source that waits `delay` (standing in for slow evidence generation: a TEE
/// report from a busy PSP, a slow TPM) before issuing from `inner`.
#[derive(Debug)]
struct DelayedSource {
    inner: AttesterSource,
    delay: Duration,
}

impl CertSource for DelayedSource {
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError> {
        std::thread::sleep(self.delay);
        self.inner.issue(now)
    }
}

/// A certificate issued once and re-served on every rotation (the memory probes, which run in a
/// child process without the TPM).
#[derive(Debug)]
struct FixedSource {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl CertSource for FixedSource {
    fn issue(&self, now: UnixTime) -> Result<IssuedCert, IssueError> {
        let evidence = cert::read_evidence(&self.cert_der).expect("RA-TLS certificate");
        Ok(IssuedCert {
            cert_der: CertificateDer::from(self.cert_der.clone()),
            key_der: PrivatePkcs8KeyDer::from(self.key_der.clone()),
            spki_der: evidence.cert.spki_der().to_vec(),
            bundle: Bundle::from_cmw(&evidence.cmw, MAX_CERT_BUNDLE_LEN).expect("bundle"),
            issued_at: now,
        })
    }
}

fn attested_pair(
    server_cert: &RotatingCert,
    client_cert: Option<&RotatingCert>,
    ark_der: &[u8],
) -> (Pair, AttestedServerVerifier) {
    let mut server_policy = AttestationPolicy::for_server(Policy::default());
    danger::trust_simulated_root(&mut server_policy, ark_der);
    let server_verifier = AttestedServerVerifier::new(server_policy, Mode::Certificate);
    let client_verifier = client_cert.map(|_| {
        let mut policy = AttestationPolicy::for_client(Policy::default());
        danger::trust_simulated_root(&mut policy, ark_der);
        Arc::new(AttestedClientVerifier::new(policy, Mode::Certificate))
            as Arc<dyn rustls::server::danger::ClientCertVerifier>
    });
    let client = ratls_tls::client_config(
        Arc::new(server_verifier.clone()),
        client_cert.map(|c| Arc::new(c.clone()) as Arc<dyn rustls::client::ResolvesClientCert>),
        Vec::new(),
    )
    .expect("client config");
    let server =
        ratls_tls::server_config(Arc::new(server_cert.clone()), client_verifier, Vec::new())
            .expect("server config");
    (
        Pair {
            client: Arc::new(client),
            server: Arc::new(server),
        },
        server_verifier,
    )
}

/// One attested handshake whose server verdict must be trusted and simulated (in a mutual pair,
/// the server's verifier refusing the client would fail the handshake).
fn attested_handshake_checked(pair: &Pair, verifier: &AttestedServerVerifier) {
    let mut buf = Vec::new();
    let (client, _server, _) = pair.connect(&mut buf);
    assert_eq!(client.handshake_kind(), Some(HandshakeKind::Full));
    let verdict = ratls_tls::peer_verdict(&client, verifier).expect("a cached verdict");
    assert!(verdict.is_trusted() && verdict.simulated, "{verdict}");
}

/// What an RA-TLS certificate's bytes are made of (printed once, for the record).
fn composition(cert_der: &[u8]) -> String {
    use ratls::bundle::TeeEvidence;
    let evidence = cert::read_evidence(cert_der).expect("RA-TLS certificate");
    let bundle = Bundle::from_cmw(&evidence.cmw, MAX_CERT_BUNDLE_LEN).expect("bundle");
    let mut parts = vec![format!("CMW {} B", evidence.cmw.len())];
    if let Some(TeeEvidence::Sim {
        report,
        vcek,
        chain,
    }) = &bundle.tee
    {
        parts.push(format!(
            "sim report {} B, VCEK {} B, ASK+ARK chain {} B",
            report.len(),
            vcek.len(),
            chain.len()
        ));
    }
    if let Some(tpm) = &bundle.tpm {
        let pcrs: usize = tpm
            .pcrs
            .values()
            .flat_map(|bank| bank.values())
            .map(|v| v.len())
            .sum();
        parts.push(format!(
            "TPM attest {} B + signature {} B + AK public {} B + PCR values {pcrs} B + EK cert {} B",
            tpm.attest.len(),
            tpm.signature.len(),
            tpm.ak_public.len(),
            tpm.ek_cert.as_ref().map_or(0, |c| c.len())
        ));
    }
    parts.join("; ")
}

// ---------------------------------------------------------------------------------------------
// The group.

/// The machine of the `tls` and `batch` groups: swtpm with boot PCRs and a 200-entry IMA log.
pub struct BenchTpm {
    // Field order matters: the TPM client goes before the swtpm process.
    pub tpm: Arc<ratls_harness::TssTpm>,
    pub log_path: std::path::PathBuf,
    pub swtpm: ratls_harness::Swtpm,
}

/// [`BenchTpm`], or `None` (with a loud message) when swtpm is not installed outside CI.
pub fn bench_tpm(group: &str) -> Option<BenchTpm> {
    use ratls_harness::{open_tpm, simulate_boot, ImaSimulator, Swtpm};

    if !ratls_test::swtpm::available() {
        assert!(
            !ratls_test::in_ci(),
            "CI must have swtpm (scripts/setup.sh)"
        );
        eprintln!("{group}: swtpm not installed; group SKIPPED");
        return None;
    }
    let swtpm = Swtpm::start().expect("swtpm starts");
    let tpm = Arc::new(open_tpm(&swtpm).expect("TPM opens"));
    simulate_boot(&tpm, "bench").expect("PCRs extended");
    let log_path = swtpm.state_dir().join("ima.log");
    {
        let mut ima = ImaSimulator::new(&log_path, &tpm).expect("IMA simulator");
        for i in 0..200u32 {
            let digest = HashAlg::Sha256.digest(&i.to_le_bytes());
            ima.measure(format!("/usr/bin/tool-{i}").as_bytes(), &digest)
                .expect("measure");
        }
    }
    Some(BenchTpm {
        tpm,
        log_path,
        swtpm,
    })
}

pub fn run(scale: &dyn Fn(u64) -> u64) -> Vec<Measurement> {
    // The machine: swtpm with boot PCRs, a 200-entry IMA log on it, the simulated TEE.
    let Some(BenchTpm {
        tpm,
        log_path,
        swtpm,
    }) = bench_tpm("tls")
    else {
        return Vec::new();
    };
    let ca = Arc::new(SimCa::generate().expect("sim CA"));
    let tee = SimTee::new(ca.clone()).expect("sim TEE");
    let attester = Arc::new(Attester::new(
        Some(Arc::new(tee)),
        Some(tpm.clone()),
        Some(Arc::new(ImaFile(log_path))),
    ));
    let source = |role: Role, delay: Duration| -> Box<dyn CertSource> {
        let inner = AttesterSource {
            attester: attester.clone(),
            params: CertParams::new(role, SERVER_NAME, vec![SERVER_NAME.to_owned()]),
        };
        Box::new(DelayedSource { inner, delay })
    };
    let hour = Duration::from_secs(3600);
    let server_cert = RotatingCert::start(source(Role::server(), Duration::ZERO), hour)
        .expect("server certificate");
    let client_cert = RotatingCert::start(source(Role::client(), Duration::ZERO), hour)
        .expect("client certificate");
    let ark = ca.ark_der().to_vec();

    let pki = PlainPki::generate();
    let plain = pki.pair(false, false);
    let plain_mutual = pki.pair(true, false);
    let plain_resume = pki.pair(false, true);
    let (attested, verifier) = attested_pair(&server_cert, None, &ark);
    let (attested_mutual, mutual_verifier) = attested_pair(&server_cert, Some(&client_cert), &ark);
    // The first handshakes fill the verdict caches (and check that they are trusted).
    attested_handshake_checked(&attested, &verifier);
    attested_handshake_checked(&attested_mutual, &mutual_verifier);
    assert_eq!(verifier.cache().len(), 1);

    let plain_len = pki.server.0.len();
    let attested_len = server_cert
        .current()
        .cert
        .first()
        .map_or(0, |c| c.len());
    eprintln!(
        "tls: RA-TLS server certificate {attested_len} B: {}",
        composition(
            server_cert
                .current()
                .cert
                .first()
                .expect("certificate")
        )
    );
    // Resumption (plain rustls, TLS 1.3 tickets, PSK with (EC)DHE): the first handshake is full
    // and leaves tickets in the client's session store; each resumption brings new ones.
    let mut buf = Vec::with_capacity(32 * 1024);
    plain_resume.full(&mut buf);
    let resumed = |buf: &mut Vec<u8>| {
        let (client, _server, _) = plain_resume.connect(buf);
        assert_eq!(client.handshake_kind(), Some(HandshakeKind::Resumed));
    };

    // The proxy's cost of a signed result for the app (`--ear-jwks`): the verdict from the cache,
    // the exporter, the appraisal and an ES256 signature, on top of the same handshake.
    let ear_signer = ratls::ear::EarSigner::generate(ratls::ear::VerifierId {
        developer: "bench".into(),
        build: "0".into(),
    })
    .expect("EAR key");
    let policy_digest = verifier.policy().digest();
    let mut last_ear = String::new();
    let mut with_ear = |buf: &mut Vec<u8>| {
        let (client, _server, _) = attested.connect(buf);
        let verdict = ratls_tls::peer_verdict(&client, &verifier).expect("a cached verdict");
        let exporter = client
            .export_keying_material([0u8; 32], ratls::ear::EXPORTER_LABEL, None)
            .expect("exporter");
        let binding = ratls::ear::Binding {
            tls_exporter_sha256: Some(hex::encode(ratls::digest::sha256(&exporter))),
            peer_spki_sha256: match &verdict.claims {
                ratls::Claims::Bundle(b) => Some(b.spki_sha256.clone()),
                _ => None,
            },
            connection_id: "bench-1".into(),
            app_connection: ratls::ear::AppConnection {
                app: "127.0.0.1:8080".into(),
                proxy: "127.0.0.1:40000".into(),
            },
        };
        let appraisal = ratls::ear::appraise(&verdict, &policy_digest, binding);
        last_ear = ear_signer
            .sign(appraisal, UnixTime::now(), 60)
            .expect("EAR");
    };
    let mut read_back = |buf: &mut Vec<u8>| {
        let (client, _server, _) = attested.connect(buf);
        let verdict = ratls_tls::peer_verdict(&client, &verifier).expect("a cached verdict");
        std::hint::black_box(verdict);
    };
    let n = scale(2000);
    let mut rows = interleaved(
        n,
        &mut [
            (
                format!(
                    "tls: plain rustls full handshake (TLS 1.3, P-256 leaf of {plain_len} B signed by a CA, WebPkiServerVerifier, no resumption)"
                ),
                &mut |buf| plain.full(buf),
            ),
            (
                format!(
                    "tls: attested full handshake, verdict cached (RotatingCert, {attested_len} B RA-TLS cert; AttestedServerVerifier Mode::Certificate)"
                ),
                &mut |buf| attested.full(buf),
            ),
            (
                "tls: attested full handshake, verdict cached, + the verdict read back (ratls::tls::peer_verdict: what the proxy does per connection for its summary)".into(),
                &mut read_back,
            ),
            (
                "tls: attested full handshake, verdict cached, + signed EAR for the app (verdict lookup, exporter, appraisal, ES256; proxy --ear-jwks)".into(),
                &mut with_ear,
            ),
            (
                "tls: plain rustls mutual full handshake (WebPKI client auth, P-256 client leaf signed by the CA)".into(),
                &mut |buf| plain_mutual.full(buf),
            ),
            (
                "tls: attested mutual full handshake, verdicts cached (RotatingCert both sides; AttestedClientVerifier)".into(),
                &mut |buf| attested_mutual.full(buf),
            ),
            (
                "tls: plain rustls resumed handshake (TLS 1.3 ticket, psk_dhe_ke; attested configs never resume)".into(),
                &mut |buf| resumed(buf),
            ),
        ],
    );
    let app_side = ratls::ear::AppConnection {
        app: "127.0.0.1:8080".into(),
        proxy: "127.0.0.1:40000".into(),
    };
    let jwks = ear_signer.jwks();
    rows.push(measure(
        &format!(
            "tls: the app's check of one EAR ({} B; ratls::ear::verify: ES256, expiry, connection)",
            last_ear.len()
        ),
        scale(2000),
        1,
        "checks",
        || ratls::ear::verify(&last_ear, &jwks, &app_side, UnixTime::now()).expect("a valid EAR"),
    ));
    // Where the EAR's cost goes, piece by piece (one connection, the cached verdict).
    {
        let (client, _server, _) = attested.connect(&mut buf);
        let verdict = ratls_tls::peer_verdict(&client, &verifier).expect("a cached verdict");
        let binding = || ratls::ear::Binding {
            tls_exporter_sha256: Some("ab".repeat(32)),
            peer_spki_sha256: Some("cd".repeat(32)),
            connection_id: "bench-1".into(),
            app_connection: ratls::ear::AppConnection {
                app: "127.0.0.1:8080".into(),
                proxy: "127.0.0.1:40000".into(),
            },
        };
        let n = scale(2000);
        rows.push(measure(
            "tls: EAR part: the connection's exporter, SHA-256 and hex",
            n,
            1,
            "EARs",
            || {
                let exporter = client
                    .export_keying_material([0u8; 32], ratls::ear::EXPORTER_LABEL, None)
                    .expect("exporter");
                hex::encode(ratls::digest::sha256(&exporter))
            },
        ));
        rows.push(measure(
            "tls: EAR part: the appraisal of the verdict (ratls::ear::appraise)",
            n,
            1,
            "EARs",
            || ratls::ear::appraise(&verdict, &policy_digest, binding()),
        ));
        let appraisal = ratls::ear::appraise(&verdict, &policy_digest, binding());
        rows.push(measure(
            "tls: EAR part: the signed token (EarSigner::sign: JSON, base64url, ES256)",
            n,
            1,
            "EARs",
            || {
                ear_signer
                    .sign(appraisal.clone(), UnixTime::now(), 60)
                    .expect("EAR")
            },
        ));
        let key_rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_rng,
        )
        .expect("key");
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &key_rng,
        )
        .expect("key");
        let message = last_ear.as_bytes().to_vec();
        rows.push(measure(
            &format!(
                "tls: EAR part, reference: a bare ring ECDSA P-256 signature over {} bytes",
                message.len()
            ),
            n,
            1,
            "EARs",
            || {
                key.sign(&key_rng, &message)
                    .expect("signature")
            },
        ));
    }
    rows.push(measure(
        "tls: attested full handshake, verdict cache cleared each time (the evidence verified in the handshake)",
        scale(300).max(3),
        1,
        "handshakes",
        || {
            verifier.cache().clear();
            attested.full(&mut buf)
        },
    ));
    assert_eq!(verifier.cache().len(), 1, "the verdict was cached again");

    rows.extend(rotation(scale, &source, &ark));
    rows.extend(memory(
        scale,
        &attester,
        &ark,
        &swtpm.state_dir().join("memory-probe"),
    ));
    rows
}

/// One benchmark case: a handshake through the given transfer buffer.
type Handshakes<'a> = dyn FnMut(&mut Vec<u8>) + 'a;

/// Time `n` handshakes of each case, interleaved in chunks of 50 (after a warm-up of each), so
/// that every case sees the same machine: the ratios hold even on a busy box.
fn interleaved(n: u64, cases: &mut [(String, &mut Handshakes<'_>)]) -> Vec<Measurement> {
    let mut buf = Vec::with_capacity(32 * 1024);
    for (_, f) in cases.iter_mut() {
        for _ in 0..n.div_ceil(10).min(50) {
            f(&mut buf);
        }
    }
    let mut elapsed = vec![Duration::ZERO; cases.len()];
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(50);
        for ((_, f), total) in cases.iter_mut().zip(&mut elapsed) {
            let start = Instant::now();
            for _ in 0..chunk {
                f(&mut buf);
            }
            *total += start.elapsed();
        }
        done += chunk;
    }
    cases
        .iter()
        .zip(elapsed)
        .map(|((name, _), elapsed)| Measurement {
            name: name.clone(),
            iterations: n,
            elapsed,
            units_per_iter: 1,
            unit: "handshakes",
            memory_bytes: None,
        })
        .collect()
}

/// Server CPU per handshake while the certificate rotates every 50 ms in the background, with a
/// 40 ms evidence-generation delay and without, and with no rotation during the run. The three
/// run interleaved, in rounds, against the same client configuration kind (attested, so each
/// rotation costs the client a full verification: not counted, only the server's calls are
/// timed).
fn rotation(
    scale: &dyn Fn(u64) -> u64,
    source: &dyn Fn(Role, Duration) -> Box<dyn CertSource>,
    ark: &[u8],
) -> Vec<Measurement> {
    let period = Duration::from_millis(50);
    let variants: [(&str, Duration, Duration); 3] = [
        (
            "no rotation during the run",
            Duration::ZERO,
            Duration::from_secs(3600),
        ),
        (
            "rotation every 50 ms, 0 ms evidence delay",
            Duration::ZERO,
            period,
        ),
        (
            "rotation every 50 ms, 40 ms evidence delay",
            Duration::from_millis(40),
            period,
        ),
    ];
    // Rounds are timed, not counted, so that rotations happen even in a smoke run; the variants
    // alternate so that each sees the same machine.
    let rounds = scale(8).clamp(2, 8);
    let round = Duration::from_millis(scale(400)).max(Duration::from_millis(120));
    let mut totals = [(Duration::ZERO, 0u64, 0u64); 3];
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let mut buf = Vec::with_capacity(32 * 1024);
    for r in 0..rounds {
        // Alternate the order too, so that no variant always follows the same one.
        let order = if r % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for i in order {
            let (_, delay, period) = &variants[i];
            let cert = RotatingCert::start(source(Role::server(), *delay), *period)
                .expect("server certificate");
            let (pair, verifier) = attested_pair(&cert, None, ark);
            attested_handshake_checked(&pair, &verifier);
            let before = cert.status().rotations;
            let mut server_time = Duration::ZERO;
            let mut count = 0u64;
            let start = Instant::now();
            while start.elapsed() < round {
                let (client, _server, t) = pair.connect(&mut buf);
                assert_eq!(client.handshake_kind(), Some(HandshakeKind::Full));
                server_time += t;
                count += 1;
                samples[i].push(t);
            }
            let status = cert.status();
            assert_eq!(status.failures, 0, "{:?}", status.last_error);
            totals[i].0 += server_time;
            totals[i].1 += count;
            totals[i].2 += status.rotations - before;
        }
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut rows = Vec::new();
    for (((label, _, _), (elapsed, iterations, rotations)), samples) in variants
        .iter()
        .zip(totals)
        .zip(&mut samples)
    {
        samples.sort_unstable();
        let at = |q: usize| {
            samples
                .get((samples.len() * q / 100).min(samples.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        let stats = format!(
            "{rotations} rotations during the run; per handshake median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            us(at(50)),
            us(at(99)),
            us(at(100))
        );
        rows.push(Measurement {
            name: format!(
                "tls: server side of attested handshakes (server calls timed), {label} ({stats})"
            ),
            iterations,
            elapsed,
            units_per_iter: 1,
            unit: "handshakes",
            memory_bytes: None,
        });
    }
    rows
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Which configuration a memory probe builds.
/// `plain-large-cert`: plain rustls whose server leaf is padded to the RA-TLS certificate's size
/// (a control: what the size alone costs).
const PROBE_CONFIGS: [&str; 5] = [
    "plain",
    "attested",
    "plain-large-cert",
    "plain-mutual",
    "attested-mutual",
];
/// Which end of each established connection a memory probe keeps.
const PROBE_HOLDS: [&str; 2] = ["server", "client"];
/// When a memory probe measures: right after the handshake, or after one application-data round
/// trip (rustls shrinks its receive buffer on the first read after a large flight).
const PROBE_AFTER: [&str; 2] = ["handshake", "round-trip"];

fn memory(
    scale: &dyn Fn(u64) -> u64,
    attester: &Attester,
    ark: &[u8],
    dir: &Path,
) -> Vec<Measurement> {
    // The probes need the private keys, which a `CertifiedKey` does not give back: issue one
    // RA-TLS certificate per role here, the way `RotatingCert` does, and hand them over as files.
    std::fs::create_dir_all(dir).expect("probe directory");
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("write probe input");
    };
    for (name, role) in [("server", Role::server()), ("client", Role::client())] {
        let params = CertParams::new(role, SERVER_NAME, vec![SERVER_NAME.to_owned()]);
        let issued = cert::issue(attester, &params, UnixTime::now()).expect("RA-TLS certificate");
        write(&format!("{name}.der"), &issued.cert_der);
        write(&format!("{name}.key"), issued.key_der.secret_pkcs8_der());
    }
    write("ark.der", ark);
    let n = scale(1500).max(40);
    let exe = std::env::current_exe().expect("own executable");
    let mut rows = Vec::new();
    for (config, hold, after) in PROBE_CONFIGS.iter().flat_map(|c| {
        PROBE_HOLDS.iter().flat_map(move |h| {
            PROBE_AFTER
                .iter()
                .map(move |a| (*c, *h, *a))
        })
    }) {
        {
            let out = std::process::Command::new(&exe)
                .args(["--memory-probe", config, hold, after, &n.to_string()])
                .arg(dir)
                .output()
                .expect("memory probe runs");
            assert!(
                out.status.success(),
                "memory probe {config} {hold} {after} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let bytes: f64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("probe prints bytes per connection");
            rows.push(Measurement {
                name: format!(
                    "tls memory: {config}, {hold} end of {n} connections kept, after the {after} (fresh process, VmRSS growth)"
                ),
                iterations: n,
                elapsed: Duration::ZERO,
                units_per_iter: 1,
                unit: "B",
                memory_bytes: Some(bytes),
            });
        }
    }
    rows
}

/// Resident memory of this process (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The child side of a memory probe: `--memory-probe CONFIG HOLD AFTER N DIR`. Builds the
/// configuration (attested ones from the RA-TLS certificates and keys the parent wrote to DIR),
/// makes one handshake to warm up (and fill the verdict cache), then establishes N connections
/// (with one application-data round trip if AFTER is `round-trip`) keeping the HOLD end, and
/// prints the resident-set growth per connection between the first quarter and the end (the
/// first quarter absorbs heap memory freed during setup).
pub fn memory_probe(args: &[String]) -> Result<(), String> {
    let [config, hold, after, n, dir] = args else {
        return Err("usage: --memory-probe CONFIG HOLD AFTER N DIR".into());
    };
    let exchange = match after.as_str() {
        "handshake" => false,
        "round-trip" => true,
        other => return Err(format!("unknown AFTER {other}")),
    };
    let n: u64 = n
        .parse()
        .map_err(|_| format!("bad N {n}"))?;
    let dir = PathBuf::from(dir);
    let mut keep_server = false;
    let mut keep_client = false;
    match hold.as_str() {
        "server" => keep_server = true,
        "client" => keep_client = true,
        other => return Err(format!("unknown hold {other}")),
    }
    // Held for the whole probe: the rotating certificates' threads and the verdict caches.
    let mut _keep_alive = Vec::new();
    let pair = match config.as_str() {
        "plain" => PlainPki::generate().pair(false, false),
        "plain-mutual" => PlainPki::generate().pair(true, false),
        "plain-large-cert" => {
            // Pad the leaf to the RA-TLS server certificate's size.
            let target = std::fs::metadata(dir.join("server.der"))
                .map_err(|e| format!("server.der: {e}"))?
                .len();
            let plain = PlainPki::generate().server.0.len() as u64;
            let padding = usize::try_from(target.saturating_sub(plain + 20)).unwrap_or(0);
            let pki = PlainPki::generate_padded(padding);
            eprintln!("padded plain leaf: {} B", pki.server.0.len());
            pki.pair(false, false)
        }
        "attested" | "attested-mutual" => {
            let load = |role: &str| -> Result<RotatingCert, String> {
                let read = |ext: &str| {
                    std::fs::read(dir.join(format!("{role}.{ext}")))
                        .map_err(|e| format!("{role}.{ext}: {e}"))
                };
                let source = FixedSource {
                    cert_der: read("der")?,
                    key_der: read("key")?,
                };
                RotatingCert::start(Box::new(source), Duration::from_secs(3600))
                    .map_err(|e| e.to_string())
            };
            let ark = std::fs::read(dir.join("ark.der")).map_err(|e| e.to_string())?;
            let server_cert = load("server")?;
            let client_cert = if config == "attested-mutual" {
                Some(load("client")?)
            } else {
                None
            };
            let (pair, verifier) = attested_pair(&server_cert, client_cert.as_ref(), &ark);
            attested_handshake_checked(&pair, &verifier);
            _keep_alive.push(server_cert);
            _keep_alive.extend(client_cert);
            pair
        }
        other => return Err(format!("unknown config {other}")),
    };
    let mut buf = Vec::with_capacity(32 * 1024);
    pair.full(&mut buf);
    let mut servers = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let mut clients = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let quarter = n / 4;
    let mut base = 0;
    for i in 0..n {
        if i == quarter {
            base = rss_bytes();
        }
        let (mut client, mut server, _) = pair.connect(&mut buf);
        if exchange {
            round_trip(&mut client, &mut server, &mut buf);
        }
        if keep_server {
            servers.push(server);
        }
        if keep_client {
            clients.push(client);
        }
    }
    let grown = rss_bytes().saturating_sub(base);
    println!("{}", grown as f64 / (n - quarter) as f64);
    drop((servers, clients));
    Ok(())
}
