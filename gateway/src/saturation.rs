//! Whether the gateway is near saturation, measured rather than guessed from a count of
//! calls: the share of wall time the runtime's workers spent busy over the last window
//! (tokio's per-worker busy durations). A worker the host leaves waiting for a CPU in the
//! middle of its work counts as busy too, so the figure also rises when the machine,
//! not the gateway, is short of CPU — which is when the others' calls start to wait.
//!
//! Calls in flight are a poor signal for this: with fast nodes one thread saturates at a
//! few dozen calls in flight, with slow ones thousands are cheap. Nor does holding an
//! origin to a few calls in flight slow it down when each takes a millisecond; so while
//! congested, each window also gives every origin an allowance of new calls: the last
//! window's calls, scaled towards the busy threshold, shared max-min fairly (an origin
//! that asks for less than an equal share keeps all it asks; the rest is split among the
//! others). Only origins above an equal share are ever held back (their new streams
//! refused with REFUSED_STREAM), never below `min_share_per_second`. Admission reads
//! two atomics on each new stream; the watcher does the rest once a window.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tongban_runtime::process::shutdown::ShutdownSignal;

/// How often busy time is read.
pub const WINDOW: Duration = Duration::from_millis(50);
/// How long the gateway stays congested after a busy window: one quiet window (the
/// flood held back) must not let the whole flood back in at once.
pub const HOLD: Duration = Duration::from_secs(1);

/// Admission's slots: one per two-digit province code.
pub const SLOTS: usize = 100;

/// No allowance: the origin is not held back by rate.
const UNLIMITED: u32 = u32::MAX;

/// The measured state, shared with admission.
#[derive(Debug)]
pub struct Saturation {
    congested: AtomicBool,
    /// The last window's busy share, in thousandths (for `/metrics`).
    busy_permille: AtomicU32,
    /// Streams each origin started in the current window.
    started: [AtomicU32; SLOTS],
    /// Streams each origin may start in the current window.
    allowance: [AtomicU32; SLOTS],
}

impl Default for Saturation {
    fn default() -> Self {
        Self {
            congested: AtomicBool::new(false),
            busy_permille: AtomicU32::new(0),
            started: std::array::from_fn(|_| AtomicU32::new(0)),
            allowance: std::array::from_fn(|_| AtomicU32::new(UNLIMITED)),
        }
    }
}

impl Saturation {
    /// Whether a recent window was busier than the threshold.
    pub fn congested(&self) -> bool {
        self.congested.load(Ordering::Relaxed)
    }

    pub fn busy_ratio(&self) -> f64 {
        f64::from(self.busy_permille.load(Ordering::Relaxed)) / 1000.0
    }

    /// Marks the gateway congested or not (tests, and the watcher).
    pub fn set_congested(&self, congested: bool) {
        self.congested.store(congested, Ordering::Relaxed);
    }

