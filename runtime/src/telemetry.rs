//! Tracing set-up shared by every binary: `RUST_LOG`-style filtering, log lines written
//! by a background thread so a request never waits on a `write` to stdout (the gateway
//! logs an audit line per relayed call).

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Flushes buffered log lines when dropped.
pub type LogGuard = WorkerGuard;

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Keep the returned guard alive until exit: dropping it flushes what is buffered.
/// Safe to call more than once (later calls change nothing), which tests rely on.
#[must_use = "dropping the guard stops log output"]
pub fn init(default_filter: &str) -> WorkerGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Not lossy: audit lines must not be dropped; a full buffer applies back-pressure.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(64 * 1024)
        .finish(std::io::stdout());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .with_writer(writer),
        )
        .try_init();
    guard
}
