//! The process's open-files limit (`RLIMIT_NOFILE`): every connection a listener holds
//! is a file, so a listener's connection cap means something only if the process may
//! open that many files beside everything else it keeps open. At the common soft limit
//! of 1,024 a flood of one listener took every file and the others' accepts failed
//! (`EMFILE`), probes included.
//!
//! [`raise_to`] lifts the soft limit toward what the caps need, up to the hard limit, as
//! Go's runtime does at start for every program; what it cannot get, the caller takes
//! out of the caps it can lower.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft limit in force after raising it to `wanted` files where the hard limit
/// allows (never lowered). `None` when the process has no limit.
pub fn raise_to(wanted: u64) -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current?;
    if current >= wanted {
        return Some(current);
    }
    let target = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
    if target <= current {
        return Some(current);
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(target),
        Err(error) => {
            tracing::warn!(%error, current, wanted, "the open-files limit could not be raised");
            Some(current)
        }
    }
}

/// The soft limit in force now (`None`: unlimited).
pub fn current() -> Option<u64> {
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    #[test]
    fn raising_never_lowers() {
        let now = super::current();
        assert_eq!(super::raise_to(16), now);
    }
}