    /// Counts a stream the origin in `slot` started.
    pub fn started(&self, slot: usize) {
        self.started[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the origin in `slot` has started all the streams this window allows it.
    pub fn over_allowance(&self, slot: usize) -> bool {
        self.started[slot].load(Ordering::Relaxed) >= self.allowance[slot].load(Ordering::Relaxed)
    }

    /// Ends a window: the next window's allowances from the streams each origin started
    /// in this one. Nobody is held back unless the gateway is congested and there is
    /// someone to protect: an origin using at most half an equal share of the window's
    /// calls while another uses more than an equal share (one origin alone, or several
    /// alike, may use the whole gateway). Then the heavy origins' calls are scaled by
    /// `threshold / busy` (within half and a quarter more, so it neither collapses on
    /// one busy window nor floods back) and shared max-min fairly among them; the light
    /// ones keep all they ask. An origin held stays held while congested: its count says
    /// only what it was allowed.
    fn steer(&self, busy: f64, threshold: f64, min_share: u32) {
        let started: Vec<u32> = self
            .started
            .iter()
            .map(|s| s.swap(0, Ordering::Relaxed))
            .collect();
        let held: Vec<bool> = self
            .allowance
            .iter()
            .map(|a| a.load(Ordering::Relaxed) != UNLIMITED)
            .collect();
        let total: u64 = started.iter().map(|&n| u64::from(n)).sum();
        let active = started.iter().filter(|&&n| n > 0).count().max(1) as u64;
        // To start holding: heavy origins use more than an equal share, a light one at
        // most half of one. Once holding, the held are the heavy ones (their counts say
        // only what they were allowed) and any other origin still calling is protected.
        let holding = held.contains(&true);
        let heavy: Vec<bool> = started
            .iter()
            .zip(&held)
            .map(|(&n, &held)| held || (!holding && u64::from(n) * active > total))
            .collect();
        let light = started
            .iter()
            .zip(&heavy)
            .any(|(&n, &heavy)| n > 0 && !heavy && (holding || u64::from(n) * active * 2 <= total));
        if !self.congested() || !light || !heavy.contains(&true) {
            for a in &self.allowance {
                a.store(UNLIMITED, Ordering::Relaxed);
            }
            return;
        }
        let asked: Vec<u32> = started
            .iter()
            .zip(&heavy)
            .map(|(&n, &heavy)| if heavy { n.max(1) } else { 0 })
            .collect();
        let heavy_total: u64 = asked.iter().map(|&n| u64::from(n)).sum();
        let scale = (threshold / busy.max(0.01)).clamp(0.5, 1.25);
        let target = (heavy_total as f64 * scale).ceil() as u64;
        let share = max_min_share(&asked, target).max(min_share);
        for (allowance, &heavy) in self.allowance.iter().zip(&heavy) {
            allowance.store(if heavy { share } else { UNLIMITED }, Ordering::Relaxed);
        }
    }

    /// Reads the runtime's busy time every [`WINDOW`] until `shutdown`: congested from a
    /// window busier than `threshold` (a share of the workers' wall time) until [`HOLD`]
    /// after the last such window.
    pub async fn watch(
        self: Arc<Self>,
        threshold: f64,
        min_share_per_second: u32,
        shutdown: ShutdownSignal,
    ) {
        let windows_a_second = (Duration::from_secs(1).as_millis() / WINDOW.as_millis()) as u32;
        let min_share = (min_share_per_second / windows_a_second.max(1)).max(1);
        let metrics = tokio::runtime::Handle::current().metrics();
        let busy = || -> Duration {
            (0..metrics.num_workers())
                .map(|w| metrics.worker_total_busy_duration(w))
                .sum()
        };
        let workers = metrics.num_workers().max(1) as f64;
        let (mut last_busy, mut last_at) = (busy(), Instant::now());
        let mut congested_until: Option<Instant> = None;
        let mut ticks = tokio::time::interval(WINDOW);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    // Draining: nobody is held back by a measure no longer taken.
                    self.set_congested(false);
                    self.steer(0.0, threshold, min_share);
                    return;
                }
                _ = ticks.tick() => {}
            }
            let now = Instant::now();
            // A short window (the interval's first tick) says nothing: busy time is
            // reported when a worker parks, in steps larger than it.
            if now.duration_since(last_at) < WINDOW / 2 {
                continue;
            }
            let now_busy = busy();
            let wall = now.duration_since(last_at).as_secs_f64() * workers;
            let ratio = (now_busy.saturating_sub(last_busy).as_secs_f64() / wall).min(1.0);
            (last_busy, last_at) = (now_busy, now);
            self.busy_permille
                .store((ratio * 1000.0) as u32, Ordering::Relaxed);
            if ratio >= threshold {
                congested_until = Some(now + HOLD);
            }
            self.set_congested(congested_until.is_some_and(|until| now < until));
            self.steer(ratio, threshold, min_share);
        }
    }
}

