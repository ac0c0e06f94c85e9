//! Live sessions: continuous re-attestation on an open connection (`docs/wire-format.md`,
//! section 4, "Live sessions").
//!
//! When both sides sent LIVE before their REQUEST and one of them wants it, every byte after
//! the exchange is framed: application bytes travel in DATA frames, and either side that
//! verified the other may send REATTEST at any time, a new challenge about the same key plus
//! how many IMA log entries it already verified. The attester answers EVIDENCE bound to this
//! very session (the exporter with the new challenge), whose IMA part is only the entries past
//! that count ([`ImaEvidence::Delta`](crate::bundle::ImaEvidence::Delta)); the verifier
//! replays them from the PCR 10 value it anchored before ([`crate::ima::verify_delta`]), checks
//! them against its approved files, and answers RESULT. A failure ends the session: the
//! verdict names the step (an unknown file names the file), and the application's connection
//! is closed with it.
//!
//! Bounded on both sides: a peer that does not answer within
//! [`LiveOptions::answer_timeout`] is cut off, and a peer that asks more often than
//! [`LiveOptions::min_peer_interval`] (or asks again before its previous answer) is cut off
//! rather than served: each answer makes this side's TPM and TEE sign (through the shared
//! batcher: one report and quote for every session asking meanwhile).
//!
//! [`run`] drives one live session: it owns the TLS stream and relays application bytes
//! through the other end of a [`tokio::io::DuplexStream`], which the caller relays to the
//! application as it would the TLS stream.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::driver::{unexpected, Session};
use super::{
    result_for, Decline, FrameDecoder, FreshError, FreshOptions, Inquiry, LiveOptions, Message,
    MAX_DATA_LEN,
};
use crate::attest::AttestError;
use crate::claims::Claims;
use crate::ima::ImaAnchor;
use crate::time::UnixTime;
use crate::tls::rejection::AttestationRejected;
use crate::verdict::Verdict;

/// Why a live session ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum LiveEnd {
    /// Both directions of application bytes ended, or the peer closed the session.
    Closed,
    /// Our re-attestation of the peer failed; the verdict names the step.
    Rejected(AttestationRejected),
    /// The peer did not answer a re-attestation request in time.
    Timeout(Duration),
    /// The peer rejected our evidence, declined to attest, broke the protocol, or I/O failed.
    Failed(FreshError),
}

/// What one re-attestation of the peer found, reported as it happens.
#[derive(Debug, Clone)]
pub struct Recheck {
    /// 1 for the first re-attestation of the session, then 2, ...
    pub number: u64,
    pub verdict: Verdict,
    /// The IMA entries the answer carried, and the index of the first.
    pub ima_entries: Option<(u64, usize)>,
    /// The size of the answer (bytes).
    pub evidence_len: usize,
}

/// How far the peer's IMA log was verified by `verdict`: where a delta continues.
pub fn ima_anchor(verdict: &Verdict) -> Option<ImaAnchor> {
    ima_claims(verdict).and_then(|ima| ima.anchor.as_deref().cloned())
}

