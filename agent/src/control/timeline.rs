//! `network_changed` for the timeline: when a rule of a fleet file's `network.timeline`
//! starts or ends, or a runtime rule set `--for` a while expires, the reconcile leader
//! says so (within a reconcile pass of the moment), so that `events` shows the network
//! changing on its own, not only on `pluribusctl network set`. One agent announces, not
//! every shard runner, so each change is one event.

use pluribus_common::messages::EventKind;
use pluribus_common::spec::network::plan::Origin;
use pluribus_common::time::now_ms;

use super::Control;

/// Most announcements per pass (a hostile record could hold many rules).
const MAX_PER_PASS: usize = 64;

impl Control {
    /// Announces the timeline rules that started or ended since the last pass.
    pub(super) async fn announce_timeline(&mut self) {
        let now = now_ms();
        let since = std::mem::replace(&mut self.timeline_seen_ms, now);
        if since == 0 || !self.is_reconcile_leader() {
            return;
        }
        let mut out = Vec::new();
        for (name, (record, _)) in &self.fleets {
            let has_timeline = record
                .spec
                .network
                .as_ref()
                .is_some_and(|n| !n.timeline.is_empty());
            let expires = record.network.iter().any(|r| r.until_ms.is_some());
            if !has_timeline && !expires {
                continue;
            }
            let plan = record.network_plan();
            let start = record
                .epochs
                .first()
                .map_or(record.created_ms, |e| e.epoch_ms);
            for r in plan.rules().iter().filter(|r| r.origin == Origin::Timeline) {
                let who = r
                    .cohort
                    .as_ref()
                    .map_or("every device".to_string(), |c| format!("cohort {c}"));
                let what = r.impairments.names().join(", ");
                let mut say = |verb: &str, at: u64| {
                    out.push(EventKind::NetworkChanged {
                        fleet: name.clone(),
                        change: format!(
                            "timeline[{}] {verb} ({}s after the fleet started) for {who}: {what}",
                            r.position,
                            at.saturating_sub(start) / 1000
                        ),
                        rules: record.network.len() as u64,
                    })
                };
                if (since + 1..=now).contains(&r.from_ms) {
                    say("started", r.from_ms);
                }
                if let Some(u) = r.until_ms.filter(|u| (since + 1..=now).contains(u)) {
                    say("ended", u);
                }
            }
            // Runtime rules set --for a while: their end (their start was announced by
            // `pluribusctl network set`).
            for r in plan.rules().iter().filter(|r| r.origin == Origin::Runtime) {
                let Some(u) = r.until_ms.filter(|u| (since + 1..=now).contains(u)) else {
                    continue;
                };
                let who = r
                    .cohort
                    .as_ref()
                    .map_or("every device".to_string(), |c| format!("cohort {c}"));
                out.push(EventKind::NetworkChanged {
                    fleet: name.clone(),
                    change: format!(
                        "expired (set for {}s) for {who}: {}",
                        u.saturating_sub(r.from_ms).div_ceil(1000),
                        r.impairments.names().join(", ")
                    ),
                    rules: record
                        .network
                        .iter()
                        .filter(|x| x.until_ms.is_none_or(|t| t > now))
                        .count() as u64,
                });
            }
        }
        for e in out.into_iter().take(MAX_PER_PASS) {
            self.events.publish(e).await;
        }
    }
}
