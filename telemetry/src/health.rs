//! What `/healthz` reports: each component that started, and whether it is stuck. A component is stuck when it
//! has been failing to hand its output on (a publish retried, a webhook batch the bus refused) for longer than
//! the grace period; it recovers at its next success. A stage wedged behind a record it cannot send is then
//! visible to a liveness probe instead of answering "ok". `/readyz` also waits for the components a process is
//! expected to run (`expect`) to start: a collector whose programs are not attached yet is not ready.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How long a component may keep failing before `/healthz` reports it.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct State {
    /// False from `expect` until the component's start.
    started: bool,
    failing_since: Option<Instant>,
    reason: String,
}

static COMPONENTS: LazyLock<DashMap<String, State>> = LazyLock::new(DashMap::new);

/// The process will run this component: until it starts, `/readyz` answers 503 (`/healthz` lists it as
/// starting, healthy).
pub fn expect(component: &str) {
    COMPONENTS.entry(component.to_owned()).or_insert(State {
        started: false,
        failing_since: None,
        reason: String::new(),
    });
}

/// A component started; it is listed, healthy.
pub fn started(component: &str) {
    COMPONENTS.insert(component.to_owned(), State { started: true, failing_since: None, reason: String::new() });
}

/// A component stopped on purpose; it is no longer listed.
pub fn stopped(component: &str) {
    COMPONENTS.remove(component);
}

/// The component could not do its work just now (the first failure starts the clock, later ones keep it).
pub fn failing(component: &str, reason: &str) {
    let mut state = COMPONENTS.entry(component.to_owned()).or_insert(State {
        started: true,
        failing_since: None,
        reason: String::new(),
    });
    state.failing_since.get_or_insert_with(Instant::now);
    state.reason = reason.to_owned();
}

/// The component did its work; any failure is over.
pub fn succeeded(component: &str) {
    if let Some(mut state) = COMPONENTS.get_mut(component)
        && state.failing_since.is_some()
    {
        state.failing_since = None;
        state.reason.clear();
    }
}

/// One line per component, and whether all are healthy: `detect ok`, `collect starting`, `sink stuck for 41 s:
/// <reason>`. A component still starting is healthy (a liveness probe must not kill it for that).
pub fn report(now: Instant, stuck_after: Duration) -> (bool, String) {
    let (lines, _) = lines(now, stuck_after);
    let healthy = lines.iter().all(|(_, ok)| *ok);
    (healthy, lines.into_iter().map(|(line, _)| line + "\n").collect())
}

/// `report`'s lines, and whether the process is ready: some component listed, every one started and none stuck.
pub fn readiness(now: Instant, stuck_after: Duration) -> (bool, String) {
    let (lines, all_started) = lines(now, stuck_after);
    let ready = !lines.is_empty() && all_started && lines.iter().all(|(_, ok)| *ok);
    (ready, lines.into_iter().map(|(line, _)| line + "\n").collect())
}

/// Each component's line and whether it is healthy, sorted; and whether every one has started.
fn lines(now: Instant, stuck_after: Duration) -> (Vec<(String, bool)>, bool) {
    let mut all_started = true;
    let mut lines: Vec<(String, bool)> = COMPONENTS
        .iter()
        .map(|entry| {
            all_started &= entry.started;
            match entry.failing_since.map(|since| now.saturating_duration_since(since)) {
                Some(failing) if failing >= stuck_after => {
                    (format!("{} stuck for {} s: {}", entry.key(), failing.as_secs(), entry.reason), false)
                }
                Some(failing) => {
                    (format!("{} retrying for {} s: {}", entry.key(), failing.as_secs(), entry.reason), true)
                }
                None if !entry.started => (format!("{} starting", entry.key()), true),
                None => (format!("{} ok", entry.key()), true),
            }
        })
        .collect();
    lines.sort();
    (lines, all_started)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_failing_past_the_grace_is_reported_until_it_succeeds() {
        started("health-test-a");
        started("health-test-b");
        failing("health-test-a", "publish to t failed");
        let start = Instant::now();
        let (healthy, text) = report(start, Duration::from_secs(30));
        assert!(healthy, "{text}");
        assert!(text.contains("health-test-a retrying for 0 s: publish to t failed"), "{text}");
        let (healthy, text) = report(start + Duration::from_secs(31), Duration::from_secs(30));
        assert!(!healthy);
        assert!(text.contains("health-test-a stuck for 3"), "{text}");
        assert!(text.contains("health-test-b ok"), "{text}");
        succeeded("health-test-a");
        let (_, text) = report(start + Duration::from_secs(31), Duration::from_secs(30));
        assert!(text.contains("health-test-a ok"), "{text}");
        stopped("health-test-a");
        stopped("health-test-b");
    }

    /// Other tests in this binary list their own components; only this test's lines and the verdict matter.
    #[test]
    fn an_expected_component_is_not_ready_until_it_starts_and_not_ready_when_stuck() {
        let start = Instant::now();
        expect("health-test-ready");
        let (ready, text) = readiness(start, Duration::from_secs(30));
        assert!(!ready, "{text}");
        assert!(text.contains("health-test-ready starting"), "{text}");
        let (healthy, _) = report(start, Duration::from_secs(30));
        assert!(healthy, "a component starting is alive");
        started("health-test-ready");
        // Expecting it again (a second start path) does not make it wait again.
        expect("health-test-ready");
        let (_, text) = readiness(start, Duration::from_secs(30));
        assert!(text.contains("health-test-ready ok"), "{text}");
        failing("health-test-ready", "publish failed");
        let (ready, text) = readiness(start + Duration::from_secs(31), Duration::from_secs(30));
        assert!(!ready, "{text}");
        stopped("health-test-ready");
        let (_, text) = readiness(start, Duration::from_secs(30));
        assert!(!text.contains("health-test-ready"), "{text}");
    }
}
