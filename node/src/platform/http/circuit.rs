//! The circuit in front of the platform: after `failures` consecutive failed calls the
//! node stops calling for `open_for` and fails fast, then lets one probe call through
//! (half-open): its success closes the circuit, its failure opens it again.
//!
//! Written here rather than taken from a crate: the maintained breakers (`failsafe`,
//! `tower`'s ecosystem) wrap a whole service or future and hand back their own error
//! type, while the adapter needs three small things they do not give cheaply: the last
//! failure's sentence kept so a fast failure says *why* the platform is considered down,
//! a permit that gives the half-open slot back when a probe's future is dropped
//! (cancelled) without an outcome, and a clock the tests can move. That is 150 lines.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// What the circuit is doing now.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// Open time is over: one probe call may go; `probing` while it is under way.
    HalfOpen {
        probing: bool,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// The sentence of the last failure, for fast failures and readiness.
    last_error: String,
    /// Times the circuit opened since start.
    opens: u64,
}

/// A circuit breaker (cheap to clone: the clones share the state).
#[derive(Clone, Debug)]
pub struct Circuit {
    failures: u32,
    open_for: Duration,
    inner: Arc<Mutex<Inner>>,
}

/// A call was refused because the circuit is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    /// How long until a probe call may go.
    pub retry_in: Duration,
    /// The failure that opened it.
    pub last_error: String,
}

/// How a call that went through ended, for the circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The platform answered (whatever it answered).
    Answered,
    /// It could not be reached or did not answer in time.
    Failed,
}

/// What a call holds while it runs; give it the call's verdict with [`Permit::settle`].
/// Dropped without a verdict (the call's future was cancelled), it settles nothing
/// but frees the half-open slot, so another probe may go.
#[derive(Debug)]
pub struct Permit {
    circuit: Circuit,
    probe: bool,
    settled: bool,
}

/// What settling a call changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// The circuit opened (again).
    Opened,
    /// A probe succeeded: the circuit closed.
    Closed,
}

