//! Where the node's log lines go and which are kept: `tracing` to stderr, as text or one JSON
//! object per line, filtered by `AHNLICH_RAFT_LOG` (an `EnvFilter`: `info`,
//! `info,openraft=warn`, `ahnlich_raft::wal=debug`, …).

use std::fmt;
use std::str::FromStr;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The environment variable holding the filter directives.
pub const LOG_ENV: &str = "AHNLICH_RAFT_LOG";

/// The directives used when `AHNLICH_RAFT_LOG` is unset: this crate's events at info (one line
/// per election, membership change, snapshot, start and stop), openraft's from warn (its info
/// level narrates every message).
pub const DEFAULT_DIRECTIVES: &str = "info,openraft=warn";

/// How each line is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields.message`, …).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("log format must be `text` or `json`, not {other:?}")),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Installs the process's logger: `directives` (or [`DEFAULT_DIRECTIVES`] when `None`) in
/// `format`, to stderr. An unparsable directive is an error naming it.
pub fn init(directives: Option<&str>, format: LogFormat) -> Result<(), String> {
    let directives = directives.unwrap_or(DEFAULT_DIRECTIVES);
    let filter = EnvFilter::builder()
        .parse(directives)
        .map_err(|e| format!("{LOG_ENV}={directives:?} is not a valid log filter: {e}"))?;
    let registry = tracing_subscriber::registry().with(filter).with(QuietBootstrap);
    let text = (format == LogFormat::Text).then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr));
    let json =
        (format == LogFormat::Json).then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr));
    registry.with(text).with(json).try_init().map_err(|e| format!("installing the logger: {e}"))
}

/// Drops the one warning openraft gives on every fresh single-node bootstrap: the write of the
/// bootstrap entry (made under the term-0 vote `initialize` sets) completes after the node has
/// already been elected in term 1, and openraft reports that completion as a stale message.
/// Nothing is wrong; every other warning passes.
struct QuietBootstrap;

impl<S: Subscriber> Layer<S> for QuietBootstrap {
    fn event_enabled(&self, event: &Event<'_>, _ctx: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::WARN || !meta.target().starts_with("openraft::") {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        !is_bootstrap_write_notice(&message.0)
    }
}

/// Whether `message` is openraft's notice that the bootstrap entry's write completed after the
/// first election.
fn is_bootstrap_write_notice(message: &str) -> bool {
    message.starts_with("A message will be ignored because Leader vote changed: msg sent by vote: <T0-")
        && message.ends_with("when (LocalIO Notification)")
}

/// The `message` field of an event, formatted.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bootstrap_write_notice_is_dropped() {
        assert!(is_bootstrap_write_notice(
            "A message will be ignored because Leader vote changed: msg sent by vote: <T0-N42:Q>; current my vote: \
             <T1-N42:Q>; when (LocalIO Notification)"
        ));
        assert!(!is_bootstrap_write_notice(
            "A message will be ignored because Leader vote changed: msg sent by vote: <T3-N42:Q>; current my vote: \
             <T4-N42:Q>; when (LocalIO Notification)"
        ));
        assert!(!is_bootstrap_write_notice(
            "A message will be ignored because Leader vote changed: msg sent by vote: <T0-N42:Q>; current my vote: \
             <T1-N42:Q>; when (HigherVote)"
        ));
    }

    #[test]
    fn log_formats_parse_and_print() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
