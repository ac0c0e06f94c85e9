//! Fresh mode: a post-handshake, exporter-bound challenge/response attestation exchange.
//!
//! After a full TLS 1.3 handshake that negotiated the ALPN [`ALPN_ATTEST`](super::ALPN_ATTEST),
//! each side may ask the other for evidence: it sends a 32-byte challenge of its own choosing and
//! the SHA-256 of the peer's certificate key as it saw it. The attester answers with an evidence
//! bundle (IMA log inline) whose binding claims carry that challenge and
//! `TLS-Exporter("EXPORTER-cosmian-vm-attest-v1-<role>", challenge, 32)` of this session; the
//! verifier recomputes the exporter with the role it expects and its own challenge. Binding =
//! session, freshness = challenge. The byte layout and the order of frames are in
//! `docs/wire-format.md`, section 4.
//!
//! The core here is sans-IO: the frame codec ([`Message`], [`FrameDecoder`]) and one type per
//! side of the exchange, each created from a completed TLS session:
//!
//! - [`Inquiry`] (the verifier): checks the session, reads the peer key, draws the
//!   [`Challenge`] and computes its exporter; gives the REQUEST and verifies the answer into a
//!   [`Verdict`].
//! - [`Answer`] (the attester): accepts a REQUEST (a key we hold, a random-looking challenge)
//!   or gives the [`Decline`] reason; [`Answer::bind`] adds the session's exporter and
//!   [`Bound::produce`] the evidence, within a size cap.
//!
//! With the feature `tokio`, `client_exchange` and `server_exchange` run the whole exchange
//! with these on a `tokio-rustls` stream, after which application bytes follow on the same
//! stream. The agent's `POST /api/v1/evidence` and the CLI's agent client use the same types
//! over HTTP.

#[cfg(feature = "tokio")]
mod driver;
mod frame;
#[cfg(feature = "tokio")]
pub mod live;

use core::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::{CommonState, ConnectionCommon, HandshakeKind, ProtocolVersion};

#[cfg(feature = "tokio")]
pub use self::driver::{client_exchange, server_exchange, Session};
pub use self::frame::{
    EvidenceRequest, FrameDecoder, FrameError, FrameType, Message, FLAG_WANT_EVIDENCE, HEADER_LEN,
    MAX_CONTROL_LEN, MAX_DATA_LEN, REQUEST_VERSION,
};
use super::policy::AttestationPolicy;
use super::rejection::AttestationRejected;
use crate::attest::{AttestError, Attester, Batcher};
use crate::binding::{exporter_label, spki_sha256, BindingClaims, Role, NONCE_LEN};
use crate::time::UnixTime;
use crate::verdict::Verdict;

/// A verifier's challenge: 32 bytes from the system's secure random generator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Challenge([u8; NONCE_LEN]);

impl Challenge {
    /// A new random challenge (`ring::rand::SystemRandom`).
    pub fn new() -> Result<Self, FreshError> {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; NONCE_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| FreshError::Random)?;
        Ok(Self(bytes))
    }

    /// A given value (tests; a verifier never reuses a challenge).
    pub fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Challenge({})", crate::hexfmt::hex(self.0))
    }
}

/// The keys an attester holds: it binds evidence only to one of them, and declines otherwise.
pub trait KeyHolder: Send + Sync + fmt::Debug {
    /// Whether `spki_sha256` is SHA-256 of the DER SubjectPublicKeyInfo of a key we hold.
    fn holds(&self, spki_sha256: &[u8; 32]) -> bool;
}

/// One fixed key (a certificate that does not rotate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedKey {
    pub spki_sha256: [u8; 32],
}

impl FixedKey {
    /// The key whose DER SubjectPublicKeyInfo is `spki_der`.
    pub fn from_spki_der(spki_der: &[u8]) -> Self {
        Self {
            spki_sha256: spki_sha256(spki_der),
        }
    }
}

impl KeyHolder for FixedKey {
    fn holds(&self, spki_sha256: &[u8; 32]) -> bool {
        // Public-key hashes are public: a plain comparison.
        &self.spki_sha256 == spki_sha256
    }
}

