//! Wake-ups by LISTEN/NOTIFY.
//!
//! A notification only says "read again": PostgreSQL drops those sent while a listener
//! is disconnected, so the reader re-reads after every reconnect too, and on a timer.
//! Nothing is ever learnt from a notification's payload alone.

use std::{sync::Arc, time::Duration};

use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::Notify;

use crate::process::shutdown::ShutdownSignal;

/// How long to wait before listening again after the database refused.
const RETRY: Duration = Duration::from_secs(1);

/// Listens on `channels` until shutdown, waking `wake` on each notification and each
/// time the listener (re)connects, when a notification may have been missed.
pub async fn wake_on_notify(
    pool: PgPool,
    channels: &'static [&'static str],
    wake: Arc<Notify>,
    shutdown: ShutdownSignal,
) {
    wake_on_notify_from_others(pool, channels, None, wake, shutdown).await
}

/// The same, passing over notifications whose payload is `own`: a process that sends
/// its own name as the payload has already woken itself, and each needless wake-up is a
/// needless read of the database.
pub async fn wake_on_notify_from_others(
    pool: PgPool,
    channels: &'static [&'static str],
    own: Option<Arc<str>>,
    wake: Arc<Notify>,
    shutdown: ShutdownSignal,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let listening = listen(&pool, channels, own.as_deref(), &wake);
        tokio::select! {
            _ = &mut stop => return,
            Err(error) = listening => {
                tracing::warn!(%error, ?channels, "database wake-ups lost; listening again");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Listens until the database fails; only returns an error.
async fn listen(
    pool: &PgPool,
    channels: &'static [&'static str],
    own: Option<&str>,
    wake: &Notify,
) -> Result<std::convert::Infallible, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all(channels.iter().copied()).await?;
    // Anything sent before this point was missed: read again.
    wake_all(wake);
    loop {
        match listener.try_recv().await? {
            Some(note) if own.is_some_and(|own| note.payload() == own) => continue,
            Some(_) => {}
            // Reconnected: the gap may have held notifications.
            None => listener.listen_all(channels.iter().copied()).await?,
        }
        wake_all(wake);
    }
}

/// Wakes every task waiting now, and the next one to wait if none is.
fn wake_all(wake: &Notify) {
    wake.notify_waiters();
    wake.notify_one();
}
