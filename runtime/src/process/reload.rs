//! Reload requests, from three sources: SIGHUP (which therefore never terminates a
//! process), a change to a watched file, and an operator's request on the admin
//! listener that waits for the outcome. A process acts on each request by re-reading
//! what it may change while it runs (registry, certificates), keeping what it had when
//! a new file is bad.
//!
//! The file watch polls modification times rather than using inotify: a check every
//! two seconds costs nothing, works on every filesystem (network and container mounts
//! included), and sees a file replaced by rename, as configuration tools write them.

use std::{
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot};

/// Why a reload was requested.
#[derive(Debug)]
pub enum ReloadCause {
    Signal,
    FileChanged(PathBuf),
    /// An operator asked (`force`: apply even what the process's safety checks would
    /// refuse); the outcome goes back on `reply`.
    Requested {
        force: bool,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// An operator's request, as the admin listener hands it to the reloading task.
type Request = (bool, oneshot::Sender<Result<String, String>>);

impl ReloadCause {
    /// Reports the reload's outcome to whoever asked (an admin request), if anyone.
    pub fn answer(self, outcome: Result<String, String>) {
        if let Self::Requested { reply, .. } = self {
            let _ = reply.send(outcome);
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Signal => "SIGHUP".to_owned(),
            Self::FileChanged(path) => format!("{} changed", path.display()),
            Self::Requested { force: false, .. } => "admin request".to_owned(),
            Self::Requested { force: true, .. } => "forced admin request".to_owned(),
        }
    }

    /// Whether an operator asked to apply even what safety checks would refuse.
    pub fn forced(&self) -> bool {
        matches!(self, Self::Requested { force: true, .. })
    }
}

/// Asks a running process to reload (the admin endpoint holds one).
#[derive(Clone, Debug)]
pub struct ReloadHandle(mpsc::Sender<Request>);

impl ReloadHandle {
    /// Requests a reload and waits for its outcome: what was loaded, or why the new
    /// files were rejected (the old ones stay in force).
    pub async fn reload(&self) -> Result<String, String> {
        self.reload_with(false).await
    }

    /// As [`Self::reload`]; `force` applies even what safety checks would refuse.
    pub async fn reload_with(&self, force: bool) -> Result<String, String> {
        let (reply, outcome) = oneshot::channel();
        self.0
            .send((force, reply))
            .await
            .map_err(|_| "the process is shutting down".to_owned())?;
        outcome
            .await
            .map_err(|_| "the reload was abandoned".to_owned())?
    }
}

/// The sources of reload requests of one process.
pub struct ReloadTriggers {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    requests: mpsc::Receiver<Request>,
    watched: Vec<(PathBuf, Option<SystemTime>)>,
    poll: tokio::time::Interval,
}

/// How often watched files are checked.
const WATCH_EVERY: Duration = Duration::from_secs(2);

impl ReloadTriggers {
    /// Installs the SIGHUP handler at once (from here on SIGHUP requests a reload and
    /// no longer terminates the process) and watches `files`.
    pub fn install(files: Vec<PathBuf>) -> (Self, ReloadHandle) {
        let (tx, requests) = mpsc::channel(4);
        #[cfg(unix)]
        let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(error) => {
                tracing::warn!(%error, "SIGHUP handler not installed; reload by the admin endpoint");
                None
            }
        };
        let watched = files
            .into_iter()
            .map(|path| {
                let seen = modified(&path);
                (path, seen)
            })
            .collect();
        let mut poll = tokio::time::interval(WATCH_EVERY);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        (
            Self {
                #[cfg(unix)]
                hangup,
                requests,
                watched,
                poll,
            },
            ReloadHandle(tx),
        )
    }

    /// The next reload request.
    pub async fn next(&mut self) -> ReloadCause {
        loop {
            #[cfg(unix)]
            let hangup = async {
                match &mut self.hangup {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<Option<()>>();
            tokio::select! {
                Some(_) = hangup => return ReloadCause::Signal,
                Some((force, reply)) = self.requests.recv() => {
                    return ReloadCause::Requested { force, reply };
                }
                _ = self.poll.tick() => {
                    for (path, seen) in &mut self.watched {
                        let now = modified(path);
                        if now != *seen {
                            *seen = now;
                            return ReloadCause::FileChanged(path.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Acts on every reload request until `shutdown`: runs `reload` (which returns what it
/// loaded, or why the new files were rejected, the old ones kept), logs the outcome
/// with its cause, and answers whoever asked.
pub async fn serve_reloads(
    triggers: ReloadTriggers,
    shutdown: crate::process::shutdown::ShutdownSignal,
    mut reload: impl FnMut() -> Result<String, String>,
) {
    serve_forcible_reloads(triggers, shutdown, move |_forced| reload()).await;
}

/// As [`serve_reloads`], telling `reload` whether the operator forced this one.
pub async fn serve_forcible_reloads(
    mut triggers: ReloadTriggers,
    shutdown: crate::process::shutdown::ShutdownSignal,
    mut reload: impl FnMut(bool) -> Result<String, String>,
) {
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        let cause = tokio::select! {
            _ = &mut stop => return,
            cause = triggers.next() => cause,
        };
        let why = cause.describe();
        let outcome = reload(cause.forced());
        match &outcome {
            Ok(loaded) => tracing::info!(cause = %why, "reloaded: {loaded}"),
            Err(error) => tracing::error!(
                cause = %why,
                %error,
                "reload rejected; what was in force is kept"
            ),
        }
        cause.answer(outcome);
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_changed_file_and_a_request_each_trigger_a_reload() {
        let dir = std::env::temp_dir().join(format!("tongban-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("registry.toml");
        std::fs::write(&file, "a").unwrap();
        let (mut triggers, handle) = ReloadTriggers::install(vec![file.clone()]);
        let asked = tokio::spawn(async move { handle.reload().await });
        let cause = triggers.next().await;
        assert!(
            matches!(cause, ReloadCause::Requested { force: false, .. }),
            "{cause:?}"
        );
        cause.answer(Ok("loaded".into()));
        assert_eq!(asked.await.unwrap(), Ok("loaded".to_owned()));

        // A new modification time (set explicitly: coarse clocks may not move).
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let cause = tokio::time::timeout(Duration::from_secs(10), triggers.next())
            .await
            .unwrap();
        assert!(
            matches!(&cause, ReloadCause::FileChanged(p) if *p == file),
            "{cause:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
