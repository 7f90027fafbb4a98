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

    /// Triggers this shutdown when the process gets SIGTERM or Ctrl-C.
    pub fn trigger_on_os_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            os_signal().await;
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

async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
