//! Check 14: every call of the run answered within the timeout the node would use. A
//! call that got no answer in time fails, named with its time; one slower than half
//! the timeout is reported as slow (the node's retries and circuit would feel it).

use crate::platform::conformance::{
    probe::{Probe, Timing},
    report::Verdict,
};

/// Calls listed by name in a reason.
const LISTED: usize = 5;

fn describe(t: &Timing) -> String {
    format!(
        "{} {} {} (check {}) {} {} ms",
        t.operation,
        t.method,
        t.path,
        t.check.number(),
        if t.timed_out {
            "got no answer within"
        } else {
            "took"
        },
        t.latency.as_millis()
    )
}

fn listed(timings: &[&Timing]) -> String {
    let mut shown: Vec<String> = timings.iter().take(LISTED).map(|t| describe(t)).collect();
    if timings.len() > LISTED {
        shown.push(format!("and {} more", timings.len() - LISTED));
    }
    shown.join("; ")
}

/// 14: the latencies of every call made before it.
pub fn within_timeout(probe: &Probe) -> Verdict {
    let timings = probe.timings();
    let timeout = probe.timeout();
    if timings.is_empty() {
        return Verdict::skip("no call was made");
    }
    let late: Vec<&Timing> = timings
        .iter()
        .filter(|t| t.timed_out || t.latency > timeout)
        .collect();
    let slow: Vec<&Timing> = timings
        .iter()
        .filter(|t| !t.timed_out && t.latency > timeout / 2 && t.latency <= timeout)
        .collect();
    let slow_note = if slow.is_empty() {
        String::new()
    } else {
        format!(
            "; slow (over half the timeout, {} ms): {}",
            (timeout / 2).as_millis(),
            listed(&slow)
        )
    };
    if !late.is_empty() {
        return Verdict::fail(format!(
            "{} of {} calls got no answer within the timeout of {} ms: {}{slow_note}",
            late.len(),
            timings.len(),
            timeout.as_millis(),
            listed(&late)
        ));
    }
    let slowest = timings
        .iter()
        .max_by_key(|t| t.latency)
        .map(|t| {
            format!(
                "{} {} in {} ms",
                t.operation,
                t.method,
                t.latency.as_millis()
            )
        })
        .unwrap_or_default();
    Verdict::pass(format!(
        "all {} calls answered within the timeout of {} ms (slowest: {slowest}){slow_note}",
        timings.len(),
        timeout.as_millis()
    ))
}
