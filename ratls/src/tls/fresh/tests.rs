use super::*;

const MAX: usize = 1024 * 1024;

fn samples() -> Vec<Message> {
    vec![
        Message::Request(None),
        Message::Request(Some(EvidenceRequest {
            challenge: [0xc1; 32],
            spki_sha256: [0x5b; 32],
        })),
        Message::Evidence(b"\x82\x78\x05cmw-bytes".to_vec()),
        Message::Evidence(Vec::new()),
        Message::Decline("this endpoint does not hold that key".into()),
        Message::Result {
            ok: true,
            message: "accepted".into(),
        },
        Message::Result {
            ok: false,
            message: "attestation rejected at binding.exporter: expected …".into(),
        },
        Message::Live { wants: true },
        Message::Live { wants: false },
        Message::Data(b"application bytes".to_vec()),
        Message::Data(Vec::new()),
        Message::Reattest {
            request: EvidenceRequest {
                challenge: [0xc2; 32],
                spki_sha256: [0x5c; 32],
            },
            ima_from: 100_002,
        },
    ]
}

#[test]
fn frames_round_trip_whole_and_byte_by_byte() {
    for m in samples() {
        let bytes = m.encode(MAX).unwrap();
        assert_eq!(bytes.first(), Some(&m.kind().code()));
        let (back, rest) = Message::decode(&bytes, MAX).unwrap();
        assert_eq!(back, m);
        assert!(rest.is_empty());

        let mut d = FrameDecoder::new(MAX);
        let mut got = None;
        for (i, b) in bytes.iter().enumerate() {
            assert!(got.is_none(), "{m:?}: complete before byte {i}");
            let (used, out) = d.feed(&[*b]).unwrap();
            assert_eq!(used, 1);
            got = out;
        }
        assert_eq!(got.as_ref(), Some(&m));
    }
}

#[test]
fn the_decoder_never_reads_past_a_frame() {
    let mut stream = Message::Request(None)
        .encode(MAX)
        .unwrap();
    let result = Message::Result {
        ok: true,
        message: "accepted".into(),
    };
    stream.extend(result.encode(MAX).unwrap());
    stream.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let (first, rest) = Message::decode(&stream, MAX).unwrap();
    assert_eq!(first, Message::Request(None));
    let mut d = FrameDecoder::new(MAX);
    assert_eq!(d.want(), HEADER_LEN);
    let (used, second) = d.feed(rest).unwrap();
    assert_eq!(second, Some(result));
    assert_eq!(rest.get(used..), Some(&b"GET / HTTP/1.1\r\n"[..]));
}

#[test]
fn truncated_oversized_and_unknown_frames_are_typed_errors() {
    for m in samples() {
        let bytes = m.encode(MAX).unwrap();
        for cut in 0..bytes.len() {
            match Message::decode(&bytes[..cut], MAX) {
                Err(FrameError::Truncated { needed }) => assert!(needed >= 1),
                other => panic!("{m:?} cut at {cut}: {other:?}"),
            }
        }
    }
    // The header's length is checked before any payload byte: a 4 GiB EVIDENCE is refused with
    // nothing but the header.
    let huge = [0x02, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        Message::decode(&huge, MAX).unwrap_err(),
        FrameError::TooLarge {
            kind: FrameType::Evidence,
            len: 0xffff_ffff,
            limit: MAX
        }
    );
    // Control frames are capped at 4 KiB whatever the evidence cap.
    let mut d = FrameDecoder::new(MAX);
    assert!(matches!(
        d.feed(&[0x03, 0, 0, 0x10, 0x01]),
        Err(FrameError::TooLarge {
            kind: FrameType::Decline,
            len: 4097,
            limit: MAX_CONTROL_LEN
        })
    ));
    for code in [0x00, 0x08, 0x7f, 0xff] {
        assert_eq!(
            Message::decode(&[code, 0, 0, 0, 0], MAX).unwrap_err(),
            FrameError::UnknownType(code)
        );
    }
    // DATA frames are capped at 16 KiB.
    assert!(matches!(
        FrameDecoder::new(MAX).feed(&[0x06, 0, 0, 0x40, 0x01]),
        Err(FrameError::TooLarge {
            kind: FrameType::Data,
            len: 16385,
            limit: MAX_DATA_LEN
        })
    ));
    // Evidence over the cap is not produced either.
    assert!(matches!(
        Message::Evidence(vec![0; 11]).encode(10),
        Err(FrameError::TooLarge {
            len: 11,
            limit: 10,
            ..
        })
    ));
    // Long text is cut at a character boundary, within the cap.
    let long = Message::Decline("é".repeat(3000))
        .encode(MAX)
        .unwrap();
    assert!(long.len() <= HEADER_LEN + MAX_CONTROL_LEN);
    assert!(matches!(
        Message::decode(&long, MAX).unwrap().0,
        Message::Decline(s) if s.chars().all(|c| c == 'é')
    ));
}