/// The current key of a rotating certificate, or one of the few before it (a connection set up
/// just before a rotation still asks about the key it saw).
#[cfg(feature = "issue")]
impl KeyHolder for super::RotatingCert {
    fn holds(&self, spki_sha256: &[u8; 32]) -> bool {
        self.holds_spki(spki_sha256)
    }
}

/// How this endpoint attests itself when the peer asks.
#[derive(Debug, Clone)]
pub struct SelfAttestation {
    /// The machine's evidence sources, behind the batcher every session of this endpoint shares
    /// (one TEE report and one TPM quote for all the sessions that ask while one is being made).
    pub batcher: Arc<Batcher>,
    /// The role the evidence is bound to (`server` for a TLS server, `client` for a TLS client).
    pub role: Role,
    /// The keys we hold: a request about any other key is declined.
    pub keys: Arc<dyn KeyHolder>,
}

impl SelfAttestation {
    /// Attest as `role` for the keys `keys` holds, with a new batcher over `attester` (share
    /// the result: clones share the batcher).
    pub fn new(attester: Arc<Attester>, role: Role, keys: Arc<dyn KeyHolder>) -> Self {
        Self {
            batcher: Arc::new(Batcher::new(attester)),
            role,
            keys,
        }
    }

    /// Our [`Answer`] to the peer's `request`, or why we decline it.
    pub fn answer(&self, request: EvidenceRequest) -> Result<Answer, Decline> {
        Answer::new(request, self.role.clone(), self.keys.as_ref())
    }
}

/// What one side of the exchange does.
#[derive(Debug, Clone)]
pub struct FreshOptions {
    /// Ask the peer for evidence and verify it against this policy.
    pub verify_peer: Option<AttestationPolicy>,
    /// Answer the peer's request for evidence (otherwise a request is declined).
    pub attest_self: Option<SelfAttestation>,
    /// The largest EVIDENCE frame accepted (and produced).
    pub max_evidence_len: usize,
    /// The whole exchange must finish within this time.
    pub timeout: Duration,
    /// Offer to keep the session live after the exchange (framed, re-attestable; see
    /// [`live`]): `None` never goes live.
    pub live: Option<LiveOptions>,
}

/// How a side runs a live session (`docs/wire-format.md`, section 4, "Live sessions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveOptions {
    /// Re-attest the peer this often (only when this side verifies the peer); `None`: only
    /// answer the peer's re-attestation requests.
    pub interval: Option<Duration>,
    /// How long the peer has to answer a re-attestation request: past it the session is cut.
    pub answer_timeout: Duration,
    /// The fewest seconds between two of the peer's re-attestation requests this side answers:
    /// a peer asking faster is cut (it would have this side's TPM and TEE sign on demand).
    pub min_peer_interval: Duration,
}

impl LiveOptions {
    /// Only answer the peer's requests (at most one per second), 30 seconds to answer ours.
    pub fn answering() -> Self {
        Self {
            interval: None,
            answer_timeout: Duration::from_secs(30),
            min_peer_interval: Duration::from_secs(1),
        }
    }

    /// Re-attest the peer every `interval` (and answer its requests).
    pub fn every(interval: Duration) -> Self {
        Self {
            interval: Some(interval),
            ..Self::answering()
        }
    }
}

impl FreshOptions {
    /// Neither asking nor answering, [`crate::bundle::MAX_BUNDLE_LEN`], 60 seconds.
    pub fn new() -> Self {
        Self {
            verify_peer: None,
            attest_self: None,
            max_evidence_len: crate::bundle::MAX_BUNDLE_LEN,
            timeout: Duration::from_secs(60),
            live: None,
        }
    }

    pub fn verify_peer(mut self, policy: AttestationPolicy) -> Self {
        self.verify_peer = Some(policy);
        self
    }

    pub fn attest_self(mut self, me: SelfAttestation) -> Self {
        self.attest_self = Some(me);
        self
    }
}

impl Default for FreshOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// What the exchange established.
#[derive(Debug, Clone)]
pub struct FreshOutcome {
    /// The trusted verdict on the peer's evidence, when we asked for it.
    pub peer_verdict: Option<Verdict>,
    /// Whether the peer accepted our evidence, when it asked for it (always `Some(true)` on
    /// success: a rejection is an error).
    pub we_were_accepted: Option<bool>,
    /// The session is live: both sides sent LIVE and one wants re-attestation. Every later
    /// byte is framed: run [`live::run`] on the stream instead of reading it directly.
    pub live: bool,
}

