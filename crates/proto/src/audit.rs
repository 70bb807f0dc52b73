//! What `AuditService`'s server and its clients agree on beyond the messages: the largest
//! message ([`MAX_AUDIT_MESSAGE_BYTES`]), the action names a filter may hold
//! ([`AUDIT_ACTIONS`]), and the conversions between an event's Unix-millisecond time and
//! a protobuf timestamp ([`unix_ms`], [`timestamp_of_ms`]).

use tollgate_domain::InvalidValue;

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

#[cfg(test)]
mod tests {
    use super::*;

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
