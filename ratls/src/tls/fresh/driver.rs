//! The async (tokio) driver of the fresh exchange on a `tokio-rustls` stream.
//!
//! Order (deterministic; no side ever writes a large frame while its peer is writing too):
//!
//! 1. both sides write their REQUEST, then read the peer's (small frames);
//! 2. the client's evidence: if the server asked, the client writes EVIDENCE or DECLINE, the
//!    server verifies and writes RESULT;
//! 3. the server's evidence: if the client asked, the server writes EVIDENCE or DECLINE, the
//!    client verifies and writes RESULT.
//!
//! The client goes first so that a server which requires attested clients does no work for a
//! stranger: the server starts producing its evidence (a TPM quote and a TEE report) only after
//! step 2, that is after the client's evidence verified when it asked for it. A DECLINE, a
//! rejected verdict or any error in step 2 ends the exchange before the server produced
//! anything. The client starts producing as soon as it read the server's REQUEST.
//!
//! Frames are read exactly (never past a frame's end), so application bytes that follow stay
//! in the stream.

use std::sync::Arc;

use rustls::ConnectionCommon;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{
    check_session, result_for, Decline, EvidenceRequest, FrameDecoder, FreshError, FreshOptions,
    FreshOutcome, Inquiry, Message,
};
use crate::attest::AttestError;
use crate::time::UnixTime;
use crate::tls::rejection::AttestationRejected;

/// Run the exchange as the TLS client. See the [module documentation](super).
pub async fn client_exchange<IO>(
    stream: &mut tokio_rustls::client::TlsStream<IO>,
    opts: &FreshOptions,
) -> Result<FreshOutcome, FreshError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    with_timeout(opts, run(stream, opts)).await
}

/// Run the exchange as the TLS server. See the [module documentation](super).
pub async fn server_exchange<IO>(
    stream: &mut tokio_rustls::server::TlsStream<IO>,
    opts: &FreshOptions,
) -> Result<FreshOutcome, FreshError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send,
{
    with_timeout(opts, run(stream, opts)).await
}

async fn with_timeout(
    opts: &FreshOptions,
    exchange: impl core::future::Future<Output = Result<FreshOutcome, FreshError>>,
) -> Result<FreshOutcome, FreshError> {
    tokio::time::timeout(opts.timeout, exchange)
        .await
        .unwrap_or(Err(FreshError::Timeout(opts.timeout)))
}

