//! Graceful shutdown: one cloneable signal that fires on SIGTERM, Ctrl-C, or on demand
//! (tests and the demo stop servers without signals).

use tokio::sync::watch;

/// Sender side: trigger once, every [`ShutdownSignal`] clone completes.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

/// Completes when shutdown has been requested.
#[derive(Clone, Debug)]
pub struct ShutdownSignal {
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Self {
            tx: watch::channel(false).0,
        }
    }

    /// Requests shutdown; idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn signal(&self) -> ShutdownSignal {
        ShutdownSignal {
            rx: self.tx.subscribe(),
        }
    }

    /// Triggers this shutdown when the process gets SIGTERM or Ctrl-C (SIGINT). The
    /// handlers are installed before this returns, so a signal sent as soon as the
    /// process reports it is serving is never met by the default action (exit).
    pub fn trigger_on_os_signals(&self) {
        let this = self.clone();
        let signals = OsSignals::install();
        tokio::spawn(async move {
            signals.recv().await;
            tracing::info!("shutdown requested");
            this.trigger();
        });
    }
}

impl ShutdownSignal {
    /// Waits until shutdown is requested (or its sender is gone).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

/// SIGTERM and SIGINT, registered at once (tokio's `ctrl_c()` would register only when
/// first polled, on the spawned task's first turn).
struct OsSignals {
    #[cfg(unix)]
    streams: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl OsSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let streams = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) {
                (Ok(term), Ok(int)) => Some((term, int)),
                _ => None,
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    async fn recv(self) {
        #[cfg(unix)]
        match self.streams {
            Some((mut term, mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
