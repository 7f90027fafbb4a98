//! Tracing set-up shared by every binary: `RUST_LOG`-style filtering, human or JSON lines.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber. `default_filter` applies when `RUST_LOG` is unset.
/// Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt::layer().with_target(false))
        .try_init();
}
