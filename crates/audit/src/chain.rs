//! The hash chain: the canonical serialization of a record, its SHA-256, and verification.
//!
//! ## Canonical serialization, version 1
//!
//! `hash = SHA-256(bytes)`, stored as 64 lowercase hex digits, where `bytes` is the
//! concatenation of, in this order:
//!
//! | # | item | encoding |
//! |---|---|---|
//! | 1 | the domain tag `tollgate.audit` | string |
//! | 2 | `version` (1) | i64 |
//! | 3 | `tenant_id` | string |
//! | 4 | `seq` | i64 |
//! | 5 | `prev_hash` (as stored text) | string |
//! | 6 | `time_ms` | i64 |
//! | 7 | `tenant_name`, `action`, `result` | string each |
//! | 8 | `error_code`, `actor`, `client_id`, `secret_id`, `audience` | optional string each |
//! | 9 | `scopes_requested`, `scopes_granted` | list each |
//! | 10 | `jti`, `source`, `transport`, `trace_id`, `resource` | optional string each |
//! | 11 | `changed_fields` | list |
//! | 12 | `count` | i64 |
//!
//! *i64*: 8 bytes, big-endian two's complement. *string*: its UTF-8 length as a big-endian
//! u64, then the bytes. *optional string*: `0x00` when absent, else `0x01` and the string.
//! *list*: the number of items as a big-endian u64, then each as a string. Every item is
//! length-prefixed or fixed-size, so distinct records never serialize alike. Everything a
//! record stores is covered except `id` (a storage position assigned at commit) and `hash`
//! itself. The hash is computed over the stored text of each field, not over parsed values,
//! so verification needs no parsing and any edit of a stored value shows.
//!
//! A tenant's first record has `seq` 1 and `prev_hash` [`GENESIS_HASH`]; record *n + 1*
//! has `seq` n + 1 and `prev_hash` = record *n*'s `hash`. Retention removes a chain's
//! oldest records, so verification starts at the oldest kept record and takes its
//! `prev_hash` as given.

use std::fmt;

use tollgate_domain::TenantId;
use tollgate_keys::sha256;
use tollgate_store::{
    AuditFilter, AuditHead, AuditRead, AuditReadOrder, AuditRow, AuditScope, AuditSlice, Store,
    StoreError,
};

/// The version of the canonical serialization written now.
pub const CHAIN_VERSION: i32 = 1;

/// The `prev_hash` of a tenant's first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Separates these hashes from any other SHA-256 use.
const DOMAIN_TAG: &str = "tollgate.audit";

/// Appends the header (items 1–5) for a record of `tenant_id` at `seq` after `prev_hash`.
pub(crate) fn encode_header(
    version: i32,
    tenant_id: &str,
    seq: i64,
    prev_hash: &str,
    out: &mut Vec<u8>,
) {
    put_str(out, DOMAIN_TAG);
    put_i64(out, i64::from(version));
    put_str(out, tenant_id);
    put_i64(out, seq);
    put_str(out, prev_hash);
}

/// Appends the body (items 6–12): everything but the chain position, so that it can be
/// computed before the record's place in the chain is known.
pub(crate) fn encode_body(row: &AuditRow, out: &mut Vec<u8>) {
    put_i64(out, row.time_ms);
    put_str(out, &row.tenant_name);
    put_str(out, &row.action);
    put_str(out, &row.result);
    for value in [
        &row.error_code,
        &row.actor,
        &row.client_id,
        &row.secret_id,
        &row.audience,
    ] {
        put_opt(out, value.as_deref());
    }
    put_list(out, &row.scopes_requested);
    put_list(out, &row.scopes_granted);
    for value in [
        &row.jti,
        &row.source,
        &row.transport,
        &row.trace_id,
        &row.resource,
    ] {
        put_opt(out, value.as_deref());
    }
    put_list(out, &row.changed_fields);
    put_i64(out, row.count);
}

/// The hash `row` must carry, from its stored fields; `None` for a serialization version
/// this code does not know.
pub fn record_hash(row: &AuditRow) -> Option<String> {
    if row.version != CHAIN_VERSION {
        return None;
    }
    let mut bytes = Vec::with_capacity(512);
    encode_header(
        row.version,
        &row.tenant_id,
        row.seq,
        &row.prev_hash,
        &mut bytes,
    );
    encode_body(row, &mut bytes);
    Some(hex(&sha256(&bytes)))
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_be_bytes());
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // usize is at most 64 bits on every supported target.
    out.extend_from_slice(&(len as u64).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    put_len(out, value.len());
    out.extend_from_slice(value.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            put_str(out, value);
        }
    }
}