/// Why the exchange failed. Every variant fails the connection: nothing is trusted after one.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FreshError {
    #[error(
        "fresh.alpn: the ALPN {:?} was not negotiated (presented {})",
        String::from_utf8_lossy(super::ALPN_ATTEST),
        presented.as_deref().unwrap_or("none")
    )]
    AlpnNotNegotiated { presented: Option<String> },
    #[error(
        "fresh.version: the session is not TLS 1.3 (presented {presented}); exporters need TLS 1.3"
    )]
    NotTls13 { presented: String },
    #[error("fresh.resumed: the session was resumed; a resumed session carries no new evidence")]
    Resumed,
    #[error("fresh.handshake: the TLS handshake has not completed")]
    HandshakeIncomplete,
    #[error("fresh.peer_certificate: {0}")]
    PeerCertificate(String),
    #[error("fresh.random: the system random generator failed")]
    Random,
    #[error("fresh.exporter: {0}")]
    Exporter(rustls::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("fresh.io: {what}: {error}")]
    Io {
        what: &'static str,
        error: Arc<std::io::Error>,
    },
    #[error("fresh.order: expected {expected}, the peer sent {presented}")]
    Unexpected {
        expected: &'static str,
        presented: &'static str,
    },
    #[error("fresh.declined: the peer declined to attest: {0}")]
    PeerDeclined(String),
    #[error("fresh.declined: we declined to attest: {0}")]
    WeDeclined(String),
    /// The peer's evidence failed verification; the verdict names the step.
    #[error("{0}")]
    Rejected(AttestationRejected),
    #[error("fresh.result: the peer rejected our evidence: {0}")]
    PeerRejectedUs(String),
    #[error("fresh.produce: {0}")]
    Produce(AttestError),
    #[error("fresh.timeout: the exchange did not finish within {0:?}")]
    Timeout(Duration),
    #[error("fresh.task: {0}")]
    Task(String),
}

impl FreshError {
    /// The failed verification step, when the peer's evidence was rejected.
    pub fn rejected_step(&self) -> Option<&str> {
        match self {
            Self::Rejected(r) => Some(r.step().as_str()),
            _ => None,
        }
    }

    /// The verdict, when the peer's evidence was rejected.
    pub fn verdict(&self) -> Option<&Verdict> {
        match self {
            Self::Rejected(r) => Some(&r.verdict),
            _ => None,
        }
    }
}

/// Refuse sessions the exchange cannot bind to: the ALPN [`ALPN_ATTEST`](super::ALPN_ATTEST)
/// must have been negotiated, the version must be TLS 1.3 (RFC 8446 exporters) and the
/// handshake must be full (not resumed).
pub fn check_session(conn: &CommonState) -> Result<(), FreshError> {
    if conn.is_handshaking() {
        return Err(FreshError::HandshakeIncomplete);
    }
    match conn.alpn_protocol() {
        Some(p) if p == super::ALPN_ATTEST => {}
        other => {
            return Err(FreshError::AlpnNotNegotiated {
                presented: other.map(|p| String::from_utf8_lossy(p).into_owned()),
            })
        }
    }
    check_exporter_session(conn)
}

/// What [`check_session`] asks except the ALPN: a completed, full (not resumed) TLS 1.3
/// handshake, so the session's exporter is its own. For exchanges carried over another
/// protocol (the agent's HTTPS API).
pub fn check_exporter_session(conn: &CommonState) -> Result<(), FreshError> {
    if conn.is_handshaking() {
        return Err(FreshError::HandshakeIncomplete);
    }
    match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => {}
        other => {
            return Err(FreshError::NotTls13 {
                presented: other.map_or("none".to_owned(), |v| format!("{v:?}")),
            })
        }
    }
    match conn.handshake_kind() {
        Some(HandshakeKind::Full | HandshakeKind::FullWithHelloRetryRequest) => Ok(()),
        Some(HandshakeKind::Resumed) => Err(FreshError::Resumed),
        None => Err(FreshError::HandshakeIncomplete),
    }
}