fn ima_claims(verdict: &Verdict) -> Option<&crate::ima::ImaClaims> {
    match &verdict.claims {
        Claims::Bundle(b) => match &b.ima {
            Some(Claims::Ima(ima)) => Some(ima),
            _ => None,
        },
        _ => None,
    }
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> FreshError {
    move |error| FreshError::Io {
        what,
        error: std::sync::Arc::new(error),
    }
}

/// A task's result, or pending forever when there is none (a disabled `select!` branch).
async fn joined<T>(task: &mut Option<JoinHandle<T>>) -> Result<T, FreshError> {
    match task {
        Some(handle) => handle
            .await
            .map_err(|e| FreshError::Task(e.to_string())),
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What one poll of the TLS stream did (see [`Outbox::poll_io`]).
enum Io {
    Read(usize),
    Wrote(usize),
    Flushed,
}

/// Frames waiting to go out. The session never waits on a write while it could read: a peer
/// that writes as much as we do (both applications streaming) is read meanwhile, so the two
/// sessions cannot block each other with full buffers.
struct Outbox {
    bytes: std::collections::VecDeque<u8>,
    unflushed: bool,
    max_evidence_len: usize,
}

/// Application bytes are read from `app` only while fewer than this many bytes wait to go out.
const OUTBOX_HIGH: usize = 256 * 1024;

/// `after` from now, or far in the future when that overflows.
fn later(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

impl Outbox {
    fn push(&mut self, message: &Message) -> Result<(), FreshError> {
        self.bytes
            .extend(message.encode(self.max_evidence_len)?);
        Ok(())
    }

    /// A DATA frame of `data` (at most [`MAX_DATA_LEN`] bytes), written in place.
    fn push_data(&mut self, data: &[u8]) {
        // Invariant: `data` comes from a buffer of MAX_DATA_LEN (16 KiB) bytes.
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        self.bytes
            .push_back(super::FrameType::Data.code());
        self.bytes.extend(len.to_be_bytes());
        self.bytes.extend(data);
    }

    /// Write what is pending (then flush), else read: whichever the stream allows first.
    fn poll_io<S: Session>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        stream: &mut S,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<Io>> {
        use std::pin::Pin;
        use std::task::Poll;

        if !self.bytes.is_empty() {
            let (front, _) = self.bytes.as_slices();
            if let Poll::Ready(r) = Pin::new(&mut *stream).poll_write(cx, front) {
                return Poll::Ready(r.and_then(|n| match n {
                    0 => Err(std::io::ErrorKind::WriteZero.into()),
                    n => Ok(Io::Wrote(n)),
                }));
            }
        } else if self.unflushed {
            if let Poll::Ready(r) = Pin::new(&mut *stream).poll_flush(cx) {
                return Poll::Ready(r.map(|()| Io::Flushed));
            }
        }
        let mut read = tokio::io::ReadBuf::new(buf);
        match Pin::new(stream).poll_read(cx, &mut read) {
            Poll::Ready(r) => Poll::Ready(r.map(|()| Io::Read(read.filled().len()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Run a live session on `stream` (after an exchange whose outcome said `live`), relaying the
/// application's bytes through `app`. `anchor` is what the exchange verified of the peer's IMA
/// log ([`ima_anchor`] of its verdict). Every re-attestation verdict goes to `rechecks`
/// (accepted ones too), before the session acts on it. Returns when the session ends; what is
/// left to send (a RESULT, a DECLINE) is sent then, within a few seconds, the TLS stream is
/// closed, and `app` dropped.
pub async fn run<S: Session>(
    mut stream: S,
    mut app: DuplexStream,
    opts: &FreshOptions,
    mut anchor: Option<ImaAnchor>,
    rechecks: Option<UnboundedSender<Recheck>>,
) -> LiveEnd {
    let mut outbox = Outbox {
        bytes: std::collections::VecDeque::new(),
        unflushed: false,
        max_evidence_len: opts.max_evidence_len,
    };
    let end = drive(
        &mut stream,
        &mut app,
        opts,
        &mut anchor,
        rechecks,
        &mut outbox,
    )
    .await;
    drop(app);
    let rest: Vec<u8> = outbox.bytes.into_iter().collect();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(&rest).await?;
        stream.shutdown().await
    })
    .await;
    end
}

/// A protocol error: a frame this side did not expect now.
fn out_of_order(message: &Message) -> LiveEnd {
    LiveEnd::Failed(unexpected(
        "DATA, REATTEST, EVIDENCE, DECLINE or RESULT in order",
        message,
    ))
}

async fn drive<S: Session>(
    stream: &mut S,
    app: &mut DuplexStream,
    opts: &FreshOptions,
    anchor: &mut Option<ImaAnchor>,
    rechecks: Option<UnboundedSender<Recheck>>,
    outbox: &mut Outbox,
) -> LiveEnd {
    let live = opts
        .live
        .unwrap_or_else(LiveOptions::answering);
    let interval = live
        .interval
        .filter(|_| opts.verify_peer.is_some());
    let mut decoder = FrameDecoder::new(opts.max_evidence_len);
    let mut net = vec![0u8; 64 * 1024];
    let mut out = vec![0u8; MAX_DATA_LEN];
    let (mut to_peer_open, mut from_peer_open) = (true, true);
    let mut next_check = interval.map(later);
    let mut asked: Option<(Inquiry, Instant)> = None;
    let mut verifying: Option<JoinHandle<(Verdict, usize)>> = None;
    let mut producing: Option<JoinHandle<Result<Vec<u8>, AttestError>>> = None;
    let mut awaiting_result = false;
    let mut last_peer_ask: Option<Instant> = None;
    let mut number = 0u64;
    loop {
        if !to_peer_open && !from_peer_open && outbox.bytes.is_empty() && !outbox.unflushed {
            return LiveEnd::Closed;
        }
        let deadline = asked.as_ref().map(|(_, at)| *at);
        let check_at = next_check.filter(|_| asked.is_none() && verifying.is_none());
        let room = outbox.bytes.len() < OUTBOX_HIGH;
        tokio::select! {
            read = app.read(&mut out), if to_peer_open && room => {
                let data = match read {
                    Ok(n) => out.get(..n).unwrap_or_default(),
                    Err(_) => &[],
                };
                if data.is_empty() {
                    to_peer_open = false;
                }
                outbox.push_data(data);
            }
            polled = std::future::poll_fn(|cx| outbox.poll_io(cx, stream, &mut net)) => {
                let n = match polled {
                    Ok(Io::Wrote(n)) => {
                        outbox.bytes.drain(..n.min(outbox.bytes.len()));
                        outbox.unflushed = true;
                        continue;
                    }
                    Ok(Io::Flushed) => {
                        outbox.unflushed = false;
                        continue;
                    }
                    // The peer closed: cleanly only after it ended its data and owes no answer.
                    Ok(Io::Read(0)) if from_peer_open || asked.is_some() => {
                        return LiveEnd::Failed(io("the live session's stream")(
                            std::io::ErrorKind::UnexpectedEof.into(),
                        ))
                    }
                    Ok(Io::Read(0)) => return LiveEnd::Closed,
                    Ok(Io::Read(n)) => n,
                    Err(e) => return LiveEnd::Failed(io("the live session's stream")(e)),
                };
                let mut input = net.get(..n).unwrap_or_default();
                while !input.is_empty() {
                    let (used, message) = match decoder.feed(input) {
                        Ok(x) => x,
                        Err(e) => return LiveEnd::Failed(e.into()),
                    };
                    input = input.get(used..).unwrap_or_default();
                    let Some(message) = message else { continue };
                    match message {
                        Message::Data(data) if data.is_empty() && from_peer_open => {
                            from_peer_open = false;
                            let _ = app.shutdown().await;
                        }
                        Message::Data(data) if from_peer_open => {
                            if app.write_all(&data).await.is_err() {
                                return LiveEnd::Closed;
                            }
                        }
                        Message::Reattest { request, ima_from } => {
                            let now = Instant::now();
                            // One at a time: not while our answer is made, queued or judged.
                            if producing.is_some()
                                || awaiting_result
                                || outbox.bytes.len() > OUTBOX_HIGH
                                || last_peer_ask.is_some_and(|t| now < t + live.min_peer_interval)
                            {
                                return LiveEnd::Failed(FreshError::Unexpected {
                                    expected: "a re-attestation request at most once per minimum interval, one at a time",
                                    presented: "REATTEST too soon",
                                });
                            }
                            last_peer_ask = Some(now);
                            let answer = match &opts.attest_self {
                                None => Err(Decline::NotAttesting),
                                Some(me) => me.answer(request).map(|a| (a, me.batcher.clone())),
                            };
                            let (answer, batcher) = match answer {
                                Ok(x) => x,
                                Err(reason) => {
                                    let _ = outbox.push(&Message::Decline(reason.to_string()));
                                    return LiveEnd::Failed(FreshError::WeDeclined(reason.to_string()));
                                }
                            };
                            let bound = match answer.bind(stream.conn(), UnixTime::now()) {
                                Ok(bound) => bound,
                                Err(e) => return LiveEnd::Failed(e),
                            };
                            let max = opts.max_evidence_len;
                            producing = Some(tokio::task::spawn_blocking(move || {
                                bound.produce_delta(&batcher, max, ima_from)
                            }));
                        }
                        Message::Evidence(cmw) => {
                            let Some((inquiry, _)) = asked.take() else {
                                return out_of_order(&Message::Evidence(Vec::new()));
                            };
                            let base = anchor.clone();
                            verifying = Some(tokio::task::spawn_blocking(move || {
                                let verdict = inquiry.verify_continuing(&cmw, base.as_ref(), UnixTime::now());
                                (verdict, cmw.len())
                            }));
                        }
                        Message::Decline(reason) if asked.is_some() => {
                            return LiveEnd::Failed(FreshError::PeerDeclined(reason));
                        }
                        Message::Result { ok, message } if awaiting_result => {
                            awaiting_result = false;
                            if !ok {
                                return LiveEnd::Failed(FreshError::PeerRejectedUs(message));
                            }
                        }
                        other => return out_of_order(&other),
                    }
                }
            }
            () = sleep_until(check_at), if check_at.is_some() => {
                next_check = None;
                let Some(policy) = &opts.verify_peer else { continue };
                let inquiry = match Inquiry::new(stream.conn(), policy.clone()) {
                    Ok(inquiry) => inquiry,
                    Err(e) => return LiveEnd::Failed(e),
                };
                let ima_from = anchor.as_ref().map_or(0, |a| a.entries);
                let request = Message::Reattest { request: inquiry.evidence_request(), ima_from };
                if let Err(e) = outbox.push(&request) {
                    return LiveEnd::Failed(e);
                }
                asked = Some((inquiry, later(live.answer_timeout)));
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                return LiveEnd::Timeout(live.answer_timeout);
            }
            produced = joined(&mut producing), if producing.is_some() => {
                producing = None;
                let message = match produced {
                    Ok(Ok(cmw)) => Message::Evidence(cmw),
                    Ok(Err(e)) => {
                        let _ = outbox.push(&Message::Decline(format!("evidence production failed: {e}")));
                        return LiveEnd::Failed(FreshError::Produce(e));
                    }
                    Err(e) => return LiveEnd::Failed(e),
                };
                if let Err(e) = outbox.push(&message) {
                    return LiveEnd::Failed(e);
                }
                awaiting_result = true;
            }
            verified = joined(&mut verifying), if verifying.is_some() => {
                verifying = None;
                let (verdict, evidence_len) = match verified {
                    Ok(x) => x,
                    Err(e) => return LiveEnd::Failed(e),
                };
                number += 1;
                let ima_entries = ima_claims(&verdict).map(|i| (i.delta_from.unwrap_or(0), i.entries));
                if let Some(tx) = &rechecks {
                    let _ = tx.send(Recheck { number, verdict: verdict.clone(), ima_entries, evidence_len });
                }
                let sent = outbox.push(&result_for(&verdict));
                if !verdict.is_trusted() {
                    return LiveEnd::Rejected(AttestationRejected { verdict: std::sync::Arc::new(verdict) });
                }
                if let Err(e) = sent {
                    return LiveEnd::Failed(e);
                }
                if let Some(next) = ima_anchor(&verdict) {
                    *anchor = Some(next);
                }
                next_check = interval.map(later);
            }
        }
    }
}
