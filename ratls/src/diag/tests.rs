use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::layer::SubscriberExt;

use super::*;

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The lines `events` prints with `style` and `format` (filter: everything).
fn lines(style: Style, format: Format, events: impl FnOnce()) -> Vec<String> {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber =
        tracing_subscriber::registry().with(layer("app", style, format, move || writer.clone()));
    tracing::subscriber::with_default(subscriber, events);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn some_events() {
    let peer = "192.0.2.1:4433";
    tracing::error!("configuration: bad");
    tracing::warn!(peer = %peer, step = "tee.policy", "rejected {peer}: no");
    tracing::info!(
        path = "/a b",
        n = 3u64,
        ok = true,
        "listening on 127.0.0.1:1"
    );
    tracing::debug!(status = 200u64, "GET /x 200");
}

#[test]
fn journald_lines_carry_the_syslog_priority() {
    assert_eq!(
        lines(Style::Daemon, Format::Journald, some_events),
        [
            "<3>app: configuration: bad",
            "<4>app: rejected 192.0.2.1:4433: no step=tee.policy",
            "<6>app: listening on 127.0.0.1:1 path=\"/a b\" n=3 ok=true",
            "<7>app: GET /x 200",
        ]
    );
}

#[test]
fn plain_daemon_lines_are_the_message_after_the_app_name() {
    let out = lines(Style::Daemon, Format::Plain, some_events);
    assert_eq!(out[0], "app: configuration: bad");
    assert_eq!(out[1], "app: rejected 192.0.2.1:4433: no step=tee.policy");
    assert!(out[2].starts_with("app: listening on 127.0.0.1:1 "));
}

#[test]
fn cli_lines_name_warnings_and_errors() {
    let out = lines(Style::Cli, Format::Plain, some_events);
    assert_eq!(out[0], "app: error: configuration: bad");
    assert!(out[1].starts_with("app: WARNING: rejected 192.0.2.1:4433: no"));
    assert!(out[2].starts_with("app: listening on"));
}

#[test]
fn json_lines_hold_the_fields() {
    let out = lines(Style::Daemon, Format::Json, some_events);
    let rejected: serde_json::Value = serde_json::from_str(&out[1]).unwrap();
    assert_eq!(rejected["level"], "WARN");
    assert_eq!(rejected["app"], "app");
    assert_eq!(rejected["message"], "rejected 192.0.2.1:4433: no");
    assert_eq!(rejected["peer"], "192.0.2.1:4433");
    assert_eq!(rejected["step"], "tee.policy");
    let listening: serde_json::Value = serde_json::from_str(&out[2]).unwrap();
    assert_eq!(listening["n"], 3);
    assert_eq!(listening["ok"], true);
    assert_eq!(listening["path"], "/a b");
}

#[test]
fn formats_parse_by_name() {
    assert_eq!(Format::parse("journald"), Some(Format::Journald));
    assert_eq!(Format::parse(" PLAIN "), Some(Format::Plain));
    assert_eq!(Format::parse("json"), Some(Format::Json));
    assert_eq!(Format::parse("syslog"), None);
}

#[test]
fn journal_stream_must_name_this_stderr() {
    assert!(journal_stream_is("2049:123456", 2049, 123456));
    assert!(!journal_stream_is("2049:123456", 2049, 1));
    assert!(!journal_stream_is("2049", 2049, 123456));
    assert!(!journal_stream_is("", 0, 0));
}

#[test]
fn priorities_follow_syslog() {
    assert_eq!(priority(Level::ERROR), 3);
    assert_eq!(priority(Level::WARN), 4);
    assert_eq!(priority(Level::INFO), 6);
    assert_eq!(priority(Level::DEBUG), 7);
    assert_eq!(priority(Level::TRACE), 7);
}
