//! Whether the platform is up, as `Platform::health` (synchronous, read by the node's
//! readiness) must answer it without calling: the last thing learned, kept here by
//! every call and by a probe of `GET /v1/health` every poll interval, and whether the
//! circuit is open. When it is down, the answer names the platform and says why, in the
//! sentence a TLS or connection failure was explained with (`super::tls::explain`).

use std::sync::Mutex;

use super::circuit::Circuit;

/// The last known state of the platform.
#[derive(Debug)]
pub struct PlatformHealth {
    url: String,
    /// `None` while up; why it is down otherwise.
    down: Mutex<Option<String>>,
}

impl PlatformHealth {
    /// Not known to be up yet: down until the first call or probe answers.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            down: Mutex::new(Some("not reached yet".to_owned())),
        }
    }

    /// The platform answered. Returns true when it was down before.
    pub fn up(&self) -> bool {
        self.set(None)
    }

    /// The platform could not be reached, for `why`. Returns true when it was up before.
    pub fn down(&self, why: &str) -> bool {
        self.set(Some(why.to_owned()))
    }

    fn set(&self, state: Option<String>) -> bool {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        let changed = down.is_some() != state.is_some();
        *down = state;
        changed
    }

    /// `Err` naming the platform and why it is down: the circuit open (with the failure
    /// that opened it), or the last failure.
    pub fn status(&self, circuit: &Circuit) -> Result<(), String> {
        let why = match circuit.open_error() {
            Some(last) => Some(format!(
                "circuit open after repeated failures (calls fail fast); last: {last}"
            )),
            None => self.down.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        };
        match why {
            None => Ok(()),
            Some(why) => Err(format!("platform {} unreachable: {why}", self.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_names_the_platform_and_why_until_it_answers() {
        let health = PlatformHealth::new("https://platform.example:8443");
        let circuit = Circuit::new(1, std::time::Duration::from_secs(60));
        let err = health.status(&circuit).unwrap_err();
        assert_eq!(
            err,
            "platform https://platform.example:8443 unreachable: not reached yet"
        );
        assert!(health.up());
        assert!(health.status(&circuit).is_ok());
        assert!(!health.up());
        assert!(health.down("nothing listens at https://platform.example:8443"));
        assert!(
            health
                .status(&circuit)
                .unwrap_err()
                .ends_with("unreachable: nothing listens at https://platform.example:8443")
        );
        health.up();
        let permit = circuit.admit().unwrap();
        permit.settle(
            super::super::circuit::Verdict::Failed,
            "no answer within 5s",
        );
        let err = health.status(&circuit).unwrap_err();
        assert!(
            err.contains("circuit open") && err.contains("no answer within 5s"),
            "{err}"
        );
    }
}
