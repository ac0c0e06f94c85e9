//! The frames of the fresh attestation exchange (`docs/wire-format.md`, section 4):
//! `type u8 | length u32 big-endian | payload`.
//!
//! [`Message::encode`] writes one frame; [`FrameDecoder`] reads them incrementally and never past
//! the end of the current frame (application bytes follow the exchange on the same stream), and
//! checks the type and the length cap before a payload byte is buffered.

use core::fmt;

use crate::binding::NONCE_LEN;
use crate::codec::{ParseError, Reader};

/// The frame header: type (1 byte) and payload length (4 bytes, big-endian).
pub const HEADER_LEN: usize = 5;

/// The cap on every frame but EVIDENCE (REQUEST, DECLINE, RESULT).
pub const MAX_CONTROL_LEN: usize = 4 * 1024;

/// The only REQUEST version.
pub const REQUEST_VERSION: u8 = 1;

/// REQUEST flag bit 0: "I want your evidence" (a challenge and the SPKI hash follow).
pub const FLAG_WANT_EVIDENCE: u8 = 0x01;

/// The cap on a DATA frame's payload (application bytes of a live session).
pub const MAX_DATA_LEN: usize = 16 * 1024;

/// The frame types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameType {
    Request,
    Evidence,
    Decline,
    Result,
    /// Sent before REQUEST: this side can keep the session live (framed, re-attestable).
    Live,
    /// Application bytes of a live session (empty: this direction ended).
    Data,
    /// A re-attestation request on a live session.
    Reattest,
}

impl FrameType {
    pub fn code(self) -> u8 {
        match self {
            Self::Request => 0x01,
            Self::Evidence => 0x02,
            Self::Decline => 0x03,
            Self::Result => 0x04,
            Self::Live => 0x05,
            Self::Data => 0x06,
            Self::Reattest => 0x07,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Self::Request),
            0x02 => Some(Self::Evidence),
            0x03 => Some(Self::Decline),
            0x04 => Some(Self::Result),
            0x05 => Some(Self::Live),
            0x06 => Some(Self::Data),
            0x07 => Some(Self::Reattest),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "REQUEST",
            Self::Evidence => "EVIDENCE",
            Self::Decline => "DECLINE",
            Self::Result => "RESULT",
            Self::Live => "LIVE",
            Self::Data => "DATA",
            Self::Reattest => "REATTEST",
        }
    }

    /// The largest payload of this type, given the EVIDENCE cap.
    pub fn cap(self, max_evidence_len: usize) -> usize {
        match self {
            Self::Evidence => max_evidence_len,
            Self::Data => MAX_DATA_LEN,
            _ => MAX_CONTROL_LEN,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("fresh frame: unknown type {0:#04x} (expected 0x01 REQUEST, 0x02 EVIDENCE, 0x03 DECLINE, 0x04 RESULT, 0x05 LIVE, 0x06 DATA or 0x07 REATTEST)")]
    UnknownType(u8),
    #[error("fresh frame: {kind} payload of {len} bytes exceeds the {limit}-byte cap")]
    TooLarge {
        kind: FrameType,
        len: usize,
        limit: usize,
    },
    #[error("fresh frame: truncated: {needed} more bytes needed")]
    Truncated { needed: usize },
    #[error("fresh frame: malformed {kind} payload: {error}")]
    Payload { kind: FrameType, error: ParseError },
    #[error("fresh frame: {kind} text is not UTF-8")]
    NotUtf8 { kind: FrameType },
}

/// What a REQUEST asks of the peer's evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceRequest {
    /// 32 random bytes chosen by the requester.
    pub challenge: [u8; NONCE_LEN],
    /// SHA-256 of the DER SubjectPublicKeyInfo of the peer certificate as the requester saw it.
    pub spki_sha256: [u8; 32],
}

/// A decoded frame.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `version | flags | [challenge | spki_sha256]`: `None` = "I do not want your evidence".
    Request(Option<EvidenceRequest>),
    /// A CMW evidence bundle.
    Evidence(Vec<u8>),
    /// The responder cannot or will not attest (UTF-8 reason).
    Decline(String),
    /// The verifier's decision on the evidence it received.
    Result { ok: bool, message: String },
    /// Before REQUEST: this side can run the session live after the exchange (every later byte
    /// framed, re-attestation requests answered); `wants`: it will re-attest the peer. The
    /// session goes live when both sides sent LIVE and at least one wants it.
    Live { wants: bool },
    /// Application bytes on a live session; empty: the sender's direction ended.
    Data(Vec<u8>),
    /// A new request for evidence on a live session: a new challenge about the same key, and
    /// how many IMA log entries the requester verified already (the attester sends the rest).
    Reattest {
        request: EvidenceRequest,
        ima_from: u64,
    },
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Request(r) => f
                .debug_tuple("Request")
                .field(r)
                .finish(),
            Self::Evidence(e) => write!(f, "Evidence({} bytes)", e.len()),
            Self::Decline(reason) => f
                .debug_tuple("Decline")
                .field(reason)
                .finish(),
            Self::Result { ok, message } => f
                .debug_struct("Result")
                .field("ok", ok)
                .field("message", message)
                .finish(),
            Self::Live { wants } => f
                .debug_struct("Live")
                .field("wants", wants)
                .finish(),
            Self::Data(d) => write!(f, "Data({} bytes)", d.len()),
            Self::Reattest { request, ima_from } => f
                .debug_struct("Reattest")
                .field("request", request)
                .field("ima_from", ima_from)
                .finish(),
        }
    }
}