/// `TLS-Exporter("EXPORTER-cosmian-vm-attest-v1-<role>", challenge, 32)` of this session (works
/// for client and server connections alike).
pub fn exporter<D>(
    conn: &ConnectionCommon<D>,
    role: &Role,
    challenge: &[u8; NONCE_LEN],
) -> Result<[u8; NONCE_LEN], FreshError> {
    conn.export_keying_material(
        [0u8; NONCE_LEN],
        exporter_label(role).as_bytes(),
        Some(challenge),
    )
    .map_err(FreshError::Exporter)
}

/// The DER SubjectPublicKeyInfo of the peer's end-entity certificate.
pub fn peer_spki(conn: &CommonState) -> Result<Vec<u8>, FreshError> {
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| FreshError::PeerCertificate("the peer presented no certificate".into()))?;
    let cert = crate::pki::Cert::from_der_with_limit(cert, crate::pki::MAX_RATLS_CERT_LEN)
        .map_err(|e| FreshError::PeerCertificate(e.to_string()))?;
    Ok(cert.spki_der().to_vec())
}

/// The verifier's REQUEST: its challenge and the SHA-256 of the peer key it saw.
pub fn evidence_request(challenge: &Challenge, peer_spki_der: &[u8]) -> Message {
    Message::Request(Some(EvidenceRequest {
        challenge: *challenge.as_bytes(),
        spki_sha256: spki_sha256(peer_spki_der),
    }))
}

/// Why an attester declines a REQUEST (the text goes into the DECLINE frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Decline {
    /// This endpoint is not configured to attest itself.
    #[error("this endpoint does not attest itself")]
    NotAttesting,
    /// The request is about a key this endpoint does not hold: the verifier saw another key
    /// (a relay), so evidence bound to ours would not help it, and evidence bound to the key it
    /// names would be a lie.
    #[error(
        "this endpoint does not hold the key with SPKI SHA-256 {}",
        crate::hexfmt::hex(spki_sha256)
    )]
    KeyNotHeld { spki_sha256: [u8; 32] },
    /// The challenge does not look random
    /// ([`challenge_is_random_looking`](crate::binding::challenge_is_random_looking)): a
    /// constant challenge gives the verifier no freshness, so we do not lend it a signature.
    #[error(
        "fresh.challenge: the challenge {} does not look random (all zero or too few distinct \
         bytes); send 32 bytes from a secure random generator",
        crate::hexfmt::hex(challenge)
    )]
    WeakChallenge { challenge: [u8; NONCE_LEN] },
}

/// The verifier's side of one exchange on a completed TLS session: the peer key it saw, its
/// challenge and its own exporter value, and the policy the answer must meet.
///
/// Created right after the handshake ([`new`](Self::new) for the ALPN exchange,
/// [`without_alpn`](Self::without_alpn) when the exchange is carried over another protocol,
/// such as the agent's HTTPS API), before any application byte. [`request`](Self::request) is
/// what to send; [`verify`](Self::verify) checks the answer.
#[derive(Debug, Clone)]
pub struct Inquiry {
    policy: AttestationPolicy,
    peer_spki_der: Vec<u8>,
    challenge: Challenge,
    exporter: [u8; NONCE_LEN],
}

impl Inquiry {
    /// For the exchange on a session that negotiated [`ALPN_ATTEST`](super::ALPN_ATTEST)
    /// ([`check_session`]): reads the peer key, draws a challenge and computes the exporter
    /// with the role the policy expects of the peer.
    pub fn new<D>(
        conn: &ConnectionCommon<D>,
        policy: AttestationPolicy,
    ) -> Result<Self, FreshError> {
        check_session(conn)?;
        Self::without_alpn(conn, policy)
    }

    /// As [`new`](Self::new), without the ALPN requirement ([`check_exporter_session`]): for
    /// an exchange carried over another protocol (the agent's HTTPS API).
    pub fn without_alpn<D>(
        conn: &ConnectionCommon<D>,
        policy: AttestationPolicy,
    ) -> Result<Self, FreshError> {
        check_exporter_session(conn)?;
        let peer_spki_der = peer_spki(conn)?;
        let challenge = Challenge::new()?;
        let exporter = exporter(conn, policy.peer_role(), challenge.as_bytes())?;
        Ok(Self {
            policy,
            peer_spki_der,
            challenge,
            exporter,
        })
    }