/// A `tokio-rustls` stream of either side (client or server): what the exchange and a live
/// session run on.
pub trait Session: AsyncRead + AsyncWrite + Unpin + Send {
    const IS_SERVER: bool;
    type Data;
    fn conn(&self) -> &ConnectionCommon<Self::Data>;
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> Session for tokio_rustls::client::TlsStream<IO> {
    const IS_SERVER: bool = false;
    type Data = rustls::client::ClientConnectionData;

    fn conn(&self) -> &ConnectionCommon<Self::Data> {
        self.get_ref().1
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> Session for tokio_rustls::server::TlsStream<IO> {
    const IS_SERVER: bool = true;
    type Data = rustls::server::ServerConnectionData;

    fn conn(&self) -> &ConnectionCommon<Self::Data> {
        self.get_ref().1
    }
}

/// Our answer to the peer's REQUEST.
enum Pending {
    NotAsked,
    Decline(String),
    Producing(JoinHandle<Result<Vec<u8>, AttestError>>),
}

async fn run<S: Session>(stream: &mut S, opts: &FreshOptions) -> Result<FreshOutcome, FreshError> {
    check_session(stream.conn())?;
    let asked = opts
        .verify_peer
        .as_ref()
        .map(|policy| Inquiry::new(stream.conn(), policy.clone()))
        .transpose()?;
    let request = asked
        .as_ref()
        .map_or(Message::Request(None), Inquiry::request);
    let mut decoder = FrameDecoder::new(opts.max_evidence_len);
    // LIVE (optional) goes before REQUEST. A reader that predates it refuses the unknown frame,
    // so both ends of a live-capable pair must be this version (docs/wire-format.md).
    let we_want_live = opts
        .live
        .is_some_and(|l| l.interval.is_some() && asked.is_some());
    if opts.live.is_some() {
        write(
            stream,
            &Message::Live {
                wants: we_want_live,
            },
            opts,
        )
        .await?;
    }
    write(stream, &request, opts).await?;
    let (peer_live, peer_request) = match read(stream, &mut decoder).await? {
        Message::Live { wants } => match read(stream, &mut decoder).await? {
            Message::Request(r) => (Some(wants), r),
            other => return Err(unexpected("REQUEST", &other)),
        },
        // A peer that will not go live cannot be re-attested: when we want that, refuse it
        // rather than carry on unchecked.
        Message::Request(_) if we_want_live => {
            return Err(FreshError::Unexpected {
                expected: "LIVE before REQUEST (this side re-attests its peer on the open session)",
                presented: "REQUEST without LIVE",
            })
        }
        Message::Request(r) => (None, r),
        other => return Err(unexpected("REQUEST", &other)),
    };

    let mut outcome = FreshOutcome {
        peer_verdict: None,
        we_were_accepted: None,
        live: opts.live.is_some() && peer_live.is_some_and(|peer_wants| peer_wants || we_want_live),
    };
    if S::IS_SERVER {
        // The client's evidence first; ours is produced only once it verified (or when we did
        // not ask for it): a stranger makes us do nothing.
        outcome.peer_verdict = receive_evidence(stream, &mut decoder, asked, opts).await?;
        let pending = prepare(stream, peer_request, opts)?;
        outcome.we_were_accepted = send_evidence(stream, &mut decoder, pending, opts).await?;
    } else {
        let pending = prepare(stream, peer_request, opts)?;
        outcome.we_were_accepted = send_evidence(stream, &mut decoder, pending, opts).await?;
        outcome.peer_verdict = receive_evidence(stream, &mut decoder, asked, opts).await?;
    }
    Ok(outcome)
}

/// Our answer to the peer's REQUEST: nothing, a DECLINE, or evidence production started on a
/// blocking thread (TPM, TEE).
fn prepare<S: Session>(
    stream: &S,
    peer_request: Option<EvidenceRequest>,
    opts: &FreshOptions,
) -> Result<Pending, FreshError> {
    let Some(request) = peer_request else {
        return Ok(Pending::NotAsked);
    };
    let Some(me) = &opts.attest_self else {
        return Ok(Pending::Decline(Decline::NotAttesting.to_string()));
    };
    let answer = match me.answer(request) {
        Ok(answer) => answer,
        Err(reason) => return Ok(Pending::Decline(reason.to_string())),
    };
    let bound = answer.bind(stream.conn(), UnixTime::now())?;
    let batcher = me.batcher.clone();
    let max = opts.max_evidence_len;
    Ok(Pending::Producing(tokio::task::spawn_blocking(move || {
        bound.produce(&batcher, max)
    })))
}

/// Our turn to attest: EVIDENCE then the peer's RESULT, or DECLINE (which ends the exchange).
async fn send_evidence<S: Session>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    pending: Pending,
    opts: &FreshOptions,
) -> Result<Option<bool>, FreshError> {
    let job = match pending {
        Pending::NotAsked => return Ok(None),
        Pending::Decline(reason) => {
            // The exchange fails either way; the write error, if any, says less than this.
            let _ = write(stream, &Message::Decline(reason.clone()), opts).await;
            return Err(FreshError::WeDeclined(reason));
        }
        Pending::Producing(job) => job,
    };
    let cmw = match job
        .await
        .map_err(|e| FreshError::Task(e.to_string()))?
    {
        Ok(cmw) => cmw,
        Err(e) => {
            let reason = format!("evidence production failed: {e}");
            let _ = write(stream, &Message::Decline(reason), opts).await;
            return Err(FreshError::Produce(e));
        }
    };
    write(stream, &Message::Evidence(cmw), opts).await?;
    match read(stream, decoder).await? {
        Message::Result { ok: true, .. } => Ok(Some(true)),
        Message::Result { ok: false, message } => Err(FreshError::PeerRejectedUs(message)),
        other => Err(unexpected("RESULT", &other)),
    }
}

/// The peer's turn: read EVIDENCE (or DECLINE), verify, write RESULT.
async fn receive_evidence<S: Session>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
    asked: Option<Inquiry>,
    opts: &FreshOptions,
) -> Result<Option<crate::verdict::Verdict>, FreshError> {
    let Some(asked) = asked else {
        return Ok(None);
    };
    let cmw = match read(stream, decoder).await? {
        Message::Evidence(cmw) => cmw,
        Message::Decline(reason) => return Err(FreshError::PeerDeclined(reason)),
        other => return Err(unexpected("EVIDENCE or DECLINE", &other)),
    };
    // Verification replays the IMA log and checks signatures: off the async threads.
    let verdict = tokio::task::spawn_blocking(move || asked.verify(&cmw, UnixTime::now()))
        .await
        .map_err(|e| FreshError::Task(e.to_string()))?;
    let sent = write(stream, &result_for(&verdict), opts).await;
    if !verdict.is_trusted() {
        return Err(FreshError::Rejected(AttestationRejected {
            verdict: Arc::new(verdict),
        }));
    }
    sent?;
    Ok(Some(verdict))
}

pub(super) async fn write<S: Session>(
    stream: &mut S,
    message: &Message,
    opts: &FreshOptions,
) -> Result<(), FreshError> {
    let frame = message.encode(opts.max_evidence_len)?;
    let io = |error| FreshError::Io {
        what: "writing a frame",
        error: Arc::new(error),
    };
    stream
        .write_all(&frame)
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)
}

/// Read exactly one frame: never a byte past its end.
async fn read<S: Session>(
    stream: &mut S,
    decoder: &mut FrameDecoder,
) -> Result<Message, FreshError> {
    const CHUNK: usize = 64 * 1024;
    let mut buf = Vec::new();
    loop {
        let want = decoder.want().min(CHUNK);
        buf.resize(want, 0);
        stream
            .read_exact(&mut buf)
            .await
            .map_err(|error| FreshError::Io {
                what: "reading a frame",
                error: Arc::new(error),
            })?;
        if let (_, Some(message)) = decoder.feed(&buf)? {
            return Ok(message);
        }
    }
}

pub(super) fn unexpected(expected: &'static str, presented: &Message) -> FreshError {
    FreshError::Unexpected {
        expected,
        presented: presented.kind().name(),
    }
}