#[test]
fn malformed_payloads_name_the_field() {
    let frame = |kind: u8, payload: &[u8]| {
        let mut out = vec![kind];
        out.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap()
                .to_be_bytes(),
        );
        out.extend_from_slice(payload);
        out
    };
    let cases: [(&[u8], u8, &str); 7] = [
        (&[2, 0], 0x01, "version"),
        (&[1, 0x02], 0x01, "flags"),
        (&[1, 1, 0xaa], 0x01, "challenge"),
        (&[1, 0, 0], 0x01, "trailing"),
        (&[2], 0x04, "ok"),
        (&[], 0x04, "ok"),
        (&[1, 0xff, 0xfe], 0x04, "UTF-8"),
    ];
    for (payload, kind, needle) in cases {
        let err = Message::decode(&frame(kind, payload), MAX).unwrap_err();
        assert!(
            err.to_string().contains(needle),
            "{payload:?}: {err} lacks {needle}"
        );
    }
    assert_eq!(
        Message::decode(&frame(0x03, &[0xc3]), MAX).unwrap_err(),
        FrameError::NotUtf8 {
            kind: FrameType::Decline
        }
    );
}

#[test]
fn mutated_frames_never_panic() {
    for m in samples() {
        let bytes = m.encode(MAX).unwrap();
        let mutations = ratls_test::Mutations::of(&bytes, 0xf7e5, 200);
        assert!(mutations.count() > 50);
        for (name, input) in mutations.iter() {
            // Whole input, and fed in uneven chunks: the same outcome either way.
            let whole = Message::decode(input, 4096);
            let mut d = FrameDecoder::new(4096);
            let mut chunked = None;
            let mut at = 0;
            let mut step = 1;
            while at < input.len() {
                let end = (at + step).min(input.len());
                match d.feed(&input[at..end]) {
                    Ok((used, Some(msg))) => {
                        chunked = Some(Ok(msg));
                        at += used;
                        break;
                    }
                    Ok((used, None)) => at += used,
                    Err(e) => {
                        chunked = Some(Err(e));
                        break;
                    }
                }
                step = step * 3 % 17 + 1;
            }
            match (whole, chunked) {
                (Ok((a, rest)), Some(Ok(b))) => {
                    assert_eq!(a, b, "{name}");
                    assert_eq!(rest.len(), input.len() - at, "{name}");
                }
                (Err(a), Some(Err(b))) => assert_eq!(a, b, "{name}"),
                (Err(FrameError::Truncated { .. }), None) => {}
                (a, b) => panic!("{name}: whole {a:?}, chunked {b:?}"),
            }
        }
    }
}

