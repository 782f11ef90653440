//! What `/healthz` and `/readyz` report: each component of the process, and whether it is starting, running,
//! stuck or stopped. A component is stuck when it has been failing to hand its output on (a publish retried, a
//! webhook batch the bus refused) for longer than the grace period; it recovers at its next success. A stage
//! wedged behind a record it cannot send is then visible to a liveness probe instead of answering "ok".
//! `/readyz` also waits for the components the process is expected to run (`expect`) to start — a collector whose
//! programs are not attached yet is not ready — and an expected component that stops stays listed, stopped, so a
//! process that lost one (an audit webhook whose server ended) is neither ready nor healthy. A running component
//! may be busy with something it must finish before it takes its share of the work (detect restoring a
//! partition's state): healthy, not ready, so a rolling update waits for it.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How long a component may keep failing before `/healthz` reports it.
pub const STUCK_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Starting,
    Running,
    Stopped,
}

#[derive(Debug, Clone)]
struct State {
    phase: Phase,
    /// Named by `expect`: the process is not whole without it.
    expected: bool,
    failing_since: Option<Instant>,
    reason: String,
    /// What it is busy with (`busy`), if anything.
    busy: Option<String>,
}

impl State {
    fn new(phase: Phase, expected: bool) -> Self {
        Self { phase, expected, failing_since: None, reason: String::new(), busy: None }
    }
}

/// The components of one process and their states.
#[derive(Default)]
struct Health {
    components: DashMap<String, State>,
}

impl Health {
    fn expect(&self, component: &str) {
        self.components.entry(component.to_owned()).or_insert_with(|| State::new(Phase::Starting, true)).expected =
            true;
    }

    fn started(&self, component: &str) {
        let expected = self.components.get(component).is_some_and(|state| state.expected);
        self.components.insert(component.to_owned(), State::new(Phase::Running, expected));
    }

    fn stopped(&self, component: &str) {
        let expected = self.components.get(component).is_some_and(|state| state.expected);
        if expected {
            self.components.insert(component.to_owned(), State::new(Phase::Stopped, true));
        } else {
            self.components.remove(component);
        }
    }

    fn failing(&self, component: &str, reason: &str) {
        let mut state =
            self.components.entry(component.to_owned()).or_insert_with(|| State::new(Phase::Running, false));
        state.failing_since.get_or_insert_with(Instant::now);
        state.reason = reason.to_owned();
    }

    fn busy(&self, component: &str, what: &str) {
        if let Some(mut state) = self.components.get_mut(component) {
            state.busy = Some(what.to_owned());
        }
    }

    fn idle(&self, component: &str) {
        if let Some(mut state) = self.components.get_mut(component) {
            state.busy = None;
        }
    }

    fn succeeded(&self, component: &str) {
        if let Some(mut state) = self.components.get_mut(component)
            && state.failing_since.is_some()
        {
            state.failing_since = None;
            state.reason.clear();
        }
    }

    /// Each component's line and whether it is healthy, sorted; and whether every one is running.
    fn lines(&self, now: Instant, stuck_after: Duration) -> (Vec<(String, bool)>, bool) {
        let mut all_running = true;
        let mut lines: Vec<(String, bool)> = self
            .components
            .iter()
            .map(|entry| {
                all_running &= entry.phase == Phase::Running && entry.busy.is_none();
                let name = entry.key();
                match (entry.phase, entry.failing_since.map(|since| now.saturating_duration_since(since))) {
                    (Phase::Stopped, _) => (format!("{name} stopped"), false),
                    (_, Some(failing)) if failing >= stuck_after => {
                        (format!("{name} stuck for {} s: {}", failing.as_secs(), entry.reason), false)
                    }
                    (_, Some(failing)) => {
                        (format!("{name} retrying for {} s: {}", failing.as_secs(), entry.reason), true)
                    }
                    (Phase::Starting, None) => (format!("{name} starting"), true),
                    (Phase::Running, None) => match &entry.busy {
                        Some(what) => (format!("{name} {what}"), true),
                        None => (format!("{name} ok"), true),
                    },
                }
            })
            .collect();
        lines.sort();
        (lines, all_running)
    }

    fn report(&self, now: Instant, stuck_after: Duration) -> (bool, String) {
        let (lines, _) = self.lines(now, stuck_after);
        let healthy = lines.iter().all(|(_, ok)| *ok);
        (healthy, lines.into_iter().map(|(line, _)| line + "\n").collect())
    }

    fn readiness(&self, now: Instant, stuck_after: Duration) -> (bool, String) {
        let (lines, all_running) = self.lines(now, stuck_after);
        let ready = !lines.is_empty() && all_running && lines.iter().all(|(_, ok)| *ok);
        (ready, lines.into_iter().map(|(line, _)| line + "\n").collect())
    }
}

static HEALTH: LazyLock<Health> = LazyLock::new(Health::default);