/// The largest share each of the asking origins may have so that the shares sum to at
/// most `target` (water-filling): origins asking less keep what they ask.
fn max_min_share(asked: &[u32], target: u64) -> u32 {
    let mut asking: Vec<u32> = asked.iter().copied().filter(|&n| n > 0).collect();
    asking.sort_unstable();
    let mut left = target;
    let mut remaining = asking.len() as u64;
    for n in asking {
        let equal = left / remaining.max(1);
        if u64::from(n) > equal {
            return u32::try_from(equal).unwrap_or(u32::MAX);
        }
        left -= u64::from(n);
        remaining -= 1;
    }
    // Everyone fits: the share is whatever is left, added to the largest ask.
    u32::try_from(target).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_max_min_fair() {
        // 31 asks 60, 11 asks 3: of 40, 11 keeps its 3 and 31 gets the other 37.
        let mut asked = [0u32; SLOTS];
        asked[31] = 60;
        asked[11] = 3;
        assert_eq!(max_min_share(&asked, 40), 37);
        // Three heavy askers share equally.
        assert_eq!(max_min_share(&[30, 30, 30, 1], 31), 10);
        // Room for all: nobody is limited below the target.
        assert_eq!(max_min_share(&[5, 3], 100), 100);
    }

    #[test]
    fn a_congested_window_holds_only_the_origin_above_its_share() {
        let s = Saturation::default();
        let window = |flood: u32, steady: u32| {
            for _ in 0..flood {
                s.started(31);
            }
            for _ in 0..steady {
                s.started(11);
            }
        };
        // Not congested: nobody is limited.
        window(60, 3);
        s.steer(0.9, 0.5, 2);
        assert!(!s.over_allowance(31));
        s.set_congested(true);
        // Two origins alike: nobody to protect, both may use the gateway.
        window(40, 23);
        s.steer(0.9, 0.5, 2);
        assert!(!s.over_allowance(31) && !s.over_allowance(11));
        // One alone: the same.
        window(60, 0);
        s.steer(0.9, 0.5, 2);
        assert!(!s.over_allowance(31));
        // A flood beside a light origin: busy 0.9 over a threshold of 0.5 scales the
        // flood's 60 to 34; 11 keeps all it asks.
        window(60, 3);
        s.steer(0.9, 0.5, 2);
        for _ in 0..34 {
            assert!(!s.over_allowance(31));
            s.started(31);
        }
        assert!(s.over_allowance(31), "31 has had its 34");
        for _ in 0..50 {
            assert!(!s.over_allowance(11), "11 is not held");
            s.started(11);
        }
        // Held, 31 stays held while congested, though its count is now under 11's: its
        // 34 scale to 19.
        s.steer(0.9, 0.5, 2);
        for _ in 0..19 {
            s.started(31);
        }
        assert!(s.over_allowance(31), "31 is still held");
        assert!(!s.over_allowance(11));
        // Quiet again: nobody is held.
        s.set_congested(false);
        s.steer(0.1, 0.5, 2);
        assert!(!s.over_allowance(31));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_busy_runtime_is_congested_and_a_quiet_one_recovers() {
        let trigger = tongban_runtime::process::shutdown::Shutdown::new();
        let saturation = Arc::new(Saturation::default());
        let watcher = tokio::spawn(saturation.clone().watch(0.5, 40, trigger.signal()));
        tokio::time::sleep(WINDOW * 3).await;
        assert!(!saturation.congested(), "idle: {}", saturation.busy_ratio());
        // Hold the only worker for a few windows, in one poll.
        std::thread::sleep(WINDOW * 4);
        // The busy time reaches the metrics when the worker next parks.
        tokio::time::sleep(WINDOW * 3).await;
        assert!(saturation.congested(), "busy: {}", saturation.busy_ratio());
        tokio::time::sleep(HOLD + WINDOW * 4).await;
        assert!(
            !saturation.congested(),
            "quiet again: {}",
            saturation.busy_ratio()
        );
        trigger.trigger();
        watcher.await.unwrap();
    }
}