#[test]
fn challenges_are_random_and_requests_carry_the_peer_key_hash() {
    let a = Challenge::new().unwrap();
    let b = Challenge::new().unwrap();
    assert_ne!(a, b);
    let spki = b"peer SubjectPublicKeyInfo";
    match evidence_request(&a, spki) {
        Message::Request(Some(r)) => {
            assert_eq!(&r.challenge, a.as_bytes());
            assert_eq!(r.spki_sha256, spki_sha256(spki));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_responder_declines_keys_it_does_not_hold() {
    let keys = FixedKey::from_spki_der(b"our key");
    let challenge = *Challenge::new().unwrap().as_bytes();
    let mut request = EvidenceRequest {
        challenge,
        spki_sha256: spki_sha256(b"our key"),
    };
    let now = UnixTime::from_secs(1_800_000_000);
    let bind = |request: &EvidenceRequest| {
        Answer::new(*request, Role::server(), &keys)
            .map(|a| {
                a.bind_exporter([9; 32], now)
                    .into_claims()
            })
            .map_err(|d| d.to_string())
    };
    let b = bind(&request).unwrap();
    assert_eq!(b.role, Role::server());
    assert_eq!(b.spki_sha256, spki_sha256(b"our key"));
    assert_eq!(b.challenge, Some(challenge));
    assert_eq!(b.exporter, Some([9; 32]));
    assert_eq!(b.issued_at, 1_800_000_000);
    assert_eq!(b.ak_sha256, None);

    request.spki_sha256 = spki_sha256(b"someone else's key");
    let reason = bind(&request).unwrap_err();
    assert!(reason.contains("does not hold"), "{reason}");
}

#[test]
fn a_responder_declines_challenges_that_do_not_look_random() {
    let keys = FixedKey::from_spki_der(b"our key");
    let now = UnixTime::from_secs(1_800_000_000);
    let mut counter = [0u8; 32];
    counter[31] = 1;
    let mut few = [0u8; 32];
    for (i, b) in few.iter_mut().enumerate() {
        *b = (i % 4) as u8;
    }
    for weak in [[0u8; 32], [0xff; 32], counter, few] {
        let request = EvidenceRequest {
            challenge: weak,
            spki_sha256: spki_sha256(b"our key"),
        };
        let reason = Answer::new(request, Role::server(), &keys)
            .map(|a| a.bind_exporter([9; 32], now))
            .unwrap_err()
            .to_string();
        assert!(reason.contains("fresh.challenge"), "{reason}");
    }
}

#[test]
fn garbage_evidence_fails_at_bundle_parse_and_the_result_names_it() {
    let policy = AttestationPolicy::for_server(crate::Policy::default());
    let challenge = Challenge::from_bytes([1; 32]);
    let v = verify_response(
        b"not a bundle",
        &policy,
        b"spki",
        &challenge,
        [2; 32],
        UnixTime::now(),
    );
    assert!(!v.is_trusted());
    match result_for(&v) {
        Message::Result { ok: false, message } => {
            assert!(message.contains("bundle.parse"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[cfg(feature = "tokio")]
mod tls {
    //! The driver's refusals and the plain exchange on real TLS sessions (in-memory duplex
    //! pipes, self-signed certificates; no evidence involved).

    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::super::*;
    use crate::tls::{AttestedServerVerifier, Mode, ALPN_ATTEST};

    type Client = tokio_rustls::client::TlsStream<tokio::io::DuplexStream>;
    type Server = tokio_rustls::server::TlsStream<tokio::io::DuplexStream>;

    fn server_config(alpn: &[&[u8]]) -> ServerConfig {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], key)
            .unwrap();
        config.alpn_protocols = alpn
            .iter()
            .map(|p| p.to_vec())
            .collect();
        config
    }

    fn fresh_verifier() -> Arc<AttestedServerVerifier> {
        Arc::new(AttestedServerVerifier::new(
            AttestationPolicy::for_server(crate::Policy::default()),
            Mode::Fresh,
        ))
    }

    fn client_config(alpn: &[&[u8]]) -> ClientConfig {
        crate::tls::client_config(
            fresh_verifier(),
            None,
            alpn.iter()
                .map(|p| p.to_vec())
                .collect(),
        )
        .unwrap()
    }

    async fn connect(client: Arc<ClientConfig>, server: Arc<ServerConfig>) -> (Client, Server) {
        let (c, s) = ratls_test::tls::duplex(client, server, "localhost").await;
        (c.unwrap(), s.unwrap())
    }

    fn asking() -> FreshOptions {
        FreshOptions::new().verify_peer(AttestationPolicy::for_server(crate::Policy::default()))
    }

    #[tokio::test]
    async fn without_the_alpn_the_driver_refuses() {
        let (mut c, mut s) = connect(
            Arc::new(client_config(&[b"h2"])),
            Arc::new(server_config(&[b"h2"])),
        )
        .await;
        let err = client_exchange(&mut c, &asking())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FreshError::AlpnNotNegotiated { presented: Some(p) } if p == "h2"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("fresh.alpn"),
            "{err}"
        );
        let err = server_exchange(&mut s, &FreshOptions::new())
            .await
            .unwrap_err();
        assert!(matches!(err, FreshError::AlpnNotNegotiated { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_resumed_session_is_refused() {
        // Resumption enabled on purpose (the attested configurations turn it off).
        let mut client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(fresh_verifier())
            .with_no_client_auth();
        client.alpn_protocols = vec![ALPN_ATTEST.to_vec()];
        let client = Arc::new(client);
        let server = Arc::new(server_config(&[ALPN_ATTEST]));

        let (mut c, mut s) = connect(client.clone(), server.clone()).await;
        // Drive the session so the client receives its tickets.
        let opts = FreshOptions::new();
        let (a, b) = tokio::join!(
            client_exchange(&mut c, &opts),
            server_exchange(&mut s, &opts)
        );
        a.unwrap();
        b.unwrap();
        s.write_all(b"x").await.unwrap();
        s.flush().await.unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.unwrap();

        let (mut c, mut s) = connect(client, server).await;
        assert_eq!(
            c.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
        let err = client_exchange(&mut c, &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, FreshError::Resumed), "{err}");
        let err = server_exchange(&mut s, &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, FreshError::Resumed), "{err}");
    }

    #[tokio::test]
    async fn nobody_asking_is_a_no_op_and_application_bytes_follow() {
        let (mut c, mut s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let opts = FreshOptions::new();
        let (a, b) = tokio::join!(
            async {
                let out = client_exchange(&mut c, &opts).await;
                c.write_all(b"ping").await.unwrap();
                c.flush().await.unwrap();
                out
            },
            async {
                let out = server_exchange(&mut s, &opts).await;
                s.write_all(b"pong").await.unwrap();
                s.flush().await.unwrap();
                out
            }
        );
        for out in [a.unwrap(), b.unwrap()] {
            assert!(out.peer_verdict.is_none());
            assert!(out.we_were_accepted.is_none());
        }
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_attest_declines() {
        let (mut c, mut s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let (ask, answer) = (asking(), FreshOptions::new());
        let (a, b) = tokio::join!(
            client_exchange(&mut c, &ask),
            server_exchange(&mut s, &answer)
        );
        let a = a.unwrap_err();
        assert!(
            matches!(&a, FreshError::PeerDeclined(r) if r.contains("does not attest")),
            "{a}"
        );
        assert!(matches!(b.unwrap_err(), FreshError::WeDeclined(_)));
    }

    #[tokio::test]
    async fn an_inquiry_and_an_answer_agree_on_the_session() {
        let (c, s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let policy = AttestationPolicy::for_server(crate::Policy::default());
        let inquiry = Inquiry::new(c.get_ref().1, policy).unwrap();
        let Message::Request(Some(request)) = inquiry.request() else {
            panic!("an inquiry asks for evidence");
        };
        assert_eq!(&request.challenge, inquiry.challenge().as_bytes());
        let spki = peer_spki(c.get_ref().1).unwrap();
        assert_eq!(inquiry.peer_spki_der(), spki.as_slice());
        assert_eq!(request.spki_sha256, spki_sha256(&spki));

        // The server binds the same exporter the client computed (role server), or declines a
        // key it does not hold.
        let keys = FixedKey::from_spki_der(&spki);
        let now = UnixTime::from_secs(1_800_000_000);
        let bound = Answer::new(request, Role::server(), &keys)
            .unwrap()
            .bind(s.get_ref().1, now)
            .unwrap();
        let mine = exporter(c.get_ref().1, &Role::server(), &request.challenge).unwrap();
        assert_eq!(bound.claims().exporter, Some(mine));
        assert_eq!(bound.claims().challenge, Some(request.challenge));
        let other = FixedKey::from_spki_der(b"another key");
        assert!(matches!(
            Answer::new(request, Role::server(), &other),
            Err(Decline::KeyNotHeld { .. })
        ));
    }

    #[tokio::test]
    async fn without_the_alpn_only_the_http_inquiry_starts() {
        let (c, _s) = connect(
            Arc::new(client_config(&[b"http/1.1"])),
            Arc::new(server_config(&[b"http/1.1"])),
        )
        .await;
        let policy = AttestationPolicy::for_server(crate::Policy::default());
        let err = Inquiry::new(c.get_ref().1, policy.clone()).unwrap_err();
        assert!(matches!(err, FreshError::AlpnNotNegotiated { .. }), "{err}");
        let inquiry = Inquiry::without_alpn(c.get_ref().1, policy).unwrap();
        assert!(!inquiry.peer_spki_der().is_empty());
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let (mut c, _s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let mut opts = asking();
        opts.timeout = std::time::Duration::from_millis(200);
        let err = client_exchange(&mut c, &opts)
            .await
            .unwrap_err();
        assert!(matches!(err, FreshError::Timeout(_)), "{err}");
    }

    // --- The client's evidence comes first: a server produces nothing for a stranger. ---

    /// A TEE that counts the reports asked of it and never produces one.
    #[derive(Debug, Default)]
    struct CountingTee(std::sync::atomic::AtomicUsize);

    impl CountingTee {
        fn count(&self) -> usize {
            self.0
                .load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl crate::attest::TeeAttester for CountingTee {
        fn kind(&self) -> crate::attest::TeeKind {
            crate::attest::TeeKind::SevSnp
        }

        fn attest(
            &self,
            _: &crate::binding::ReportData,
        ) -> Result<crate::bundle::TeeEvidence, AttestError> {
            self.0
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(AttestError::Unavailable {
                what: "the counting TEE",
                why: "it counts requests and produces nothing".into(),
            })
        }
    }

    struct Mutual {
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
        server_spki: Vec<u8>,
    }

    /// Mutual TLS 1.3 with self-signed certificates on both sides, ALPN cosmian-attest/1; the
    /// handshake checks signatures only (`Mode::Fresh`).
    fn mutual() -> Mutual {
        let pair = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(vec![name.into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            (cert.der().clone(), key, spki)
        };
        let (s_cert, s_key, server_spki) = pair("localhost");
        let (c_cert, c_key, _) = pair("client");
        let verifier = crate::tls::AttestedClientVerifier::new(
            AttestationPolicy::for_client(crate::Policy::default()),
            Mode::Fresh,
        );
        let mut server = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![s_cert], s_key)
            .unwrap();
        server.alpn_protocols = vec![ALPN_ATTEST.to_vec()];
        let mut client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(fresh_verifier())
            .with_client_auth_cert(vec![c_cert], c_key)
            .unwrap();
        client.alpn_protocols = vec![ALPN_ATTEST.to_vec()];
        Mutual {
            client: Arc::new(client),
            server: Arc::new(server),
            server_spki,
        }
    }

    /// A server that attests with `tee` (for the key it serves) and, with `ask`, requires the
    /// client's evidence.
    fn counting_server(tee: &Arc<CountingTee>, spki: &[u8], ask: bool) -> FreshOptions {
        let attester = crate::attest::Attester::new(
            Some(tee.clone() as Arc<dyn crate::attest::TeeAttester>),
            None,
            None,
        );
        let mut opts = FreshOptions::new().attest_self(SelfAttestation::new(
            Arc::new(attester),
            crate::binding::Role::server(),
            Arc::new(FixedKey::from_spki_der(spki)),
        ));
        if ask {
            opts.verify_peer = Some(AttestationPolicy::for_client(crate::Policy::default()));
        }
        opts
    }

    async fn read_any_frame<S: tokio::io::AsyncRead + Unpin>(
        c: &mut S,
    ) -> std::io::Result<Message> {
        let mut frame = vec![0u8; HEADER_LEN];
        c.read_exact(&mut frame).await?;
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        frame.resize(HEADER_LEN + len, 0);
        c.read_exact(&mut frame[HEADER_LEN..])
            .await?;
        Ok(Message::decode(&frame, super::MAX)
            .unwrap()
            .0)
    }

    fn live_verifier(every: Duration, answer: Duration) -> FreshOptions {
        let mut opts = asking();
        opts.live = Some(LiveOptions {
            answer_timeout: answer,
            ..LiveOptions::every(every)
        });
        opts
    }

    #[tokio::test]
    async fn a_live_session_frames_bytes_asks_again_and_cuts_a_peer_that_does_not_answer() {
        let (c, mut s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let server_spki = peer_spki(c.get_ref().1).unwrap();
        let (mut near, far) = tokio::io::duplex(4096);
        let opts = live_verifier(Duration::from_millis(50), Duration::from_millis(300));
        let session = tokio::spawn(async move { live::run(c, far, &opts, None, None).await });
        near.write_all(b"ping").await.unwrap();
        assert_eq!(
            read_any_frame(&mut s).await.unwrap(),
            Message::Data(b"ping".to_vec())
        );
        write_frame(&mut s, &Message::Data(b"pong".to_vec())).await;
        let mut pong = [0u8; 4];
        near.read_exact(&mut pong)
            .await
            .unwrap();
        assert_eq!(&pong, b"pong");
        // The interval passes: a new challenge about the same key, the whole log asked for.
        let Message::Reattest { request, ima_from } = read_any_frame(&mut s).await.unwrap() else {
            panic!("expected REATTEST")
        };
        assert_eq!(ima_from, 0);
        assert_eq!(
            request.spki_sha256,
            crate::binding::spki_sha256(&server_spki)
        );
        // No answer: cut off after the answer timeout.
        let started = std::time::Instant::now();
        let end = session.await.unwrap();
        assert!(
            matches!(end, live::LiveEnd::Timeout(d) if d == Duration::from_millis(300)),
            "{end:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // The application's side is closed with it.
        let mut rest = Vec::new();
        near.read_to_end(&mut rest)
            .await
            .unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_live_session_refuses_evidence_it_did_not_ask_for_and_declines_when_not_attesting() {
        for (sent, want) in [
            (Message::Evidence(b"unasked".to_vec()), "fresh.order"),
            (
                Message::Reattest {
                    request: EvidenceRequest {
                        challenge: *Challenge::new().unwrap().as_bytes(),
                        spki_sha256: [7; 32],
                    },
                    ima_from: 0,
                },
                "fresh.declined: we declined",
            ),
            (Message::Request(None), "fresh.order"),
        ] {
            let (c, mut s) = connect(
                Arc::new(client_config(&[ALPN_ATTEST])),
                Arc::new(server_config(&[ALPN_ATTEST])),
            )
            .await;
            let (_near, far) = tokio::io::duplex(4096);
            let mut opts = FreshOptions::new();
            opts.live = Some(LiveOptions::answering());
            let session = tokio::spawn(async move { live::run(c, far, &opts, None, None).await });
            write_frame(&mut s, &sent).await;
            let end = session.await.unwrap();
            let live::LiveEnd::Failed(e) = &end else {
                panic!("{end:?}")
            };
            assert!(e.to_string().starts_with(want), "{sent:?}: {e}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_live_session_carries_bulk_data_both_ways_at_once_without_deadlock() {
        // Both applications write 8 MiB while the other does too: neither side's session may
        // stop reading the network while its own writes wait (the pipes hold 64 KiB).
        const LEN: usize = 8 * 1024 * 1024;
        let (c, s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let mut opts = FreshOptions::new();
        opts.live = Some(LiveOptions::answering());
        let (near_c, far_c) = tokio::io::duplex(64 * 1024);
        let (near_s, far_s) = tokio::io::duplex(64 * 1024);
        let (oc, os) = (opts.clone(), opts.clone());
        let sc = tokio::spawn(async move { live::run(c, far_c, &oc, None, None).await });
        let ss = tokio::spawn(async move { live::run(s, far_s, &os, None, None).await });
        let app = |near: tokio::io::DuplexStream, fill: u8| async move {
            let (mut rd, mut wr) = tokio::io::split(near);
            let write = async move {
                wr.write_all(&vec![fill; LEN])
                    .await
                    .unwrap();
                wr.shutdown().await.unwrap();
            };
            let read = async move {
                let mut got = Vec::new();
                rd.read_to_end(&mut got).await.unwrap();
                got
            };
            tokio::join!(write, read).1
        };
        let both = tokio::time::timeout(Duration::from_secs(60), async {
            tokio::join!(app(near_c, 0xc1), app(near_s, 0x5e))
        })
        .await
        .expect("no deadlock: both directions complete");
        assert_eq!(both.0.len(), LEN);
        assert!(both.0.iter().all(|&b| b == 0x5e));
        assert_eq!(both.1.len(), LEN);
        assert!(both.1.iter().all(|&b| b == 0xc1));
        for end in [sc.await.unwrap(), ss.await.unwrap()] {
            assert!(matches!(end, live::LiveEnd::Closed), "{end:?}");
        }
    }

    #[tokio::test]
    async fn a_verifier_that_re_attests_refuses_a_peer_that_will_not_go_live() {
        let (mut c, mut s) = connect(
            Arc::new(client_config(&[ALPN_ATTEST])),
            Arc::new(server_config(&[ALPN_ATTEST])),
        )
        .await;
        let wants = live_verifier(Duration::from_secs(60), Duration::from_secs(5));
        // The server leaves LIVE out (an older or modified peer).
        let plain = FreshOptions::new();
        let (a, _) = tokio::join!(
            client_exchange(&mut c, &wants),
            server_exchange(&mut s, &plain)
        );
        let err = a.unwrap_err();
        assert!(
            err.to_string()
                .contains("LIVE before REQUEST"),
            "{err}"
        );
    }

    async fn write_frame<S: tokio::io::AsyncWrite + Unpin>(s: &mut S, m: &Message) {
        s.write_all(&m.encode(super::MAX).unwrap())
            .await
            .unwrap();
        s.flush().await.unwrap();
    }

    async fn read_frame(c: &mut Client) -> std::io::Result<Message> {
        read_any_frame(c).await
    }

    #[tokio::test]
    async fn a_server_that_asks_produces_nothing_for_a_client_that_declines() {
        let m = mutual();
        let (mut c, mut s) = connect(m.client, m.server).await;
        let tee = Arc::new(CountingTee::default());
        let server = counting_server(&tee, &m.server_spki, true);
        // The client asks for the server's evidence but does not attest itself.
        let ask = asking();
        let (a, b) = tokio::join!(
            client_exchange(&mut c, &ask),
            server_exchange(&mut s, &server)
        );
        let a = a.unwrap_err();
        assert!(matches!(a, FreshError::WeDeclined(_)), "{a}");
        let b = b.unwrap_err();
        assert!(
            matches!(&b, FreshError::PeerDeclined(r) if r.contains("does not attest")),
            "{b}"
        );
        assert_eq!(
            tee.count(),
            0,
            "the server produced evidence for a stranger"
        );
    }

    #[tokio::test]
    async fn a_server_that_asks_produces_nothing_for_rejected_client_evidence() {
        let m = mutual();
        let (mut c, mut s) = connect(m.client, m.server).await;
        let tee = Arc::new(CountingTee::default());
        let server = counting_server(&tee, &m.server_spki, true);
        // A hand-driven client: it asks for the server's evidence (about the right key), then
        // answers the server's request with garbage.
        let client = async {
            let challenge = Challenge::new().unwrap();
            let ask = evidence_request(&challenge, &m.server_spki);
            c.write_all(&ask.encode(super::MAX).unwrap())
                .await
                .unwrap();
            c.flush().await.unwrap();
            match read_frame(&mut c).await.unwrap() {
                Message::Request(Some(_)) => {}
                other => panic!("the server did not ask: {other:?}"),
            }
            c.write_all(
                &Message::Evidence(b"not a bundle".to_vec())
                    .encode(super::MAX)
                    .unwrap(),
            )
            .await
            .unwrap();
            c.flush().await.unwrap();
            let result = read_frame(&mut c).await.unwrap();
            // Nothing follows the RESULT: no EVIDENCE frame, the server is done.
            let next = read_frame(&mut c).await;
            (result, next)
        };
        let (server_out, (result, next)) = tokio::join!(
            async {
                let out = server_exchange(&mut s, &server).await;
                // The proxy closes a failed connection: so does this server.
                let _ = s.shutdown().await;
                out
            },
            client
        );
        let err = server_out.unwrap_err();
        assert_eq!(err.rejected_step(), Some("bundle.parse"), "{err}");
        assert!(
            matches!(&result, Message::Result { ok: false, message } if message.contains("bundle.parse")),
            "{result:?}"
        );
        assert!(next.is_err(), "a frame followed the RESULT: {next:?}");
        assert_eq!(
            tee.count(),
            0,
            "the server produced evidence for a stranger"
        );
    }

    #[tokio::test]
    async fn a_server_that_does_not_ask_produces_at_once() {
        // The control of the two tests above: the same server, not asking, does call its TEE
        // (which fails, so it declines).
        let m = mutual();
        let (mut c, mut s) = connect(m.client, m.server).await;
        let tee = Arc::new(CountingTee::default());
        let server = counting_server(&tee, &m.server_spki, false);
        let ask = asking();
        let (a, b) = tokio::join!(
            client_exchange(&mut c, &ask),
            server_exchange(&mut s, &server)
        );
        let a = a.unwrap_err();
        assert!(
            matches!(&a, FreshError::PeerDeclined(r) if r.contains("evidence production failed")),
            "{a}"
        );
        assert!(matches!(b.unwrap_err(), FreshError::Produce(_)));
        assert_eq!(tee.count(), 1);
    }
}