fn put_list(out: &mut Vec<u8>, values: &[String]) {
    put_len(out, values.len());
    for value in values {
        put_str(out, value);
    }
}

/// Where and why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at seq {seq}: {reason}")]
pub struct ChainBreak {
    /// The `seq` of the first record that does not verify: the edited record, or the record
    /// after a removed one. For records missing at the end, the first missing `seq`.
    pub seq: i64,
    /// What is wrong with it.
    pub reason: String,
}

/// Verifies a chain record by record, oldest first, so that a long chain can be read page
/// by page. Starts from whatever record comes first (retention may have purged older ones)
/// and stops at the first break: every later call returns it again.
#[derive(Debug, Clone, Default)]
pub struct ChainVerifier {
    tenant_id: Option<String>,
    last: Option<(i64, String)>,
    first_seq: Option<i64>,
    checked: u64,
    broken: Option<ChainBreak>,
}

impl ChainVerifier {
    /// A verifier that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next record: same tenant as the first, `seq` one more than the previous
    /// record's, `prev_hash` equal to the previous record's `hash`, and its own `hash`
    /// equal to the hash of its stored fields. The first record's `prev_hash` is taken as
    /// given.
    pub fn push(&mut self, row: &AuditRow) -> Result<(), ChainBreak> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let result = self.check(row);
        match &result {
            Ok(()) => {
                self.tenant_id.get_or_insert_with(|| row.tenant_id.clone());
                self.first_seq.get_or_insert(row.seq);
                self.last = Some((row.seq, row.hash.clone()));
                self.checked += 1;
            }
            Err(broken) => self.broken = Some(broken.clone()),
        }
        result
    }

    fn check(&self, row: &AuditRow) -> Result<(), ChainBreak> {
        let broken = |reason: String| ChainBreak {
            seq: row.seq,
            reason,
        };
        if let Some(tenant) = &self.tenant_id
            && *tenant != row.tenant_id
        {
            return Err(broken("the record belongs to another tenant".to_owned()));
        }
        if let Some((last_seq, last_hash)) = &self.last {
            let expected = last_seq.saturating_add(1);
            if row.seq > expected {
                return Err(broken(format!(
                    "records {expected}..={} are missing",
                    row.seq.saturating_sub(1)
                )));
            }
            if row.seq != expected {
                return Err(broken(format!(
                    "seq {} follows seq {last_seq}: out of order",
                    row.seq
                )));
            }
            if row.prev_hash != *last_hash {
                return Err(broken(format!(
                    "prev_hash is not the hash of record {last_seq}"
                )));
            }
        }
        match record_hash(row) {
            None => Err(broken(format!(
                "unknown serialization version {}",
                row.version
            ))),
            Some(hash) if hash != row.hash => Err(broken(
                "the hash does not match the record's content".to_owned(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// After every record up to `head.seq` has been pushed: checks that the chain ends
    /// where its head says, with the head's hash, so that records removed from the end
    /// are noticed too. A chain whose records were all purged has nothing to compare.
    pub fn check_head(&mut self, head: &AuditHead) -> Result<(), ChainBreak> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let result = match &self.last {
            None => Ok(()),
            Some((last_seq, _)) if *last_seq < head.seq => Err(ChainBreak {
                seq: last_seq.saturating_add(1),
                reason: format!(
                    "records {}..={} are missing: the chain's head is at {}",
                    last_seq.saturating_add(1),
                    head.seq,
                    head.seq
                ),
            }),
            Some((last_seq, _)) if *last_seq > head.seq => Err(ChainBreak {
                seq: head.seq.saturating_add(1),
                reason: format!("records after the chain's head ({}) exist", head.seq),
            }),
            Some((_, last_hash)) if *last_hash != head.hash => Err(ChainBreak {
                seq: head.seq,
                reason: "the record is not the one the chain's head names".to_owned(),
            }),
            Some(_) => Ok(()),
        };
        if let Err(broken) = &result {
            self.broken = Some(broken.clone());
        }
        result
    }

    /// How many records verified.
    pub fn checked(&self) -> u64 {
        self.checked
    }

    /// The `seq` of the first record verified.
    pub fn first_seq(&self) -> Option<i64> {
        self.first_seq
    }

    /// The `seq` of the last record verified.
    pub fn last_seq(&self) -> Option<i64> {
        self.last.as_ref().map(|(seq, _)| *seq)
    }
}

/// Verifies `records`, one tenant's chain (or its kept part), oldest first. `Err` names the
/// first record that does not verify.
pub fn verify_chain(records: &[AuditRow]) -> Result<(), ChainBreak> {
    let mut verifier = ChainVerifier::new();
    records.iter().try_for_each(|row| verifier.push(row))
}

/// What [`verify_tenant`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// How many records verified.
    pub checked: u64,
    /// The oldest kept record's `seq`.
    pub first_seq: Option<i64>,
    /// The newest verified record's `seq`.
    pub last_seq: Option<i64>,
    /// The chain's head when verification started.
    pub head: Option<AuditHead>,
    /// `Ok`, or the first break.
    pub outcome: Result<(), ChainBreak>,
}

/// Verifies the stored chain of the tenant with `tenant_id`: every kept record from the
/// oldest up to the head read at the start (records appended meanwhile are left for next
/// time), then the head itself. Records are read at most `page_rows` and `page_bytes` (by
/// stored size) at a time; a larger record is read alone and whole, since it must be hashed.
/// `Err` only when the store fails; a broken chain is a report whose `outcome` names the
/// break.
pub async fn verify_tenant(
    store: &Store,
    tenant_id: &TenantId,
    page_rows: u64,
    page_bytes: u64,
) -> Result<ChainReport, StoreError> {
    let head = store.audit_head(tenant_id).await?;
    let end = head.as_ref().map_or(i64::MAX, |head| head.seq);
    let filter = AuditFilter::default();
    let mut verifier = ChainVerifier::new();
    let mut after = None;
    let mut outcome = Ok(());
    // Each read moves `after` forward by at least one record, up to the head.
    'pages: loop {
        let AuditSlice { records, has_more } = store
            .read_audit_events(&AuditRead {
                scope: AuditScope::Tenant(tenant_id),
                filter: &filter,
                order: AuditReadOrder::OldestFirst,
                after,
                before: Some(end.saturating_add(1)),
                max_rows: page_rows,
                max_bytes: page_bytes,
                // Whole: a record is verified by hashing all of it.
                max_row_bytes: u64::MAX,
            })
            .await?;
        for record in &records {
            if let Err(broken) = verifier.push(&record.row) {
                outcome = Err(broken);
                break 'pages;
            }
        }
        match records.last() {
            Some(last) if has_more => after = Some(last.row.seq),
            _ => break,
        }
    }
    if outcome.is_ok() {
        outcome = match &head {
            Some(head) => verifier.check_head(head),
            None if verifier.checked() > 0 => Err(ChainBreak {
                seq: verifier.first_seq().unwrap_or_default(),
                reason: "the tenant has records but no chain head".to_owned(),
            }),
            None => Ok(()),
        };
    }
    Ok(ChainReport {
        checked: verifier.checked(),
        first_seq: verifier.first_seq(),
        last_seq: verifier.last_seq(),
        head,
        outcome,
    })
}

impl fmt::Display for ChainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.outcome, self.first_seq, self.last_seq) {
            (Err(broken), _, _) => write!(f, "{broken}"),
            (Ok(()), Some(first), Some(last)) => write!(
                f,
                "audit chain verified: {} records, seq {first}..={last}",
                self.checked
            ),
            (Ok(()), _, _) => f.write_str("audit chain verified: no records kept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_row(tenant: &str, time_ms: i64) -> AuditRow {
        AuditRow {
            tenant_id: tenant.to_owned(),
            version: CHAIN_VERSION,
            time_ms,
            tenant_name: "acme".into(),
            action: "token_issued".into(),
            result: "granted".into(),
            client_id: Some("client".into()),
            scopes_granted: vec!["read".into()],
            count: 1,
            ..AuditRow::default()
        }
    }

