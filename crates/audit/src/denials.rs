//! [`DenialCounter`]: rate-limit denials, aggregated per client per second, so that a flood
//! of refused requests costs the trail one record per client and second, not one per
//! request.
//!
//! A refused request is counted in memory and answered at once (nothing was granted, so
//! there is nothing to hold back until the record is durable). A periodic flush
//! ([`DenialCounter::take_due`], every second, and [`DenialCounter::take_all`] at shutdown)
//! turns each (tenant, client, second) into one [`AuditAction::RateLimited`] record whose
//! `count` says how many requests it stands for. The record keeps the first request's
//! details (source, transport, trace id, audience, scopes).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{AuditAction, AuditEvent, Identifier};

/// Most distinct (tenant, client, second) keys held between flushes. Past it, further
/// denials are folded into one record per tenant and second without a client (a flood of
/// made-up client ids cannot grow memory without bound).
pub const MAX_DENIAL_KEYS: usize = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant_id: Identifier,
    client_id: Option<Identifier>,
    second: i64,
}

/// Counts rate-limit denials between flushes.
#[derive(Debug, Default)]
pub struct DenialCounter {
    pending: Mutex<HashMap<Key, AuditEvent>>,
}

impl DenialCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `event`, a [`AuditAction::RateLimited`] denial.
    pub fn add(&self, mut event: AuditEvent) {
        debug_assert_eq!(event.action, AuditAction::RateLimited);
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut key = Key {
            tenant_id: event.tenant_id.clone(),
            client_id: event.client_id.clone(),
            second: event.time_ms.div_euclid(1000),
        };
        if pending.len() >= MAX_DENIAL_KEYS && !pending.contains_key(&key) {
            key.client_id = None;
            event.client_id = None;
            event.actor = None;
            event.secret_id = None;
        }
        let count = event.count.max(1);
        pending
            .entry(key)
            .and_modify(|aggregate| aggregate.count = aggregate.count.saturating_add(count))
            .or_insert(event);
    }

    /// The aggregated records of the seconds before the one holding `now_ms`, removed from
    /// the counter, oldest first.
    pub fn take_due(&self, now_ms: i64) -> Vec<AuditEvent> {
        let current = now_ms.div_euclid(1000);
        self.take(|key| key.second < current)
    }

    /// Every aggregated record, removed from the counter, oldest first (at shutdown).
    pub fn take_all(&self) -> Vec<AuditEvent> {
        self.take(|_| true)
    }

    fn take(&self, is_due: impl Fn(&Key) -> bool) -> Vec<AuditEvent> {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due: Vec<Key> = pending.keys().filter(|key| is_due(key)).cloned().collect();
        let mut events: Vec<AuditEvent> =
            due.iter().filter_map(|key| pending.remove(key)).collect();
        events.sort_by_key(|event| event.time_ms);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;
    use tollgate_domain::{ErrorCode, TenantName};

    fn denial(client: &str, time_ms: i64) -> Result<AuditEvent, tollgate_domain::InvalidValue> {
        let mut event = AuditEvent::new(
            Identifier::parse("ten_1")?,
            TenantName::parse("acme")?,
            time_ms,
            AuditAction::RateLimited,
            Outcome::Denied,
        );
        event.error = Some(ErrorCode::ResourceExhausted);
        event.client_id = Some(Identifier::parse(client)?);
        Ok(event)
    }

    #[test]
    fn denials_aggregate_per_client_and_second() -> Result<(), tollgate_domain::InvalidValue> {
        let counter = DenialCounter::new();
        for ms in [1_000, 1_100, 1_999] {
            counter.add(denial("a", ms)?);
        }
        counter.add(denial("b", 1_500)?);
        counter.add(denial("a", 2_000)?);
        // The current second (2) is not due yet.
        let due = counter.take_due(2_500);
        let summary: Vec<_> = due
            .iter()
            .map(|e| {
                (
                    e.client_id.as_ref().map(Identifier::as_str),
                    e.time_ms,
                    e.count,
                )
            })
            .collect();
        assert_eq!(summary, [(Some("a"), 1_000, 3), (Some("b"), 1_500, 1)]);
        assert!(counter.take_due(2_999).is_empty());
        let rest = counter.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].count, 1);
        assert!(counter.take_all().is_empty());
        Ok(())
    }
}
