//! The one logging set-up of the binaries (feature `log`): [`init`] installs a `tracing`
//! subscriber that prints each event as one line on stderr.
//!
//! - **Line:** `app: message key=value …`, `app` the name the binary gives (not the module).
//!   A text line leaves out a field whose value the message already shows (`rejected {peer}: …`
//!   with `peer` as a field, `GET /path 200` with `status`, read as before); JSON carries every
//!   field.
//! - **Filter:** `RUST_LOG` (`tracing-subscriber`'s `EnvFilter` syntax, e.g. `debug` or
//!   `warn,ratls=debug`); unset, [`DEFAULT_FILTER`]: our crates at `info`, dependencies at
//!   `warn`.
//! - **Format** ([`Format`], overridden by `COSMIAN_LOG_FORMAT=plain|journald|json`):
//!   - `journald`: `<N>app: message key=value …`, where `<N>` is the syslog priority that
//!     journald's `SyslogLevelPrefix=` reads (error 3, warning 4, info 6, debug and trace 7) and
//!     strips; no colours, no timestamp (the journal adds it). The default of a daemon whose
//!     stderr is the journal (systemd's `JOURNAL_STREAM` names it).
//!   - `plain`: the same line without `<N>`: what a terminal, a test or a log file gets.
//!   - `json`: one object per line: `level`, `app`, `target`, `message` and the event's fields.
//! - **Style** ([`Style`]): a daemon's line is `app: message` at every level (the priority
//!   carries the level); a command-line tool's warnings and errors read `app: WARNING: …` and
//!   `app: error: …`, as a user expects from a CLI.
//!
//! Libraries only emit events (`tracing::info!` and friends); only a binary calls [`init`].

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

#[cfg(test)]
mod tests;

/// The filter without `RUST_LOG`: the workspace's crates (`ratls`, `cosmian_*`) at `info`,
/// everything else (hyper, h2, rustls' users) at `warn`.
pub const DEFAULT_FILTER: &str = "warn,ratls=info,cosmian=info";

/// The variable that overrides the format.
pub const FORMAT_VAR: &str = "COSMIAN_LOG_FORMAT";

/// Who reads the lines: an operator through journald or a log file, or a user at a terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// A long-running service (agent, proxy, certtool's renewal): `app: message` at every
    /// level; journald's priority prefix by default under systemd.
    Daemon,
    /// A command run by hand: `app: WARNING: message`, `app: error: message`; plain by default.
    Cli,
}

/// How each event is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `app: message key=value …`.
    Plain,
    /// `<N>app: message key=value …`, `N` the syslog priority of the level.
    Journald,
    /// `{"level":…,"app":…,"target":…,"message":…,key:value…}`.
    Json,
}

impl Format {
    /// `plain`, `journald` or `json` (as `COSMIAN_LOG_FORMAT` takes them).
    pub fn parse(name: &str) -> Option<Self> {
        match name
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "plain" => Some(Self::Plain),
            "journald" => Some(Self::Journald),
            "json" => Some(Self::Json),
            _ => None,
        }
    }

    /// The format for `style` in this process: `COSMIAN_LOG_FORMAT` if set; otherwise
    /// `journald` for a daemon whose stderr is the journal, `plain` for anything else. The
    /// second value says why a set `COSMIAN_LOG_FORMAT` was not used.
    pub fn from_env(style: Style) -> (Self, Option<String>) {
        let default = if style == Style::Daemon && stderr_is_journal() {
            Self::Journald
        } else {
            Self::Plain
        };
        match std::env::var(FORMAT_VAR) {
            Ok(name) if !name.trim().is_empty() => match Self::parse(&name) {
                Some(format) => (format, None),
                None => (
                    default,
                    Some(format!(
                        "{FORMAT_VAR}={name:?} ignored: expected plain, journald or json"
                    )),
                ),
            },
            _ => (default, None),
        }
    }
}

/// How much a binary says, from its `--quiet` / `--verbose` flags (every binary has both).
/// `RUST_LOG`, when set, wins over them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verbosity {
    /// `--quiet`: errors only (no warnings, notes or progress).
    Quiet,
    /// Neither flag: [`DEFAULT_FILTER`].
    #[default]
    Normal,
    /// `-v`: our crates at `debug`, dependencies at `info`.
    Verbose,
    /// `-vv` and more: our crates at `trace`, dependencies at `debug`.
    Trace,
}

