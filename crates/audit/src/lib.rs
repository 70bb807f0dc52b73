//! Tollgate's audit trail: what is recorded ([`AuditEvent`]), how records of a tenant are
//! chained by SHA-256 and verified ([`verify_chain`], [`ChainVerifier`], [`verify_tenant`]),
//! and how they are written durably at low cost per event ([`AuditWriter`]).
//!
//! # Design
//!
//! **What is recorded.** Token requests (granted, denied, rate limited), revocations,
//! secret and key rotations, blocks and management changes, each with tenant, time (Unix
//! ms), [`AuditAction`], actor, [`Outcome`] and error code, client id, credential id
//! (`sid`), audience, scopes requested and granted, `jti`, source address, [`Transport`],
//! trace id, and for management changes the resource and the *names* of the changed
//! fields. An event has no free-form field: every text is an [`Identifier`] or a
//! [`FieldName`], which refuse anything carrying the client-secret prefix (`tgsec_`) or a
//! stored secret hash's `$`, so a secret or its hash cannot be recorded even by mistake.
//!
//! **Bounded cost.** A record's size is bounded by its type ([`MAX_EVENT_TEXT_BYTES`]):
//! every text has a maximum length and every list a maximum number of items, scopes past it
//! counted rather than listed. Refusals that anyone can cause without a credential
//! (failed client authentication, rate limits) are aggregated per second by
//! [`DenialCounter`], per source address when they name no valid client, in bounded memory.
//!
//! **Tamper evidence.** Each tenant's records form a chain: record `seq` n (1, 2, 3, …)
//! stores `prev_hash`, the hash of record n − 1 ([`GENESIS_HASH`] for the first), and
//! `hash`, the SHA-256 of a canonical, versioned serialization of its chain position and
//! every stored field ([`chain`] documents the bytes). Editing any field of a stored record
//! breaks its own hash; recomputing that hash breaks the next record's link; deleting a
//! record leaves a gap at the next; removing the newest records contradicts the chain's
//! head ([`tollgate_store::AuditHead`]). [`ChainBreak`] names the first record that fails.
//! Retention deletes a prefix of each chain, so verification starts at the oldest kept
//! record and takes its `prev_hash` as given. (Whoever can rewrite the database *and*
//! recompute every later hash and the head can forge a consistent chain: the chain proves
//! the trail unchanged since it was read or exported, so exporting it elsewhere, or
//! anchoring a head externally, is what makes it evidence against a database
//! administrator.)
//!
//! **Durability with group commit.** [`AuditWriter::record`] returns only after the
//! transaction holding the event has committed, so a caller that records before acting
//! (issuing a token, say) never acts unrecorded. One task per process gathers events into
//! batches (up to [`AuditConfig::max_batch`] events or [`AuditConfig::max_wait`]; by
//! default 512 and no wait, i.e. whatever queued while the previous transaction committed,
//! which measured best), assigns each tenant's `seq`, `prev_hash` and `hash` in arrival
//! order, and appends the batch with one multi-row insert in one transaction. If that
//! fails, every waiter of the batch gets [`AuditError::Unavailable`] (fail closed) and the
//! rollback leaves nothing behind. [`AuditWriter::shutdown`] commits what is queued.
//!
//! **Several instances, one chain per tenant.** The chain head must be read and extended
//! atomically. [`tollgate_store::Store::append_audit_batch`] does both in the transaction
//! that appends: it first updates one lock row (`audit_heads` where `tenant_id = ''`),
//! which on PostgreSQL takes a row lock that other instances' appends queue behind until
//! commit, and on SQLite takes the database's single write lock; then it reads the heads,
//! this crate computes the hashes, and the store writes the events and the new heads. The
//! store checks that the rows continue the heads, moves heads only forward, and
//! `UNIQUE (tenant_id, seq)` refuses any fork, so no bug can store a gap or a duplicate.
//! One lock for all tenants (rather than one per tenant) keeps the scheme deadlock-free
//! for batches that span tenants and makes the global `id` commit-ordered, so a live tail
//! across tenants can resume from an id without missing late commits. Its cost is that
//! instances' batches commit one after another; each batch carries up to `max_batch`
//! events, so the lock is taken once per batch, not once per event.

pub mod chain;
mod change;
mod denials;
mod error;
mod event;
mod writer;

pub use chain::{
    CHAIN_VERSION, ChainBreak, ChainReport, ChainVerifier, GENESIS_HASH, record_hash, verify_chain,
    verify_tenant,
};
pub use change::ChangeEvents;
pub use denials::{CountedBy, DenialCounter, MAX_PENDING_DENIAL_KEYS};
pub use error::AuditError;
pub use event::{
    AuditAction, AuditEvent, AuditRecord, FieldName, Identifier, MAX_CHANGED_FIELDS,
    MAX_EVENT_TEXT_BYTES, MAX_FIELD_NAME_LEN, MAX_IDENTIFIER_LEN, MAX_RECORDED_GRANTED_SCOPES,
    MAX_RECORDED_REQUESTED_SCOPES, Outcome,
};
pub use tollgate_domain::Transport;
pub use writer::{AuditConfig, AuditStats, AuditWriter};