/// The process will run this component: until it starts, `/readyz` answers 503 (`/healthz` lists it as
/// starting, healthy); if it stops, it stays listed as stopped.
pub fn expect(component: &str) {
    HEALTH.expect(component);
}

/// A component started; it is listed, healthy.
pub fn started(component: &str) {
    HEALTH.started(component);
}

/// A component stopped: no longer listed, unless it was expected (then listed as stopped: not ready, not healthy).
pub fn stopped(component: &str) {
    HEALTH.stopped(component);
}

/// The component could not do its work just now (the first failure starts the clock, later ones keep it).
pub fn failing(component: &str, reason: &str) {
    HEALTH.failing(component, reason);
}

/// A running component is busy with `what` (a phrase: `restoring palisade.node.events/3`): healthy, not ready,
/// until `idle`.
pub fn busy(component: &str, what: &str) {
    HEALTH.busy(component, what);
}

/// The component is no longer busy.
pub fn idle(component: &str) {
    HEALTH.idle(component);
}

/// The component did its work; any failure is over.
pub fn succeeded(component: &str) {
    HEALTH.succeeded(component);
}

/// One line per component, and whether all are healthy: `detect ok`, `collect starting`, `sink stuck for 41 s:
/// <reason>`, `audit stopped`. A component still starting is healthy (a liveness probe must not kill it for that).
pub fn report(now: Instant, stuck_after: Duration) -> (bool, String) {
    HEALTH.report(now, stuck_after)
}

/// `report`'s lines, and whether the process is ready: some component listed, every one running and none stuck.
pub fn readiness(now: Instant, stuck_after: Duration) -> (bool, String) {
    HEALTH.readiness(now, stuck_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(30);

    #[test]
    fn a_component_failing_past_the_grace_is_reported_until_it_succeeds() {
        let health = Health::default();
        health.started("a");
        health.started("b");
        health.failing("a", "publish to t failed");
        let start = Instant::now();
        let (healthy, text) = health.report(start, GRACE);
        assert!(healthy, "{text}");
        assert!(text.contains("a retrying for 0 s: publish to t failed"), "{text}");
        let (healthy, text) = health.report(start + Duration::from_secs(31), GRACE);
        assert!(!healthy);
        assert!(text.contains("a stuck for 3"), "{text}");
        assert!(text.contains("b ok"), "{text}");
        health.succeeded("a");
        let (_, text) = health.report(start + Duration::from_secs(31), GRACE);
        assert!(text.contains("a ok"), "{text}");
        // A component nobody expected leaves the list when it stops.
        health.stopped("a");
        health.stopped("b");
        assert_eq!(health.report(start, GRACE), (true, String::new()));
    }

    #[test]
    fn a_process_is_ready_once_every_expected_component_runs_and_none_is_stuck() {
        let health = Health::default();
        let start = Instant::now();
        assert!(!health.readiness(start, GRACE).0, "nothing started yet is not ready");
        health.expect("collect");
        health.expect("detect");
        health.started("detect");
        let (ready, text) = health.readiness(start, GRACE);
        assert!(!ready, "{text}");
        assert_eq!(text, "collect starting\ndetect ok\n");
        assert!(health.report(start, GRACE).0, "a component starting is alive");
        health.started("collect");
        // Expecting it again (a second start path) does not make it wait again.
        health.expect("collect");
        assert_eq!(health.readiness(start, GRACE), (true, "collect ok\ndetect ok\n".to_owned()));
        health.failing("detect", "publish failed");
        assert!(health.readiness(start, GRACE).0, "retrying within the grace is still ready");
        assert!(!health.readiness(start + Duration::from_secs(31), GRACE).0, "stuck is not ready");
        health.succeeded("detect");
        assert!(health.readiness(start, GRACE).0);
    }

    #[test]
    fn a_busy_component_is_healthy_and_not_ready_until_idle() {
        let health = Health::default();
        let start = Instant::now();
        health.expect("detect");
        health.busy("detect", "restoring t/0");
        assert!(!health.readiness(start, GRACE).0, "busy before it started: still starting");
        health.started("detect");
        health.busy("detect", "restoring t/1");
        assert_eq!(health.readiness(start, GRACE), (false, "detect restoring t/1\n".to_owned()));
        assert!(health.report(start, GRACE).0, "busy is alive");
        health.idle("detect");
        assert_eq!(health.readiness(start, GRACE), (true, "detect ok\n".to_owned()));
    }

    #[test]
    fn an_expected_component_that_stops_leaves_the_process_unready_and_unhealthy() {
        let health = Health::default();
        let start = Instant::now();
        health.expect("audit");
        health.started("audit");
        health.started("audit-kafka-x");
        assert!(health.readiness(start, GRACE).0);
        health.stopped("audit");
        let (ready, text) = health.readiness(start, GRACE);
        assert!(!ready, "{text}");
        assert_eq!(text, "audit stopped\naudit-kafka-x ok\n");
        assert!(!health.report(start, GRACE).0, "a process that lost an expected component is not healthy");
    }
}
