//! Log set-up shared by every binary: `RUST_LOG`-style filtering, human-readable lines on
//! a terminal and one JSON object per line otherwise (or as `TONGBAN_LOG_FORMAT=json|text`
//! says), and log lines that never cost the request path a system call.
//!
//! Lines are appended to an in-memory buffer that a background thread writes to stdout
//! every 50 ms, or sooner when 64 KiB are waiting. tracing-appender's non-blocking writer
//! was measured first (scripts/bench, 1 call in flight): it wakes its thread for every
//! line, which cost the gateway a futex wake and a `write` per relayed call (its audit
//! line) — about two of its seventeen system calls per call. Hence this small writer.

use std::{
    io::{self, Write},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const WAKE_AT: usize = 64 * 1024;
/// Past this much unwritten output the logging thread writes itself (back-pressure
/// instead of unbounded memory when stdout is slow).
const WRITE_THROUGH_AT: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Shared {
    buf: Mutex<(Vec<u8>, bool)>,
    wake: Condvar,
}

/// Flushes buffered log lines and stops the writer thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Ok(mut g) = self.shared.buf.lock() {
            g.1 = true;
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct BufferedStdout(Arc<Shared>);

impl Write for BufferedStdout {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut g = self
            .0
            .buf
            .lock()
            .map_err(|_| io::Error::other("log buffer poisoned"))?;
        g.0.extend_from_slice(bytes);
        if g.0.len() >= WRITE_THROUGH_AT {
            let pending = std::mem::take(&mut g.0);
            io::stdout().write_all(&pending)?;
        } else if g.0.len() >= WAKE_AT {
            self.0.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> fmt::MakeWriter<'a> for BufferedStdout {
    type Writer = BufferedStdout;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn run_writer(shared: Arc<Shared>) {
    let mut out = io::stdout();
    loop {
        let (pending, closed) = {
            let Ok(g) = shared.buf.lock() else { return };
            let Ok((mut g, _)) = shared.wake.wait_timeout(g, FLUSH_EVERY) else {
                return;
            };
            (std::mem::take(&mut g.0), g.1)
        };
        if !pending.is_empty() {
            let _ = out.write_all(&pending);
            let _ = out.flush();
        }
        if closed {
            return;
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable, coloured on a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, fields), for
    /// log pipelines.
    Json,
}

impl LogFormat {
    /// `TONGBAN_LOG_FORMAT` if set to `json` or `text`; else text on a terminal and JSON
    /// otherwise.
    pub fn from_env() -> Self {
        match std::env::var("TONGBAN_LOG_FORMAT")
            .ok()
            .as_deref()
            .map(str::trim)
        {
            Some("json") => Self::Json,
            Some("text") => Self::Text,
            _ if io::IsTerminal::is_terminal(&io::stdout()) => Self::Text,
            _ => Self::Json,
        }
    }
}

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Keep the returned guard alive until exit: dropping it writes what is buffered.
/// Safe to call more than once (later calls change nothing), which tests rely on.
#[must_use = "dropping the guard stops log output"]
pub fn init(default_filter: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let shared = Arc::new(Shared::default());
    let writer = BufferedStdout(shared.clone());
    let thread = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || run_writer(shared))
            .ok()
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer(LogFormat::from_env(), writer))
        .try_init();
    LogGuard { shared, thread }
}

/// The formatting layer for `format`, writing to `writer`.
fn layer<S, W>(format: LogFormat, writer: W) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'a> fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    match format {
        LogFormat::Text => fmt::layer()
            .with_ansi(io::IsTerminal::is_terminal(&io::stdout()))
            .event_format(AuditAwareFormat {
                default: fmt::format::Format::default().with_target(false),
                json: false,
            })
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .event_format(AuditAwareFormat {
                default: fmt::format::Format::default()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
                json: true,
            })
            .with_writer(writer)
            .boxed(),
    }
}

/// Target of the audit trail's events; operators can route it by filter.
pub const AUDIT_TARGET: &str = "tongban::audit";

/// Name of the field that carries an audit line (a JSON object, already escaped by
/// serde_json, so it contains no control characters or ANSI escapes).
pub const AUDIT_FIELD: &str = "audit";

/// The default log format (text or JSON), except that an audit event is written with
/// its JSON line verbatim. The default formatters escape field values character by
/// character (against terminal-escape injection), which made the audit line a tenth of
/// the gateway's instructions per relayed call; the JSON needs no second escaping.
struct AuditAwareFormat<F> {
    default: F,
    /// Whether lines are JSON objects: the audit line is then nested as `"audit"`.
    json: bool,
}

impl<S, N, F> fmt::FormatEvent<S, N> for AuditAwareFormat<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> fmt::FormatFields<'a> + 'static,
    F: fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &fmt::FmtContext<'_, S, N>,
        mut writer: fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if meta.target() != AUDIT_TARGET || meta.fields().field(AUDIT_FIELD).is_none() {
            return self.default.format_event(ctx, writer, event);
        }
        use fmt::time::FormatTime;
        if self.json {
            writer.write_str("{\"timestamp\":\"")?;
            fmt::time::SystemTime.format_time(&mut writer)?;
            write!(
                writer,
                "\",\"level\":\"{}\",\"target\":\"{AUDIT_TARGET}\",\"audit\":",
                meta.level()
            )?;
        } else {
            fmt::time::SystemTime.format_time(&mut writer)?;
            write!(writer, " {:>5} ", meta.level())?;
        }
        let mut line = AuditLine {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut line);
        line.result?;
        if self.json {
            writer.write_char('}')?;
        }
        writeln!(writer)
    }
}

/// Writes an event's audit field, as it is, to the log line.
struct AuditLine<'w, 'b> {
    writer: &'w mut fmt::format::Writer<'b>,
    result: std::fmt::Result,
}

impl tracing::field::Visit for AuditLine<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == AUDIT_FIELD {
            self.result = self.writer.write_str(value);
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if let Ok(mut v) = self.0.lock() {
                v.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> fmt::MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn lines(format: LogFormat) -> Vec<String> {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(layer(format, out.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(case = "310000-20261201-00000001", "delivery failed");
            tracing::info!(target: AUDIT_TARGET, audit = r#"{"method":"m","code":0}"#);
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn json_lines_are_objects_and_the_audit_line_is_nested_verbatim() {
        let lines = lines(LogFormat::Json);
        assert_eq!(lines.len(), 2);
        let event: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(event["level"], "WARN");
        assert_eq!(event["message"], "delivery failed");
        assert_eq!(event["case"], "310000-20261201-00000001");
        let audit: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(audit["target"], AUDIT_TARGET);
        assert_eq!(audit["audit"]["method"], "m");
        assert!(audit["timestamp"].as_str().is_some_and(|t| t.len() > 10));
    }

    #[test]
    fn text_lines_keep_the_audit_json_as_is() {
        let lines = lines(LogFormat::Text);
        assert!(lines[0].contains("delivery failed"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(r#"{"method":"m","code":0}"#),
            "{}",
            lines[1]
        );
    }
}