impl Message {
    pub fn kind(&self) -> FrameType {
        match self {
            Self::Request(_) => FrameType::Request,
            Self::Evidence(_) => FrameType::Evidence,
            Self::Decline(_) => FrameType::Decline,
            Self::Result { .. } => FrameType::Result,
            Self::Live { .. } => FrameType::Live,
            Self::Data(_) => FrameType::Data,
            Self::Reattest { .. } => FrameType::Reattest,
        }
    }

    /// The payload bytes (no header).
    pub fn payload(&self) -> Vec<u8> {
        match self {
            Self::Request(None) => vec![REQUEST_VERSION, 0],
            Self::Request(Some(r)) => {
                let mut out = Vec::with_capacity(2 + 2 * NONCE_LEN);
                out.extend_from_slice(&[REQUEST_VERSION, FLAG_WANT_EVIDENCE]);
                out.extend_from_slice(&r.challenge);
                out.extend_from_slice(&r.spki_sha256);
                out
            }
            Self::Evidence(cmw) => cmw.clone(),
            Self::Decline(reason) => truncate_utf8(reason, MAX_CONTROL_LEN)
                .as_bytes()
                .to_vec(),
            Self::Result { ok, message } => {
                let message = truncate_utf8(message, MAX_CONTROL_LEN - 1);
                let mut out = Vec::with_capacity(1 + message.len());
                out.push(u8::from(*ok));
                out.extend_from_slice(message.as_bytes());
                out
            }
            Self::Live { wants } => vec![u8::from(*wants)],
            Self::Data(data) => data.clone(),
            Self::Reattest { request, ima_from } => {
                let mut out = Vec::with_capacity(2 * NONCE_LEN + 8);
                out.extend_from_slice(&request.challenge);
                out.extend_from_slice(&request.spki_sha256);
                out.extend_from_slice(&ima_from.to_be_bytes());
                out
            }
        }
    }

    /// One frame: header and payload. Text longer than the 4 KiB cap is cut at a character
    /// boundary; evidence over `max_evidence_len` is refused.
    pub fn encode(&self, max_evidence_len: usize) -> Result<Vec<u8>, FrameError> {
        let kind = self.kind();
        let payload = self.payload();
        let limit = kind.cap(max_evidence_len);
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|_| payload.len() <= limit)
            .ok_or(FrameError::TooLarge {
                kind,
                len: payload.len(),
                limit,
            })?;
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.push(kind.code());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parse the payload of a frame of type `kind`.
    pub fn from_payload(kind: FrameType, payload: Vec<u8>) -> Result<Self, FrameError> {
        let bad = |error| FrameError::Payload { kind, error };
        match kind {
            FrameType::Request => {
                let mut r = Reader::new("fresh REQUEST", &payload);
                let version = r.u8("version").map_err(bad)?;
                if version != REQUEST_VERSION {
                    return Err(bad(r.unsupported("version", version.to_string(), "1")));
                }
                let flags = r.u8("flags").map_err(bad)?;
                if flags & !FLAG_WANT_EVIDENCE != 0 {
                    return Err(bad(r.invalid(
                        "flags",
                        "only bit 0 (want evidence) may be set",
                        format!("{flags:#04x}"),
                    )));
                }
                let request = if flags & FLAG_WANT_EVIDENCE != 0 {
                    Some(EvidenceRequest {
                        challenge: r.array("challenge").map_err(bad)?,
                        spki_sha256: r.array("spki_sha256").map_err(bad)?,
                    })
                } else {
                    None
                };
                r.finish().map_err(bad)?;
                Ok(Self::Request(request))
            }
            FrameType::Evidence => Ok(Self::Evidence(payload)),
            FrameType::Decline => String::from_utf8(payload)
                .map(Self::Decline)
                .map_err(|_| FrameError::NotUtf8 { kind }),
            FrameType::Result => {
                let mut r = Reader::new("fresh RESULT", &payload);
                let ok = match r.u8("ok").map_err(bad)? {
                    0 => false,
                    1 => true,
                    other => {
                        return Err(bad(r.invalid("ok", "0 or 1", other.to_string())));
                    }
                };
                let message = String::from_utf8(r.rest().to_vec())
                    .map_err(|_| FrameError::NotUtf8 { kind })?;
                Ok(Self::Result { ok, message })
            }
            FrameType::Live => {
                let mut r = Reader::new("fresh LIVE", &payload);
                let wants = match r.u8("wants").map_err(bad)? {
                    0 => false,
                    1 => true,
                    other => return Err(bad(r.invalid("wants", "0 or 1", other.to_string()))),
                };
                r.finish().map_err(bad)?;
                Ok(Self::Live { wants })
            }
            FrameType::Data => Ok(Self::Data(payload)),
            FrameType::Reattest => {
                let mut r = Reader::new("fresh REATTEST", &payload);
                let request = EvidenceRequest {
                    challenge: r.array("challenge").map_err(bad)?,
                    spki_sha256: r.array("spki_sha256").map_err(bad)?,
                };
                let ima_from = r.u64_be("ima_from").map_err(bad)?;
                r.finish().map_err(bad)?;
                Ok(Self::Reattest { request, ima_from })
            }
        }
    }

