//! What `/healthz` reports: each component that started, and whether it is stuck. A component is stuck when it
//! has been failing to hand its output on (a publish retried, a webhook batch the bus refused) for longer than
//! the grace period; it recovers at its next success. A stage wedged behind a record it cannot send is then
//! visible to a liveness probe instead of answering "ok".

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How long a component may keep failing before `/healthz` reports it.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct State {
    failing_since: Option<Instant>,
    reason: String,
}

static COMPONENTS: LazyLock<DashMap<String, State>> = LazyLock::new(DashMap::new);

/// A component started; it is listed, healthy.
pub fn started(component: &str) {
    COMPONENTS.insert(component.to_owned(), State { failing_since: None, reason: String::new() });
}

/// A component stopped on purpose; it is no longer listed.
pub fn stopped(component: &str) {
    COMPONENTS.remove(component);
}

/// The component could not do its work just now (the first failure starts the clock, later ones keep it).
pub fn failing(component: &str, reason: &str) {
    let mut state =
        COMPONENTS.entry(component.to_owned()).or_insert(State { failing_since: None, reason: String::new() });
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

/// One line per component, and whether all are healthy: `detect ok`, `sink stuck for 41 s: <reason>`.
pub fn report(now: Instant, stuck_after: Duration) -> (bool, String) {
    let mut lines: Vec<(String, bool)> = COMPONENTS
        .iter()
        .map(|entry| match entry.failing_since.map(|since| now.saturating_duration_since(since)) {
            Some(failing) if failing >= stuck_after => {
                (format!("{} stuck for {} s: {}", entry.key(), failing.as_secs(), entry.reason), false)
            }
            Some(failing) => (format!("{} retrying for {} s: {}", entry.key(), failing.as_secs(), entry.reason), true),
            None => (format!("{} ok", entry.key()), true),
        })
        .collect();
    lines.sort();
    let healthy = lines.iter().all(|(_, ok)| *ok);
    (healthy, lines.into_iter().map(|(line, _)| line + "\n").collect())
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
}
