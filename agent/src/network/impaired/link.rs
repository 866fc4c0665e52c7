//! When devices go offline and come back: rule changes (a partition starts or ends on the
//! timeline or at runtime) and flaps, applied at their time to every device the sink
//! knows, with the device's own connection cut (closed or stalled) and let back through
//! [`Sink::set_link`]. A device let back keeps buffering until its sink is ready again (its
//! connection is back), then flushes.

use std::cmp::Reverse;
use std::sync::atomic::Ordering::Relaxed;

use super::{FlapState, Net, Offline};
use crate::network::flap;
use crate::sink::{LinkMode, Sink, SinkDevice};

/// Most flap transitions applied per wake-up (the rest at the next one, moments later).
const MAX_FLAPS: usize = 10_000;

impl Net {
    /// A rule started or ended since the last look: every known device re-resolves its
    /// impairments now (not at its next message), so partitions start and end on time.
    pub(super) fn advance(&mut self, inner: &mut dyn Sink, now_us: u64) {
        let now_ms = now_us / 1000;
        if self.next_change_ms.is_none_or(|t| now_ms < t) {
            return;
        }
        self.gen += 1;
        self.next_change_ms = self.plan.next_change(now_ms);
        let known: Vec<u64> = self.devs.keys().copied().collect();
        for index in known {
            self.resolve(index, now_us);
            self.settle(inner, index, now_us);
        }
    }

    /// Device `index`'s effective impairments at this generation.
    pub(super) fn resolve(&mut self, index: u64, now_us: u64) {
        let Some(d) = self.devs.get_mut(&index) else {
            return;
        };
        d.gen = self.gen;
        let id = d.id.clone();
        let (imp, cohort) = self.plan.resolve(index, &id, now_us / 1000);
        let key = cohort.map(|c| c.to_string());
        let acct = self.accts.index(key.as_deref(), &self.ctx.metrics);
        let chain = imp.map(|i| self.chain(i));
        if let Some(d) = self.devs.get_mut(&index) {
            d.chain = chain;
            d.acct = acct;
        }
    }

    /// Makes device `index`'s offline state follow its impairments and flap: it goes
    /// offline (its connection cut), or is let back (its connection restored; it flushes
    /// once its sink is ready).
    pub(super) fn settle(&mut self, inner: &mut dyn Sink, index: u64, now_us: u64) {
        let Some(d) = self.devs.get_mut(&index) else {
            return;
        };
        let from = d.chain.as_ref().map(|c| &c.from);
        let flap_spec = from.and_then(|f| f.flap.as_ref());
        match (flap_spec, d.flap) {
            (Some(f), None) => {
                self.flap_ids += 1;
                let (down, left_us) = flap::start(f, d.salt);
                let st = FlapState {
                    down,
                    cycle: 0,
                    id: self.flap_ids,
                };
                d.flap = Some(st);
                self.flaps.push(Reverse((now_us + left_us, index, st.id)));
            }
            (None, Some(_)) => d.flap = None,
            _ => {}
        }
        let want = from.and_then(|f| f.offline.clone()).or_else(|| {
            d.flap
                .filter(|s| s.down)
                .and(flap_spec)
                .map(|f| f.offline.clone().unwrap_or_default())
        });
        let dev = SinkDevice {
            device_id: &d.id,
            fleet: &self.ctx.fleet,
            index,
        };
        let link = |mode: LinkMode| (mode != LinkMode::Keep).then_some(mode);
        match (want, d.offline.as_deref_mut()) {
            (Some(spec), None) => {
                let m = &self.accts.get(d.acct).m;
                m.partitions_started.fetch_add(1, Relaxed);
                self.went_offline += 1;
                if let Some(mode) = link(spec.link) {
                    if inner.set_link(&dev, Some(mode)) {
                        m.disconnects.fetch_add(1, Relaxed);
                    }
                }
                d.off_acct = d.acct;
                d.offline = Some(Box::new(Offline::new(spec)));
            }
            (Some(spec), Some(o)) => {
                // Cut off again (or by another rule) before it got back.
                if (o.returning || o.spec.link != spec.link)
                    && inner.set_link(&dev, link(spec.link))
                {
                    self.accts
                        .get(d.off_acct)
                        .m
                        .disconnects
                        .fetch_add(1, Relaxed);
                }
                o.spec = spec;
                o.returning = false;
            }
            (None, Some(o)) if !o.returning => {
                o.returning = true;
                if link(o.spec.link).is_some() {
                    inner.set_link(&dev, None);
                }
            }
            _ => {}
        }
    }

    /// Rule changes and flap transitions due by `now_us`.
    pub(super) fn tick(&mut self, inner: &mut dyn Sink, now_us: u64) {
        self.advance(inner, now_us);
        for _ in 0..MAX_FLAPS {
            match self.flaps.peek() {
                Some(Reverse((due, _, _))) if *due <= now_us => {}
                _ => break,
            }
            let Some(Reverse((due, index, id))) = self.flaps.pop() else {
                break;
            };
            let Some(d) = self.devs.get_mut(&index) else {
                continue;
            };
            let spec = d.chain.as_ref().and_then(|c| c.from.flap.clone());
            let (Some(st), Some(spec)) = (d.flap.as_mut().filter(|s| s.id == id), spec) else {
                continue;
            };
            st.down = !st.down;
            st.cycle += 1;
            // From when it was due, not when it ran: no drift over many cycles.
            let next = due.max(now_us.saturating_sub(1_000_000))
                + flap::next_us(&spec, d.salt, st.cycle, !st.down);
            self.flaps.push(Reverse((next, index, id)));
            self.settle(inner, index, now_us);
        }
    }
}