impl Circuit {
    /// A closed circuit that opens after `failures` (at least 1) consecutive failures
    /// for `open_for`.
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for,
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed { failures: 0 },
                last_error: String::new(),
                opens: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state stays consistent at every await-free step, so a panic elsewhere
        // while holding the lock leaves nothing half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a call now, or refuses it while the circuit is open.
    pub fn admit(&self) -> Result<Permit, Open> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<Permit, Open> {
        let mut inner = self.lock();
        let probe = match inner.state {
            State::Closed { .. } => false,
            State::Open { until } if now >= until => {
                inner.state = State::HalfOpen { probing: true };
                true
            }
            State::Open { until } => {
                return Err(Open {
                    retry_in: until - now,
                    last_error: inner.last_error.clone(),
                });
            }
            State::HalfOpen { probing: false } => {
                inner.state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => {
                return Err(Open {
                    retry_in: Duration::ZERO,
                    last_error: inner.last_error.clone(),
                });
            }
        };
        Ok(Permit {
            circuit: self.clone(),
            probe,
            settled: false,
        })
    }

    /// While calls are refused (open, its time not over), the failure that opened the
    /// circuit. Once a probe call may go, the circuit no longer speaks for the platform:
    /// what the probe learns does.
    pub fn open_error(&self) -> Option<String> {
        self.open_error_at(Instant::now())
    }

    fn open_error_at(&self, now: Instant) -> Option<String> {
        let inner = self.lock();
        match inner.state {
            State::Open { until } if now < until => Some(inner.last_error.clone()),
            _ => None,
        }
    }

    /// Times the circuit opened since start.
    pub fn opens(&self) -> u64 {
        self.lock().opens
    }

    fn settle_at(&self, probe: bool, verdict: Verdict, error: &str, now: Instant) -> Change {
        let mut inner = self.lock();
        match verdict {
            Verdict::Answered => {
                let was_open = !matches!(inner.state, State::Closed { .. });
                inner.state = State::Closed { failures: 0 };
                if probe || was_open {
                    Change::Closed
                } else {
                    Change::None
                }
            }
            Verdict::Failed => {
                inner.last_error = error.to_owned();
                let open = match inner.state {
                    State::Closed { failures } => failures + 1 >= self.failures,
                    // A probe failed: open again. Another call admitted before the
                    // circuit opened, failing late, changes nothing.
                    State::HalfOpen { .. } => probe,
                    State::Open { .. } => false,
                };
                if open {
                    inner.state = State::Open {
                        until: now + self.open_for,
                    };
                    inner.opens += 1;
                    Change::Opened
                } else {
                    if let State::Closed { failures } = &mut inner.state {
                        *failures += 1;
                    }
                    Change::None
                }
            }
        }
    }
}

impl Permit {
    /// Records how the call ended; returns what that changed.
    pub fn settle(mut self, verdict: Verdict, error: &str) -> Change {
        self.settled = true;
        self.circuit
            .settle_at(self.probe, verdict, error, Instant::now())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.probe && !self.settled {
            let mut inner = self.circuit.lock();
            if inner.state == (State::HalfOpen { probing: true }) {
                inner.state = State::HalfOpen { probing: false };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(circuit: &Circuit, now: Instant, error: &str) -> Change {
        let permit = circuit.admit_at(now).unwrap();
        let probe = permit.probe;
        std::mem::forget(permit);
        circuit.settle_at(probe, Verdict::Failed, error, now)
    }

    #[test]
    fn opens_after_consecutive_failures_and_fails_fast_with_the_last_error() {
        let circuit = Circuit::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(fail(&circuit, t0, "refused"), Change::None);
        // A success in between starts the count again.
        circuit.settle_at(false, Verdict::Answered, "", t0);
        assert_eq!(fail(&circuit, t0, "a"), Change::None);
        assert_eq!(fail(&circuit, t0, "b"), Change::None);
        assert_eq!(fail(&circuit, t0, "timed out"), Change::Opened);
        assert_eq!(circuit.opens(), 1);
        let refused = circuit.admit_at(t0 + Duration::from_secs(1)).unwrap_err();
        assert_eq!(refused.last_error, "timed out");
        assert_eq!(refused.retry_in, Duration::from_secs(4));
        assert_eq!(
            circuit
                .open_error_at(t0 + Duration::from_secs(1))
                .as_deref(),
            Some("timed out")
        );
        assert_eq!(circuit.open_error_at(t0 + Duration::from_secs(6)), None);
    }

    #[test]
    fn half_open_lets_one_probe_through_which_closes_or_reopens() {
        let circuit = Circuit::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(fail(&circuit, t0, "down"), Change::Opened);
        let later = t0 + Duration::from_secs(6);
        let probe = circuit.admit_at(later).unwrap();
        assert!(probe.probe);
        // Only one probe at a time.
        assert!(circuit.admit_at(later).is_err());
        // The probe fails: open again, counted.
        assert_eq!(
            circuit.settle_at(true, Verdict::Failed, "still down", later),
            Change::Opened
        );
        std::mem::forget(probe);
        assert_eq!(circuit.opens(), 2);
        assert!(circuit.admit_at(later + Duration::from_secs(1)).is_err());
        // The next probe succeeds: closed, calls flow.
        let again = later + Duration::from_secs(6);
        let probe = circuit.admit_at(again).unwrap();
        assert_eq!(probe.settle(Verdict::Answered, ""), Change::Closed);
        assert!(circuit.open_error().is_none());
        assert!(!circuit.admit_at(again).unwrap().probe);
    }

    #[test]
    fn a_cancelled_probe_frees_the_half_open_slot() {
        let circuit = Circuit::new(1, Duration::ZERO);
        let t0 = Instant::now();
        fail(&circuit, t0, "down");
        let probe = circuit.admit_at(t0).unwrap();
        assert!(circuit.admit_at(t0).is_err());
        drop(probe);
        assert!(circuit.admit_at(t0).unwrap().probe);
    }

    #[test]
    fn a_late_failure_of_a_call_admitted_before_does_not_reopen() {
        let circuit = Circuit::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        let early = circuit.admit_at(t0).unwrap();
        fail(&circuit, t0, "down");
        let probe_at = t0 + Duration::from_secs(6);
        let probe = circuit.admit_at(probe_at).unwrap();
        // The early call fails late, while the probe is under way.
        assert_eq!(
            circuit.settle_at(early.probe, Verdict::Failed, "late", probe_at),
            Change::None
        );
        std::mem::forget(early);
        assert_eq!(probe.settle(Verdict::Answered, ""), Change::Closed);
        assert_eq!(circuit.opens(), 1);
    }
}
