//! [`DenialCounter`]: refusals recorded in aggregate, so that a flood of refused requests
//! costs the trail about one record per second and source, not one per request.
//!
//! Two kinds of refusal are aggregated rather than recorded one by one: rate-limit
//! refusals, and refusals of requests that failed client authentication (`invalid_client`).
//! Both can be produced without a credential, as fast as an attacker can send.
//!
//! A refusal is counted in memory and answered at once (nothing was granted, so there is
//! nothing to hold back until the record is durable). A periodic flush
//! ([`DenialCounter::take_due`], every second, and [`DenialCounter::take_all`] at
//! shutdown) turns each aggregate into one record whose `count` says how many requests it
//! stands for. An aggregate is keyed by the chain's tenant, the action, the error, the
//! second, and whom it is counted against ([`CountedBy`]):
//!
//! - [`CountedBy::Client`], a client that exists: one aggregate per client, whatever the
//!   addresses (the client's own rate limits bound how many there are);
//! - [`CountedBy::Source`], a request that named no valid client (an unknown client id, or
//!   a tenant that does not exist, recorded in the `system` chain): one aggregate per
//!   source address, never per attacker-chosen client id or tenant name.
//!
//! An aggregate keeps a detail of the requests (client id, address, audience, scopes,
//! trace id, resource, transport, secret id) only while every request it counts agrees on
//! it; a detail they disagree on is left out. So random client ids yield a record without a
//! client id, and a single refusal keeps all its details.
//!
//! Memory is bounded: at most [`MAX_PENDING_DENIAL_KEYS`] aggregates are pending. Past
//! that, a refusal of a new key is folded into its tenant's overflow aggregate for that
//! action, error and second (without a client or address): counted, never dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use tollgate_domain::{ErrorCode, TenantId};

use crate::{AuditAction, AuditEvent, Identifier};

/// Most aggregates pending between two flushes (a flush runs every second). Each holds one
/// event, itself bounded ([`crate::MAX_EVENT_TEXT_BYTES`], far less for a refusal), so the
/// counter's memory is bounded too; past the limit refusals go to overflow aggregates, one
/// per tenant, action, error and second.
pub const MAX_PENDING_DENIAL_KEYS: usize = 10_000;

/// Whom an aggregated refusal is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountedBy {
    /// The client the event names, which exists in its tenant.
    Client,
    /// The source address: the request named no valid client, so its client id (or
    /// tenant name) is the sender's choice and must not key anything.
    Source,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Client(Identifier),
    Source(Option<IpAddr>),
    Overflow,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    tenant_id: TenantId,
    action: AuditAction,
    error: Option<ErrorCode>,
    second: i64,
    subject: Subject,
}

/// Counts aggregated refusals between flushes.
#[derive(Debug, Default)]
pub struct DenialCounter {
    pending: Mutex<HashMap<Key, AuditEvent>>,
}