    /// A chain of `n` records built the way the writer builds it.
    fn chain(n: i64) -> Vec<AuditRow> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut row = event_row("ten_1", 1000 + seq);
                row.seq = seq;
                row.prev_hash = prev.clone();
                row.hash = record_hash(&row).unwrap_or_default();
                prev = row.hash.clone();
                row
            })
            .collect()
    }

    fn break_seq(rows: &[AuditRow]) -> Option<i64> {
        verify_chain(rows).err().map(|broken| broken.seq)
    }

    #[test]
    fn hashes_are_stable() {
        // A fixed vector, computed independently (a few lines of Python following the table
        // in the module documentation): changing the serialization must be a new version.
        let mut row = event_row("ten_1", 1_700_000_000_000);
        row.seq = 1;
        row.prev_hash = GENESIS_HASH.to_owned();
        assert_eq!(
            record_hash(&row).as_deref(),
            Some("c19e8568a6ed7ba225684bdda713a7e3562ae527a154adce394d06b48285dba1")
        );
    }

    #[test]
    fn header_and_body_cover_the_same_bytes_as_a_whole_record() {
        let rows = chain(3);
        for row in &rows {
            let mut bytes = Vec::new();
            encode_header(
                row.version,
                &row.tenant_id,
                row.seq,
                &row.prev_hash,
                &mut bytes,
            );
            encode_body(row, &mut bytes);
            assert_eq!(Some(hex(&sha256(&bytes))), record_hash(row));
        }
    }

    #[test]
    fn distinct_records_hash_differently() {
        let base = chain(1).remove(0);
        let mut variants = vec![base.clone()];
        // Moving text between adjacent fields must change the hash (length prefixes).
        variants.push(AuditRow {
            tenant_name: "acmetoken_issued".into(),
            action: String::new(),
            ..base.clone()
        });
        variants.push(AuditRow {
            actor: Some(String::new()),
            ..base.clone()
        });
        variants.push(AuditRow {
            scopes_granted: vec!["re".into(), "ad".into()],
            ..base.clone()
        });
        variants.push(AuditRow {
            scopes_granted: Vec::new(),
            scopes_requested: vec!["read".into()],
            ..base.clone()
        });
        variants.push(AuditRow {
            count: 2,
            ..base.clone()
        });
        variants.push(AuditRow {
            id: 99,
            ..base.clone()
        });
        let hashes: Vec<_> = variants.iter().map(record_hash).collect();
        // Only the `id` variant (last) keeps the hash: it is not covered.
        for (i, hash) in hashes.iter().enumerate().take(hashes.len() - 1).skip(1) {
            assert_ne!(hash, &hashes[0], "variant {i}");
        }
        assert_eq!(hashes.last(), hashes.first());
    }

    #[test]
    fn verifies_and_names_the_first_break() {
        let rows = chain(6);
        assert_eq!(verify_chain(&rows), Ok(()));
        assert_eq!(verify_chain(&[]), Ok(()));

        // Content edit: that record.
        let mut edited = rows.clone();
        edited[2].client_id = Some("someone-else".into());
        assert_eq!(break_seq(&edited), Some(3));

        // A recomputed hash on an edited record: the next record no longer links.
        let mut rehashed = rows.clone();
        rehashed[2].time_ms += 1;
        rehashed[2].hash = record_hash(&rehashed[2]).unwrap_or_default();
        assert_eq!(break_seq(&rehashed), Some(4));

        // Deleted middle record: the next one.
        let mut deleted = rows.clone();
        deleted.remove(3);
        let broken = verify_chain(&deleted).err();
        assert_eq!(broken.as_ref().map(|b| b.seq), Some(5));
        assert_eq!(
            broken.map(|b| b.reason).as_deref(),
            Some("records 4..=4 are missing")
        );

        // Purged prefix: verifies from the oldest kept.
        assert_eq!(verify_chain(&rows[3..]), Ok(()));

        // Unknown version, other tenant, reordering.
        let mut versioned = rows.clone();
        versioned[1].version = 2;
        assert_eq!(break_seq(&versioned), Some(2));
        let mut mixed = rows.clone();
        mixed[4].tenant_id = "ten_2".into();
        assert_eq!(break_seq(&mixed), Some(5));
        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        assert_eq!(break_seq(&swapped), Some(3));
    }

    #[test]
    fn the_head_catches_records_missing_at_the_end() {
        let rows = chain(5);
        let head = |seq: i64, hash: &str| AuditHead {
            tenant_id: "ten_1".into(),
            seq,
            hash: hash.to_owned(),
        };
        let verified = |rows: &[AuditRow], head: &AuditHead| {
            let mut verifier = ChainVerifier::new();
            rows.iter().try_for_each(|row| verifier.push(row))?;
            verifier.check_head(head)
        };
        assert_eq!(verified(&rows, &head(5, &rows[4].hash)), Ok(()));
        let truncated = verified(&rows[..3], &head(5, &rows[4].hash));
        assert_eq!(truncated.map_err(|b| b.seq), Err(4));
        let wrong = verified(&rows, &head(5, &rows[3].hash));
        assert_eq!(wrong.map_err(|b| b.seq), Err(5));
        assert_eq!(verified(&[], &head(5, "x")), Ok(()));
    }
}