    /// The REQUEST frame: our challenge and the SHA-256 of the peer key we saw.
    pub fn request(&self) -> Message {
        evidence_request(&self.challenge, &self.peer_spki_der)
    }

    /// The request as a struct (a REATTEST carries it).
    pub fn evidence_request(&self) -> EvidenceRequest {
        EvidenceRequest {
            challenge: *self.challenge.as_bytes(),
            spki_sha256: spki_sha256(&self.peer_spki_der),
        }
    }

    /// Verify an answer that may carry an IMA delta, continuing from `anchor` (what this
    /// verifier checked before on this session).
    pub fn verify_continuing(
        &self,
        evidence: &[u8],
        anchor: Option<&crate::ima::ImaAnchor>,
        now: UnixTime,
    ) -> Verdict {
        let mut expect = self
            .policy
            .expectations(&self.peer_spki_der, now);
        expect.challenge = Some(*self.challenge.as_bytes());
        expect.exporter = Some(self.exporter);
        expect.ima_anchor = anchor;
        crate::bundle::verify(evidence, self.policy.policy(), &expect)
    }

    /// Our challenge (sent as hex over HTTP).
    pub fn challenge(&self) -> &Challenge {
        &self.challenge
    }

    /// The DER SubjectPublicKeyInfo of the peer's certificate on this session.
    pub fn peer_spki_der(&self) -> &[u8] {
        &self.peer_spki_der
    }

    /// The policy the answer is verified against.
    pub fn policy(&self) -> &AttestationPolicy {
        &self.policy
    }

    /// Verify the peer's EVIDENCE payload ([`verify_response`] with what this inquiry holds).
    pub fn verify(&self, evidence: &[u8], now: UnixTime) -> Verdict {
        verify_response(
            evidence,
            &self.policy,
            &self.peer_spki_der,
            &self.challenge,
            self.exporter,
            now,
        )
    }
}

/// The attester's side: a peer's REQUEST this endpoint agreed to answer, as `role` (the key is
/// one it holds, the challenge looks random). [`bind`](Self::bind) adds the session's exporter;
/// [`Bound::produce`] makes the evidence.
#[derive(Debug, Clone)]
pub struct Answer {
    request: EvidenceRequest,
    role: Role,
}

impl Answer {
    /// Accept `request` as `role` when `keys` holds the key it names and its challenge looks
    /// random; otherwise the [`Decline`] reason.
    pub fn new(
        request: EvidenceRequest,
        role: Role,
        keys: &dyn KeyHolder,
    ) -> Result<Self, Decline> {
        if !keys.holds(&request.spki_sha256) {
            return Err(Decline::KeyNotHeld {
                spki_sha256: request.spki_sha256,
            });
        }
        if !crate::binding::challenge_is_random_looking(&request.challenge) {
            return Err(Decline::WeakChallenge {
                challenge: request.challenge,
            });
        }
        Ok(Self { request, role })
    }

    /// The accepted request.
    pub fn request(&self) -> &EvidenceRequest {
        &self.request
    }

    /// The binding claims on `conn`'s session: a completed, full TLS 1.3 handshake
    /// ([`check_exporter_session`]), the exporter for our role and the peer's challenge, issued
    /// at `now`.
    pub fn bind<D>(self, conn: &ConnectionCommon<D>, now: UnixTime) -> Result<Bound, FreshError> {
        check_exporter_session(conn)?;
        let exporter = exporter(conn, &self.role, &self.request.challenge)?;
        Ok(self.bind_exporter(exporter, now))
    }

    /// The binding claims with a given `exporter` (=
    /// [`exporter`]`(conn, role, challenge)`; sans-IO callers and tests).
    pub fn bind_exporter(self, exporter: [u8; NONCE_LEN], now: UnixTime) -> Bound {
        Bound(BindingClaims {
            role: self.role,
            spki_sha256: self.request.spki_sha256,
            ak_sha256: None,
            issued_at: now.as_secs(),
            challenge: Some(self.request.challenge),
            exporter: Some(exporter),
        })
    }
}

/// The binding claims of an [`Answer`] bound to a session: what the evidence signs.
#[derive(Debug, Clone)]
pub struct Bound(BindingClaims);

impl Bound {
    pub fn claims(&self) -> &BindingClaims {
        &self.0
    }