impl Verbosity {
    /// From `--quiet` and the number of `--verbose` (`-v`) given; `quiet` wins.
    pub fn from_flags(quiet: bool, verbose: u8) -> Self {
        match (quiet, verbose) {
            (true, _) => Self::Quiet,
            (false, 0) => Self::Normal,
            (false, 1) => Self::Verbose,
            (false, _) => Self::Trace,
        }
    }

    /// The `EnvFilter` directives of this level.
    pub fn filter(self) -> &'static str {
        match self {
            Self::Quiet => "error",
            Self::Normal => DEFAULT_FILTER,
            Self::Verbose => "info,ratls=debug,cosmian=debug",
            Self::Trace => "debug,ratls=trace,cosmian=trace",
        }
    }
}

/// Install the subscriber: events filtered by `RUST_LOG` (else [`DEFAULT_FILTER`]) and written
/// to stderr as [`Format::from_env`] says, each line starting with `app`. Call it first thing
/// in `main`; a second call (or one after another subscriber was set) changes nothing. An
/// unusable `RUST_LOG` or `COSMIAN_LOG_FORMAT` is reported as a warning and replaced by the
/// default.
pub fn init(app: &'static str, style: Style) {
    init_with(app, style, Verbosity::Normal);
}

/// [`init`] at the level of the binary's `--quiet` / `--verbose` flags (unless `RUST_LOG` is
/// set).
pub fn init_with(app: &'static str, style: Style, verbosity: Verbosity) {
    let (format, format_note) = Format::from_env(style);
    let default = verbosity.filter();
    let (filter, filter_note) = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match EnvFilter::builder().parse(&spec) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(default),
                Some(format!("RUST_LOG={spec:?} ignored: {e}")),
            ),
        },
        _ => (EnvFilter::new(default), None),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(layer(app, style, format, std::io::stderr))
        .try_init()
        .is_ok();
    if installed {
        for note in [format_note, filter_note]
            .into_iter()
            .flatten()
        {
            tracing::warn!("{note}");
        }
    }
}

/// The formatting layer `init` installs, writing to `writer` (tests give a buffer).
fn layer<S, W>(
    app: &'static str,
    style: Style,
    format: Format,
    writer: W,
) -> tracing_subscriber::fmt::Layer<S, tracing_subscriber::fmt::format::DefaultFields, Line, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer)
        .event_format(Line { app, style, format })
}

/// The syslog priority of a level, as journald's `SyslogLevelPrefix=` reads it.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Whether `JOURNAL_STREAM` (`DEVICE:INODE`, set by systemd when stdout or stderr goes to the
/// journal) names this process's stderr: a child that inherited the variable but writes
/// elsewhere (a pipe, a terminal) keeps plain lines.
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/fd/2")
            .is_ok_and(|m| journal_stream_is(&stream, m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        false
    }
}

/// `JOURNAL_STREAM`'s value names the file with this device and inode.
fn journal_stream_is(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.trim().parse::<u64>().ok()?, i.trim().parse::<u64>().ok()?)))
        == Some((dev, ino))
}

/// Formats one event as one line (see the module documentation).
#[derive(Debug)]
struct Line {
    app: &'static str,
    style: Style,
    format: Format,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let level = *meta.level();
        if self.format == Format::Json {
            let mut object = serde_json::Map::new();
            object.insert("level".into(), level.as_str().into());
            object.insert("app".into(), self.app.into());
            object.insert("target".into(), meta.target().into());
            object.insert("message".into(), fields.message.into());
            for (name, value) in fields.rest {
                object.insert(name.into(), value);
            }
            return writeln!(writer, "{}", serde_json::Value::Object(object));
        }
        if self.format == Format::Journald {
            write!(writer, "<{}>", priority(level))?;
        }
        write!(writer, "{}: ", self.app)?;
        if self.style == Style::Cli {
            match level {
                Level::ERROR => writer.write_str("error: ")?,
                Level::WARN => writer.write_str("WARNING: ")?,
                _ => {}
            }
        }
        writer.write_str(&fields.message)?;
        for (name, value) in &fields.rest {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if fields.message.contains(&text) {
                continue;
            }
            if is_bare(&text) {
                write!(writer, " {name}={text}")?;
            } else {
                // JSON-quoted: spaces and quotes cannot be mistaken for the next field.
                write!(writer, " {name}={value}")?;
            }
        }
        writeln!(writer)
    }
}

/// A field value printed without quotes: no spaces, quotes or `=` to confuse a reader.
fn is_bare(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
}

/// An event's message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.rest
                .push((field.name(), text.into()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest
                .push((field.name(), value.into()));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.rest
            .push((field.name(), value.into()));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.rest
            .push((field.name(), value.into()));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.rest
            .push((field.name(), value.into()));
    }
}