impl DenialCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `event`, a refusal ([`AuditAction::RateLimited`] or
    /// [`AuditAction::TokenDenied`]), against `counted_by`. The cost is the same whatever
    /// the key: one lookup in one map under one lock.
    pub fn add(&self, event: AuditEvent, counted_by: CountedBy) {
        let subject = match (counted_by, &event.client_id) {
            (CountedBy::Client, Some(client_id)) => Subject::Client(client_id.clone()),
            _ => Subject::Source(event.source),
        };
        let mut key = Key {
            tenant_id: event.tenant_id.clone(),
            action: event.action,
            error: event.error,
            second: event.time_ms.div_euclid(1000),
            subject,
        };
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.len() >= MAX_PENDING_DENIAL_KEYS && !pending.contains_key(&key) {
            key.subject = Subject::Overflow;
        }
        match pending.get_mut(&key) {
            Some(aggregate) => merge(aggregate, event),
            None => {
                let mut event = event;
                event.count = event.count.max(1);
                pending.insert(key, event);
            }
        }
    }

    /// How many aggregates are pending.
    pub fn pending(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
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

/// Adds `event` to `aggregate`: the counts add up; a detail stays only if both agree on it.
fn merge(aggregate: &mut AuditEvent, event: AuditEvent) {
    aggregate.count = aggregate.count.saturating_add(event.count.max(1));
    fn keep_if_equal<T: PartialEq>(kept: &mut Option<T>, other: Option<T>) {
        if *kept != other {
            *kept = None;
        }
    }
    keep_if_equal(&mut aggregate.actor, event.actor);
    keep_if_equal(&mut aggregate.client_id, event.client_id);
    keep_if_equal(&mut aggregate.secret_id, event.secret_id);
    keep_if_equal(&mut aggregate.audience, event.audience);
    keep_if_equal(&mut aggregate.jti, event.jti);
    keep_if_equal(&mut aggregate.source, event.source);
    keep_if_equal(&mut aggregate.transport, event.transport);
    keep_if_equal(&mut aggregate.trace_id, event.trace_id);
    keep_if_equal(&mut aggregate.resource, event.resource);
    if aggregate.scopes_requested != event.scopes_requested
        || aggregate.scopes_requested_omitted != event.scopes_requested_omitted
    {
        aggregate.scopes_requested.clear();
        aggregate.scopes_requested_omitted = 0;
    }
    if aggregate.scopes_granted != event.scopes_granted
        || aggregate.scopes_granted_omitted != event.scopes_granted_omitted
    {
        aggregate.scopes_granted.clear();
        aggregate.scopes_granted_omitted = 0;
    }
    if aggregate.changed_fields != event.changed_fields {
        aggregate.changed_fields.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;
    use tollgate_domain::{InvalidValue, TenantName};

    fn refusal(
        action: AuditAction,
        error: ErrorCode,
        client: &str,
        source: [u8; 4],
        time_ms: i64,
    ) -> Result<AuditEvent, InvalidValue> {
        let mut event = AuditEvent::new(
            TenantId::new("ten_1"),
            TenantName::parse("acme")?,
            time_ms,
            action,
            Outcome::Denied,
        );
        event.error = Some(error);
        event.client_id = Some(Identifier::parse(client)?);
        event.actor = event.client_id.clone();
        event.source = Some(IpAddr::from(source));
        Ok(event)
    }

    fn denial(client: &str, time_ms: i64) -> Result<AuditEvent, InvalidValue> {
        refusal(
            AuditAction::RateLimited,
            ErrorCode::ResourceExhausted,
            client,
            [192, 0, 2, 1],
            time_ms,
        )
    }

    type Summary = (Option<String>, Option<IpAddr>, i64, u32);

    fn summary(events: &[AuditEvent]) -> Vec<Summary> {
        events
            .iter()
            .map(|e| {
                (
                    e.client_id.as_ref().map(|c| c.as_str().to_owned()),
                    e.source,
                    e.time_ms,
                    e.count,
                )
            })
            .collect()
    }

    #[test]
    fn denials_aggregate_per_client_and_second() -> Result<(), InvalidValue> {
        let counter = DenialCounter::new();
        for ms in [1_000, 1_100, 1_999] {
            counter.add(denial("a", ms)?, CountedBy::Client);
        }
        counter.add(denial("b", 1_500)?, CountedBy::Client);
        counter.add(denial("a", 2_000)?, CountedBy::Client);
        // The current second (2) is not due yet.
        let due = counter.take_due(2_500);
        let address = Some(IpAddr::from([192, 0, 2, 1]));
        assert_eq!(
            summary(&due),
            [
                (Some("a".to_owned()), address, 1_000, 3),
                (Some("b".to_owned()), address, 1_500, 1)
            ]
        );
        assert!(counter.take_due(2_999).is_empty());
        let rest = counter.take_all();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].count, 1);
        assert!(counter.take_all().is_empty());
        Ok(())
    }

    #[test]
    fn unknown_clients_aggregate_per_source_and_keep_only_shared_details()
    -> Result<(), InvalidValue> {
        let counter = DenialCounter::new();
        let invalid = |client: &str, source, ms| {
            refusal(
                AuditAction::TokenDenied,
                ErrorCode::InvalidClient,
                client,
                source,
                ms,
            )
        };
        for n in 0..500 {
            counter.add(
                invalid(&format!("rnd{n}"), [198, 51, 100, 1], 5_000 + n)?,
                CountedBy::Source,
            );
        }
        counter.add(
            invalid("same", [198, 51, 100, 2], 5_100)?,
            CountedBy::Source,
        );
        counter.add(
            invalid("same", [198, 51, 100, 2], 5_200)?,
            CountedBy::Source,
        );
        // Another error of the same source and second is another aggregate.
        counter.add(
            refusal(
                AuditAction::RateLimited,
                ErrorCode::ResourceExhausted,
                "rnd9",
                [198, 51, 100, 1],
                5_300,
            )?,
            CountedBy::Source,
        );
        assert_eq!(counter.pending(), 3);
        let due = counter.take_all();
        assert_eq!(
            summary(&due),
            [
                (None, Some(IpAddr::from([198, 51, 100, 1])), 5_000, 500),
                (
                    Some("same".to_owned()),
                    Some(IpAddr::from([198, 51, 100, 2])),
                    5_100,
                    2
                ),
                // Alone in its aggregate, a refusal keeps every detail.
                (
                    Some("rnd9".to_owned()),
                    Some(IpAddr::from([198, 51, 100, 1])),
                    5_300,
                    1
                ),
            ]
        );
        assert_eq!(
            due[0].actor, None,
            "an actor the requests disagree on is left out"
        );
        assert_eq!(due[0].error, Some(ErrorCode::InvalidClient));
        assert_eq!(due[2].error, Some(ErrorCode::ResourceExhausted));
        Ok(())
    }

    #[test]
    fn pending_keys_are_bounded_and_the_overflow_still_counts() -> Result<(), InvalidValue> {
        let counter = DenialCounter::new();
        let extra = 2_500u32;
        let total = MAX_PENDING_DENIAL_KEYS as u32 + extra;
        for n in 0..total {
            let source = n.to_be_bytes();
            counter.add(
                refusal(
                    AuditAction::TokenDenied,
                    ErrorCode::InvalidClient,
                    "x",
                    source,
                    7_000,
                )?,
                CountedBy::Source,
            );
        }
        // Every key up to the limit, plus one overflow aggregate.
        assert_eq!(counter.pending(), MAX_PENDING_DENIAL_KEYS + 1);
        let due = counter.take_due(8_000);
        assert_eq!(due.len(), MAX_PENDING_DENIAL_KEYS + 1);
        assert_eq!(
            due.iter().map(|e| u64::from(e.count)).sum::<u64>(),
            u64::from(total)
        );
        let overflow: Vec<&AuditEvent> = due.iter().filter(|e| e.count > 1).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].count, extra);
        assert_eq!(overflow[0].source, None, "many addresses: none kept");
        assert_eq!(counter.pending(), 0);
        Ok(())
    }
}