    pub fn into_claims(self) -> BindingClaims {
        self.0
    }

    /// The EVIDENCE payload, at most `max_evidence_len` bytes: the batched evidence `batcher`
    /// makes for these claims (one report and quote for every session that asks meanwhile).
    /// Blocking (TPM, TEE): async callers run it with `spawn_blocking`.
    pub fn produce(
        self,
        batcher: &Batcher,
        max_evidence_len: usize,
    ) -> Result<Vec<u8>, AttestError> {
        capped(batcher.produce(self.0)?.to_cmw(), max_evidence_len)
    }

    /// As [`produce`](Self::produce), with only the IMA log entries from index `ima_from` on
    /// (a re-attestation: the verifier checked the ones before). The batch still makes one
    /// report and one quote for every session asking meanwhile; only this answer is cut.
    pub fn produce_delta(
        self,
        batcher: &Batcher,
        max_evidence_len: usize,
        ima_from: u64,
    ) -> Result<Vec<u8>, AttestError> {
        let mut bundle = batcher.produce(self.0)?;
        // From 0 the whole log goes (the verifier anchored nothing yet).
        if let (Some(crate::bundle::ImaEvidence::Log(bytes)), 1..) = (&bundle.ima, ima_from) {
            let from = usize::try_from(ima_from).unwrap_or(usize::MAX);
            let tail = match crate::ima::Log::binary_tail(bytes, from) {
                Some(tail) => tail.to_vec(),
                None => crate::ima::Log::parse(bytes)
                    .map_err(|e| AttestError::BadResponse {
                        what: "IMA log",
                        why: e.to_string(),
                    })?
                    .tail(from)
                    .to_binary(),
            };
            bundle.ima = Some(crate::bundle::ImaEvidence::Delta {
                from: ima_from,
                log: serde_bytes::ByteBuf::from(tail),
            });
        }
        capped(bundle.to_cmw(), max_evidence_len)
    }
}

/// Produce an unbatched EVIDENCE payload (the CMW bundle, IMA log inline, one report and one
/// quote for `binding` alone), refused when larger than `max_evidence_len`. No check on
/// `binding`: [`Answer`] makes the claims an honest attester signs. Blocking (TPM, TEE).
/// Endpoints answer through [`Bound::produce`]; this is for tests and comparisons.
pub fn respond(
    attester: &Attester,
    binding: BindingClaims,
    max_evidence_len: usize,
) -> Result<Vec<u8>, AttestError> {
    capped(
        attester
            .produce(binding, true)?
            .to_cmw(),
        max_evidence_len,
    )
}

fn capped(cmw: Vec<u8>, max_evidence_len: usize) -> Result<Vec<u8>, AttestError> {
    if cmw.len() > max_evidence_len {
        return Err(AttestError::TooLarge {
            size: cmw.len(),
            limit: max_evidence_len,
        });
    }
    Ok(cmw)
}

/// Verify an EVIDENCE payload: against `policy`, the peer key the verifier saw, its own
/// challenge and its own exporter value computed with the policy's peer role
/// ([`exporter`]`(conn, peer_role, challenge)`). Trusted verdicts say binding `session`,
/// freshness `challenge`. [`Inquiry::verify`] calls it with what it holds; this form is for
/// checking an answer against another session's values (tests of relays).
pub fn verify_response(
    cmw: &[u8],
    policy: &AttestationPolicy,
    peer_spki_der: &[u8],
    challenge: &Challenge,
    exporter: [u8; NONCE_LEN],
    now: UnixTime,
) -> Verdict {
    let mut expect = policy.expectations(peer_spki_der, now);
    expect.challenge = Some(*challenge.as_bytes());
    expect.exporter = Some(exporter);
    crate::bundle::verify(cmw, policy.policy(), &expect)
}

/// The RESULT a verifier sends for `verdict`: on rejection the message names the failed step,
/// expected and presented.
pub fn result_for(verdict: &Verdict) -> Message {
    if verdict.is_trusted() {
        Message::Result {
            ok: true,
            message: "accepted".into(),
        }
    } else {
        Message::Result {
            ok: false,
            message: AttestationRejected {
                verdict: Arc::new(verdict.clone()),
            }
            .to_string(),
        }
    }
}

#[cfg(test)]
mod tests;
