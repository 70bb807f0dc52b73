//! What `AuditService`'s server and its clients agree on beyond the messages: the largest
//! message ([`MAX_AUDIT_MESSAGE_BYTES`]), the action names a filter may hold
//! ([`AUDIT_ACTIONS`]), the conversions between an event's Unix-millisecond time and
//! a protobuf timestamp ([`unix_ms`], [`timestamp_of_ms`]), and those of the read side's
//! views: an event to its wire form and back, which must stay exact inverses (an exported
//! event is verified offline from its wire form), and a verification report.

use tollgate_domain::{AuditEntry, ChainBreakAt, ChainCheck, InvalidValue, RecordedEvent};

use crate::v1;

/// The largest message `AuditService` sends (17 MiB): the largest event returned whole
/// (the management read side's `MAX_EVENT_BYTES`, 16 MiB by stored size, which is at least
/// its encoded size) with room to spare for a page's tokens and framing. Pages of smaller
/// events stay below 1 MiB. The server's encoding limit for the service, so that a
/// miscount would fail the call rather than send a message clients refuse; and the
/// decoding limit the CLI sets.
pub const MAX_AUDIT_MESSAGE_BYTES: usize = 17 << 20;

/// Every audit action, by the name `AuditEvent.action` and `AuditFilter.action` carry, in
/// the order the audit trail lists them. Closed: the names are part of the hash chain's
/// serialization.
pub const AUDIT_ACTIONS: [&str; 11] = [
    "token_issued",
    "token_denied",
    "token_revoked",
    "tokens_revoked",
    "secret_rotated",
    "secret_revoked",
    "app_blocked",
    "app_unblocked",
    "key_rotated",
    "rate_limited",
    "management_change",
];

/// A timestamp as Unix milliseconds, rounded up: events are stamped in whole milliseconds,
/// so "at or after t" and "before t" both mean "at or after ⌈t⌉ ms". `field` names the
/// timestamp in the error.
pub fn unix_ms(time: &prost_types::Timestamp, field: &'static str) -> Result<i64, InvalidValue> {
    if !(0..1_000_000_000).contains(&time.nanos) {
        return Err(InvalidValue::new(field, "has nanos out of range"));
    }
    time.seconds
        .checked_mul(1_000)
        .and_then(|ms| ms.checked_add(i64::from((time.nanos + 999_999) / 1_000_000)))
        .ok_or_else(|| InvalidValue::new(field, "is out of range"))
}

/// Unix milliseconds as a timestamp; `None` outside the range a timestamp may hold
/// (0001-01-01 to 9999-12-31).
pub fn timestamp_of_ms(time_ms: i64) -> Option<prost_types::Timestamp> {
    const MIN_SECONDS: i64 = -62_135_596_800;
    const MAX_SECONDS: i64 = 253_402_300_799;
    let seconds = time_ms.div_euclid(1_000);
    let nanos = i32::try_from(time_ms.rem_euclid(1_000) * 1_000_000).ok()?;
    (MIN_SECONDS..=MAX_SECONDS)
        .contains(&seconds)
        .then_some(prost_types::Timestamp { seconds, nanos })
}

/// A recorded event on the wire, with its cursor.
impl From<AuditEntry> for v1::AuditEvent {
    fn from(entry: AuditEntry) -> Self {
        let event = entry.event;
        Self {
            id: event.id,
            tenant_id: event.tenant_id,
            tenant_name: event.tenant_name,
            seq: event.seq,
            time_ms: event.time_ms,
            time: timestamp_of_ms(event.time_ms),
            action: event.action,
            result: event.result,
            error_code: event.error_code,
            actor: event.actor,
            client_id: event.client_id,
            secret_id: event.secret_id,
            audience: event.audience,
            scopes_requested: event.scopes_requested,
            scopes_granted: event.scopes_granted,
            jti: event.jti,
            source: event.source,
            transport: event.transport,
            trace_id: event.trace_id,
            resource: event.resource,
            changed_fields: event.changed_fields,
            count: event.count,
            prev_hash: event.prev_hash,
            hash: event.hash,
            version: event.version,
            cursor: entry.cursor,
            elided_bytes: entry
                .elided_bytes
                .map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
        }
    }
}

/// The recorded event an event on the wire stands for (its `time`, `cursor` and
/// `elided_bytes`, which are not recorded, are left out): what offline verification hashes.
impl From<v1::AuditEvent> for RecordedEvent {
    fn from(event: v1::AuditEvent) -> Self {
        Self {
            id: event.id,
            tenant_id: event.tenant_id,
            seq: event.seq,
            version: event.version,
            time_ms: event.time_ms,
            tenant_name: event.tenant_name,
            action: event.action,
            result: event.result,
            error_code: event.error_code,
            actor: event.actor,
            client_id: event.client_id,
            secret_id: event.secret_id,
            audience: event.audience,
            scopes_requested: event.scopes_requested,
            scopes_granted: event.scopes_granted,
            jti: event.jti,
            source: event.source,
            transport: event.transport,
            trace_id: event.trace_id,
            resource: event.resource,
            changed_fields: event.changed_fields,
            count: event.count,
            prev_hash: event.prev_hash,
            hash: event.hash,
        }
    }
}

