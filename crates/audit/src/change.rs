//! [`ChangeEvents`]: audit events that commit in the same transaction as the configuration
//! change or revocation they record ([`tollgate_store::AuditAppend`]).
//!
//! Token requests go through [`crate::AuditWriter`] (group commit: many requests, one
//! transaction). A change is different: it has its own transaction already, and recording it
//! in that transaction means a change is never stored unrecorded, nor recorded but rolled
//! back. The store calls [`ChangeEvents::build`] under the audit lock, with the chain heads
//! it read, and the same linking as the writer's places the events.

use std::collections::HashMap;

use tollgate_store::{AuditAppend, AuditHead, AuditRow};

use crate::AuditEvent;
use crate::chain::encode_body;
use crate::writer::link;

/// The events of one change, in order. Usually one; a change that touches another tenant's
/// configuration too may carry one per tenant.
#[derive(Debug, Clone, Default)]
pub struct ChangeEvents {
    /// Each event's row and serialized body, prepared outside the lock.
    work: Vec<(AuditRow, Vec<u8>)>,
}

impl ChangeEvents {
    /// The events `events`, in order.
    pub fn new(events: impl IntoIterator<Item = AuditEvent>) -> Self {
        let work = events
            .into_iter()
            .map(|event| {
                let row = event.into_row();
                let mut body = Vec::with_capacity(256);
                encode_body(&row, &mut body);
                (row, body)
            })
            .collect();
        Self { work }
    }

    /// One event.
    pub fn one(event: AuditEvent) -> Self {
        Self::new([event])
    }

    /// How many events.
    pub fn len(&self) -> usize {
        self.work.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.work.is_empty()
    }
}

impl AuditAppend for ChangeEvents {
    fn tenant_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::with_capacity(1);
        for (row, _) in &self.work {
            if !ids.contains(&row.tenant_id) {
                ids.push(row.tenant_id.clone());
            }
        }
        ids
    }

    fn build(&self, heads: &HashMap<String, AuditHead>) -> Vec<AuditRow> {
        link(heads, self.work.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditAction, Outcome, record_hash};
    use tollgate_domain::TenantName;

    #[test]
    fn change_events_continue_the_heads_like_the_writer() -> Result<(), Box<dyn std::error::Error>>
    {
        let event = |tenant: &str| -> Result<AuditEvent, Box<dyn std::error::Error>> {
            Ok(AuditEvent::new(
                tollgate_domain::TenantId::new(tenant),
                TenantName::parse("acme")?,
                5,
                AuditAction::ManagementChange,
                Outcome::Ok,
            ))
        };
        let change = ChangeEvents::new([event("ten_a")?, event("ten_b")?, event("ten_a")?]);
        assert_eq!(change.tenant_ids(), ["ten_a", "ten_b"]);
        let heads = HashMap::from([(
            "ten_a".to_owned(),
            AuditHead {
                tenant_id: "ten_a".into(),
                seq: 3,
                hash: "h3".into(),
            },
        )]);
        let rows = change.build(&heads);
        let positions: Vec<_> = rows.iter().map(|r| (r.tenant_id.as_str(), r.seq)).collect();
        assert_eq!(positions, [("ten_a", 4), ("ten_b", 1), ("ten_a", 5)]);
        assert_eq!(rows[0].prev_hash, "h3");
        assert_eq!(rows[2].prev_hash, rows[0].hash);
        for row in &rows {
            assert_eq!(record_hash(row).as_deref(), Some(row.hash.as_str()));
        }
        Ok(())
    }
}