    /// Decode one whole frame from the start of `bytes`; returns it and the bytes after it.
    pub fn decode(bytes: &[u8], max_evidence_len: usize) -> Result<(Self, &[u8]), FrameError> {
        let mut decoder = FrameDecoder::new(max_evidence_len);
        let (used, message) = decoder.feed(bytes)?;
        match message {
            Some(m) => Ok((m, bytes.get(used..).unwrap_or_default())),
            None => Err(FrameError::Truncated {
                needed: decoder.want(),
            }),
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Reads frames from a byte stream, one at a time, without reading past a frame's end.
///
/// [`want`](Self::want) says how many bytes the current frame still needs (header first, then
/// payload); [`feed`](Self::feed) consumes at most that many. The header's type and length are
/// checked before any payload byte is buffered, and the payload buffer grows with the bytes
/// that actually arrive, never from the declared length alone.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    max_evidence_len: usize,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The checked header: type and payload length.
    current: Option<(FrameType, usize)>,
    payload: Vec<u8>,
}

/// Initial payload buffer, so that a large declared length does not reserve memory up front.
const INITIAL_BUFFER: usize = 64 * 1024;

impl FrameDecoder {
    pub fn new(max_evidence_len: usize) -> Self {
        Self {
            max_evidence_len,
            header: [0; HEADER_LEN],
            header_len: 0,
            current: None,
            payload: Vec::new(),
        }
    }

    /// Bytes the current frame still needs (at least 1).
    pub fn want(&self) -> usize {
        match self.current {
            None => HEADER_LEN
                .saturating_sub(self.header_len)
                .max(1),
            Some((_, len)) => len
                .saturating_sub(self.payload.len())
                .max(1),
        }
    }

    /// Consume bytes from `input` (at most up to the end of the current frame). Returns how many
    /// bytes were consumed and the frame when it is complete. After an error the decoder must
    /// not be used again.
    pub fn feed(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), FrameError> {
        let mut used = 0;
        if self.current.is_none() {
            let need = HEADER_LEN.saturating_sub(self.header_len);
            let take = need.min(input.len());
            let (head, _) = input.split_at(take);
            if let Some(dst) = self
                .header
                .get_mut(self.header_len..self.header_len + take)
            {
                dst.copy_from_slice(head);
            }
            self.header_len += take;
            used += take;
            if self.header_len < HEADER_LEN {
                return Ok((used, None));
            }
            let [code, l0, l1, l2, l3] = self.header;
            let kind = FrameType::from_code(code).ok_or(FrameError::UnknownType(code))?;
            let len = usize::try_from(u32::from_be_bytes([l0, l1, l2, l3])).unwrap_or(usize::MAX);
            let limit = kind.cap(self.max_evidence_len);
            if len > limit {
                return Err(FrameError::TooLarge { kind, len, limit });
            }
            self.payload = Vec::with_capacity(len.min(INITIAL_BUFFER));
            self.current = Some((kind, len));
        }
        let Some((kind, len)) = self.current else {
            return Ok((used, None));
        };
        let rest = input.get(used..).unwrap_or_default();
        let take = len
            .saturating_sub(self.payload.len())
            .min(rest.len());
        let (body, _) = rest.split_at(take);
        self.payload.extend_from_slice(body);
        used += take;
        if self.payload.len() < len {
            return Ok((used, None));
        }
        let payload = core::mem::take(&mut self.payload);
        self.current = None;
        self.header_len = 0;
        Message::from_payload(kind, payload).map(|m| (used, Some(m)))
    }
}