impl From<ChainBreakAt> for v1::ChainBreak {
    fn from(broken: ChainBreakAt) -> Self {
        Self {
            seq: broken.seq,
            reason: broken.reason,
        }
    }
}

impl From<v1::ChainBreak> for ChainBreakAt {
    fn from(broken: v1::ChainBreak) -> Self {
        Self {
            seq: broken.seq,
            reason: broken.reason,
        }
    }
}

/// A verification report on the wire; an unknown head is 0.
impl From<ChainCheck> for v1::VerifyChainResponse {
    fn from(check: ChainCheck) -> Self {
        Self {
            ok: check.outcome.is_ok(),
            records_checked: i64::try_from(check.checked).unwrap_or(i64::MAX),
            oldest_seq: check.first_seq,
            newest_seq: check.last_seq,
            head_seq: check.head_seq.unwrap_or(0),
            first_break: check.outcome.err().map(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_event() -> RecordedEvent {
        RecordedEvent {
            id: 12,
            tenant_id: "ten_1".into(),
            seq: 3,
            version: 1,
            time_ms: 1_700_000_000_123,
            tenant_name: "acme".into(),
            action: "token_denied".into(),
            result: "denied".into(),
            error_code: Some("invalid_scope".into()),
            actor: Some("c1".into()),
            client_id: Some("c1".into()),
            secret_id: Some("sec_1".into()),
            audience: Some("https://api.example/".into()),
            scopes_requested: vec!["read".into(), "admin".into()],
            scopes_granted: vec!["read".into()],
            jti: Some("jti_1".into()),
            source: Some("192.0.2.7".into()),
            transport: Some("http".into()),
            trace_id: Some("trace".into()),
            resource: Some("app/c1".into()),
            changed_fields: vec!["grants".into()],
            count: 2,
            prev_hash: "a".repeat(64),
            hash: "b".repeat(64),
        }
    }

    #[test]
    fn wire_events_round_trip_exactly() {
        for event in [
            full_event(),
            RecordedEvent::default(),
            // Present but empty is not absent: the hash tells them apart.
            RecordedEvent {
                actor: Some(String::new()),
                ..RecordedEvent::default()
            },
        ] {
            let wire = v1::AuditEvent::from(AuditEntry {
                event: event.clone(),
                cursor: "seq.ten_1.3".into(),
                elided_bytes: None,
            });
            assert_eq!(wire.cursor, "seq.ten_1.3");
            assert_eq!(wire.elided_bytes, None);
            assert_eq!(wire.time, timestamp_of_ms(event.time_ms));
            assert_eq!(RecordedEvent::from(wire), event);
        }
    }

    #[test]
    fn reports_say_ok_or_their_first_break() {
        let check = |head_seq, outcome| ChainCheck {
            checked: 3,
            first_seq: Some(4),
            last_seq: Some(6),
            head_seq,
            outcome,
        };
        assert_eq!(
            v1::VerifyChainResponse::from(check(Some(6), Ok(()))),
            v1::VerifyChainResponse {
                ok: true,
                records_checked: 3,
                oldest_seq: Some(4),
                newest_seq: Some(6),
                head_seq: 6,
                first_break: None,
            }
        );
        let broken = ChainBreakAt {
            seq: 7,
            reason: "hash mismatch".into(),
        };
        let response = v1::VerifyChainResponse::from(check(None, Err(broken.clone())));
        assert!(!response.ok);
        assert_eq!(response.head_seq, 0);
        assert_eq!(response.first_break.map(ChainBreakAt::from), Some(broken));
    }

    #[test]
    fn times_convert_in_whole_milliseconds() {
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert_eq!(unix_ms(&at(1, 0), "f"), Ok(1_000));
        assert_eq!(unix_ms(&at(1, 1), "f"), Ok(1_001), "rounded up");
        assert_eq!(unix_ms(&at(1, 999_000_000), "f"), Ok(1_999));
        assert_eq!(unix_ms(&at(-1, 500_000_000), "f"), Ok(-500));
        assert!(unix_ms(&at(1, -1), "f").is_err());
        assert!(unix_ms(&at(i64::MAX, 0), "f").is_err());
        assert_eq!(
            timestamp_of_ms(1_700_000_000_123),
            Some(at(1_700_000_000, 123_000_000))
        );
        assert_eq!(timestamp_of_ms(-1), Some(at(-1, 999_000_000)));
        assert_eq!(timestamp_of_ms(i64::MAX), None);
    }
}
