//! `tollgate audit …`: `AuditService`, the audit trail (scope `audit:read`). `list` and
//! `tail` read and follow events; `export` writes a tenant's chain as JSON lines, oldest
//! first; `verify` checks a chain on the server (`--tenant`) or an export here, offline
//! (`--file`), and fails naming the first record that does not verify.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use prost_types::Timestamp;
use tollgate_proto::audit::{AUDIT_ACTIONS, MAX_AUDIT_MESSAGE_BYTES};
use tollgate_proto::v1;
use tollgate_proto::v1::audit_service_client::AuditServiceClient;
use tonic::Code;

use super::GlobalOptions;
use super::auth::{AdminChannel, AdminSession};
use super::output::{OutputFormat, emit, from_json, print, to_json_line};

/// The largest page the server returns, in events. (Pages are also bounded in bytes, so
/// they may hold fewer: only an empty `next_page_token` ends a listing.)
const MAX_PAGE_SIZE: u32 = 500;

/// How many times in a row `tail` reconnects after its stream ends before giving up.
const TAIL_MAX_RETRIES: u32 = 5;

/// Verifies an exported chain record by record, oldest first, for `audit verify --file`.
/// The chain's format belongs to the server's audit trail, so the binary supplies it
/// ([`NewExportVerifier`]): this crate holds no server code.
pub trait ExportVerifier {
    /// Checks the next event of the export: `Err` names the first record that does not
    /// verify, and every later call returns it again.
    fn push(&mut self, event: v1::AuditEvent) -> Result<(), v1::ChainBreak>;
    /// The report on the events pushed so far, ending with `outcome`. An export carries no
    /// head, so the report has none.
    fn report(&self, outcome: Result<(), v1::ChainBreak>) -> v1::VerifyChainResponse;
}

/// Makes a verifier that has seen nothing.
pub type NewExportVerifier = fn() -> Box<dyn ExportVerifier>;

/// The audit verbs.
#[derive(Debug, Subcommand)]
pub enum AuditSubcommand {
    /// Lists audit events, newest first.
    ///
    /// Text output is one line per event, then `next_page_token` (when more events match)
    /// and `stream_cursor`: `audit tail --after <stream_cursor>` continues exactly where the
    /// listing ends.
    List {
        /// Which events.
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many events (fetched in pages of up to 500).
        #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Continues a listing: the `next_page_token` it printed.
        #[arg(long, value_name = "TOKEN")]
        page_token: Option<String>,
    },
    /// Follows audit events as they are recorded, on any instance, until Ctrl-C.
    ///
    /// Starts with the events after `--after` (else with the next event recorded). Prints
    /// one line per event (with `--output json`, one JSON object per line, each with its
    /// `cursor`). When the stream ends (server restart, admin token expiry) it resumes
    /// after the last event printed, giving up after five failures in a row.
    Tail {
        /// Which events.
        #[command(flatten)]
        filter: FilterArgs,
        /// Starts after this cursor: a listing's `stream_cursor`, or an event's `cursor`.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
    },
    /// Writes a tenant's audit chain to standard output as JSON lines, oldest first, every
    /// stored field included, for `audit verify --file`.
    ///
    /// The export is one unbroken piece of the chain: it starts at the oldest kept event
    /// (or the first one at or after `--since`) and ends at the newest (or before the first
    /// one at or after `--until`), so it verifies on its own. `--output` does not apply.
    Export {
        /// The tenant whose chain to export.
        #[arg(long)]
        tenant: String,
        /// Starts at the first event at or after this time (RFC 3339, or an age such as
        /// `1h`, `7d`).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<Timestamp>,
        /// Stops before the first event at or after this time.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<Timestamp>,
    },
    /// Verifies a tenant's audit chain on the server (`--tenant`), or an `audit export`
    /// file here, without the server (`--file`). Exits with status 1 naming the first
    /// record that does not verify.
    ///
    /// Offline verification starts at the file's first record, taking its `prev_hash` as
    /// given, and cannot know the chain's head: records cut from the end of an export go
    /// unnoticed (the server's verification checks the head).
    Verify {
        /// The tenant whose chain the server verifies.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        tenant: Option<String>,
        /// A file written by `audit export`.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Which events `list` and `tail` read.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// The tenant whose events to read; omitted = every tenant (the system tenant's admins
    /// only).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2026-11-22T09:00:00Z`) or an age
    /// (`90s`, `15m`, `1h`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Only events before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Only events about this client id.
    #[arg(long, value_name = "CLIENT_ID")]
    pub client: Option<String>,
    /// Only events with this action (token_issued, token_denied, token_revoked,
    /// tokens_revoked, secret_rotated, secret_revoked, app_blocked, app_unblocked,
    /// key_rotated, rate_limited, management_change).
    #[arg(long, value_name = "ACTION", value_parser = parse_action)]
    pub action: Option<String>,
    /// Only events with this result.
    #[arg(long, value_name = "RESULT", value_parser = ["granted", "denied", "ok"])]
    pub result: Option<String>,
}

impl FilterArgs {
    fn tenant(&self) -> String {
        self.tenant.clone().unwrap_or_default()
    }

    fn to_wire(&self) -> v1::AuditFilter {
        v1::AuditFilter {
            since: self.since,
            until: self.until,
            client_id: self.client.clone().unwrap_or_default(),
            action: self.action.clone().unwrap_or_default(),
            result: self.result.clone().unwrap_or_default(),
        }
    }
}

/// Parses `--since` / `--until`: RFC 3339 (a date alone is its midnight, UTC), or an age
/// (`45s`, `15m`, `1h`, `7d`) counted back from now.
// An age on the command line counts back from the real present of the person typing it.
#[allow(clippy::disallowed_methods)]
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    parse_time_at(text, SystemTime::now())
}

fn parse_time_at(text: &str, now: SystemTime) -> Result<Timestamp, String> {
    let expected = "expected RFC 3339 (2026-11-22T09:00:00Z) or an age (45s, 15m, 1h, 7d)";
    if let Some(unit) = text.chars().last().filter(|unit| "smhd".contains(*unit)) {
        let number = &text[..text.len() - unit.len_utf8()];
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let seconds_per_unit = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                _ => 86_400,
            };
            let age = number
                .parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(seconds_per_unit))
                .map(Duration::from_secs)
                .ok_or_else(|| format!("age {text:?} is too large"))?;
            let then = now
                .checked_sub(age)
                .ok_or_else(|| format!("age {text:?} is too large"))?;
            return Ok(Timestamp::from(then));
        }
    }
    Timestamp::from_str(text).map_err(|_| format!("invalid time {text:?}: {expected}"))
}

fn parse_action(text: &str) -> Result<String, String> {
    AUDIT_ACTIONS
        .contains(&text)
        .then(|| text.to_owned())
        .ok_or_else(|| format!("unknown action; one of {}", AUDIT_ACTIONS.join(", ")))
}

/// Runs an `audit` command.
pub async fn run(
    options: &GlobalOptions,
    command: AuditSubcommand,
    new_export_verifier: NewExportVerifier,
) -> anyhow::Result<()> {
    let format = options.output;
    match command {
        AuditSubcommand::List {
            filter,
            limit,
            page_token,
        } => list(options, &filter, limit, page_token.unwrap_or_default()).await,
        AuditSubcommand::Tail { filter, after } => tail(options, &filter, after).await,
        AuditSubcommand::Export {
            tenant,
            since,
            until,
        } => export(options, tenant, since, until).await,
        AuditSubcommand::Verify {
            file: Some(path), ..
        } => verify_file(format, &path, new_export_verifier()),
        AuditSubcommand::Verify {
            tenant: Some(tenant),
            ..
        } => {
            let session = AdminSession::open(options).await?;
            let response = audit_client(&session)
                .verify_chain(v1::VerifyChainRequest {
                    tenant: tenant.clone(),
                })
                .await?
                .into_inner();
            report(
                format,
                &format!("the audit chain of tenant {tenant}"),
                &response,
            )
        }
        AuditSubcommand::Verify { .. } => bail!("audit verify needs --tenant or --file"),
    }
}

async fn list(
    options: &GlobalOptions,
    filter: &FilterArgs,
    limit: u32,
    mut page_token: String,
) -> anyhow::Result<()> {
    let session = AdminSession::open(options).await?;
    let mut client = audit_client(&session);
    let mut events = Vec::new();
    let mut remaining = limit;
    let mut stream_cursor;
    // A page holds at least one event or ends the listing (pages are bounded in bytes too,
    // so they may be shorter than asked): at most `limit` turns.
    loop {
        let page = client
            .list_events(v1::ListEventsRequest {
                tenant: filter.tenant(),
                filter: Some(filter.to_wire()),
                page_size: i32::try_from(remaining.min(MAX_PAGE_SIZE)).unwrap_or(1),
                page_token,
                order: v1::EventOrder::NewestFirst.into(),
                after: String::new(),
            })
            .await?
            .into_inner();
        stream_cursor = page.stream_cursor;
        let received = u32::try_from(page.events.len()).unwrap_or(u32::MAX);
        remaining = remaining.saturating_sub(received);
        events.extend(page.events);
        page_token = page.next_page_token;
        if page_token.is_empty() || remaining == 0 || received == 0 {
            break;
        }
    }
    match options.output {
        OutputFormat::Json => print(
            OutputFormat::Json,
            &v1::ListEventsResponse {
                events,
                next_page_token: page_token,
                stream_cursor,
            },
        ),
        OutputFormat::Text => {
            let mut text = String::new();
            for event in &events {
                text.push_str(&event_line(event));
                text.push('\n');
            }
            if !page_token.is_empty() {
                text.push_str(&format!("next_page_token: {page_token}\n"));
            }
            text.push_str(&format!("stream_cursor: {stream_cursor}\n"));
            emit(&text)
        }
    }
}

async fn tail(
    options: &GlobalOptions,
    filter: &FilterArgs,
    after: Option<String>,
) -> anyhow::Result<()> {
    let mut session = AdminSession::open(options).await?;
    // Without --after, start at the newest event now, as a cursor: a reconnect then resumes
    // from it rather than from whatever is newest by then.
    let mut cursor = match after {
        Some(cursor) => cursor,
        None => {
            audit_client(&session)
                .list_events(v1::ListEventsRequest {
                    tenant: filter.tenant(),
                    page_size: 1,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .stream_cursor
        }
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut failures = 0;
    loop {
        let ended = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            ended = follow(&session, filter, &mut cursor, options.output, &mut failures) => ended,
        };
        let resumable = match &ended {
            // The server shut down, the admin token expired or was revoked, or the stream
            // simply ended: a new connection and a new token may carry on.
            None => true,
            Some(status) => matches!(status.code(), Code::Unavailable | Code::Unauthenticated),
        };
        failures += 1;
        if !resumable || failures > TAIL_MAX_RETRIES {
            return match ended {
                Some(status) => Err(anyhow::Error::from(status).context("the audit stream failed")),
                None => bail!("the audit stream keeps ending; last cursor {cursor}"),
            };
        }
        let why = ended.map_or_else(
            || "it ended".to_owned(),
            |status| super::output::describe_error(&anyhow::Error::from(status)),
        );
        super::output::note(format_args!(
            "note: the audit stream stopped ({why}); resuming after {cursor}"
        ));
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(u64::from(failures))) => {}
        }
        match AdminSession::open(options).await {
            Ok(reopened) => session = reopened,
            Err(error) => super::output::note(format_args!(
                "note: cannot reconnect yet: {}",
                super::output::describe_error(&error)
            )),
        }
    }
}

/// Streams events after `cursor`, printing each and moving `cursor` past it, until the
/// stream ends: `None` if it ended cleanly, else its status. Receiving an event resets
/// `failures`.
async fn follow(
    session: &AdminSession,
    filter: &FilterArgs,
    cursor: &mut String,
    format: OutputFormat,
    failures: &mut u32,
) -> Option<tonic::Status> {
    let request = v1::StreamEventsRequest {
        tenant: filter.tenant(),
        filter: Some(filter.to_wire()),
        after: cursor.clone(),
    };
    let mut stream = match audit_client(session).stream_events(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return Some(status),
    };
    loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let Some(event) = message.event else { continue };
                let line = match format {
                    OutputFormat::Text => Ok(event_line(&event)),
                    OutputFormat::Json => to_json_line(&event),
                };
                let printed = line.and_then(|line| emit(&(line + "\n")));
                if let Err(error) = printed {
                    return Some(super::output::status_of_output_error(error));
                }
                *cursor = event.cursor;
                *failures = 0;
            }
            Ok(None) => return None,
            Err(status) => return Some(status),
        }
    }
}

async fn export(
    options: &GlobalOptions,
    tenant: String,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
) -> anyhow::Result<()> {
    let until_ms = until.map(|until| unix_ms(&until));
    if let (Some(since), Some(until_ms)) = (since, until_ms)
        && until_ms <= unix_ms(&since)
    {
        bail!("--until must be after --since");
    }
    let session = AdminSession::open(options).await?;
    let mut client = audit_client(&session);
    let oldest_first = |page_size: i32| v1::ListEventsRequest {
        tenant: tenant.clone(),
        page_size,
        order: v1::EventOrder::OldestFirst.into(),
        ..Default::default()
    };
    let mut exported = Export {
        until_ms,
        seqs: Seqs::default(),
    };
    let mut after = String::new();
    if let Some(since) = since {
        // The first event at or after --since; from there on, every event, so that the
        // export is one unbroken piece of the chain even where clocks disagreed.
        let first = client
            .list_events(v1::ListEventsRequest {
                filter: Some(v1::AuditFilter {
                    since: Some(since),
                    ..Default::default()
                }),
                ..oldest_first(1)
            })
            .await?
            .into_inner()
            .events;
        let Some(first) = first.into_iter().next() else {
            super::output::note(format_args!(
                "note: tenant {tenant} has no audit events at or after --since"
            ));
            return Ok(());
        };
        after = first.cursor.clone();
        let (text, is_done) = exported.lines(vec![first])?;
        emit(&text)?;
        if is_done {
            return exported.finish(&tenant);
        }
    }
    let mut page_token = String::new();
    // Page tokens only move forward, and the listing ends at the newest event that existed
    // when its first page was read: this ends.
    loop {
        let page = client
            .list_events(v1::ListEventsRequest {
                after: if page_token.is_empty() {
                    after.clone()
                } else {
                    String::new()
                },
                page_token,
                ..oldest_first(MAX_PAGE_SIZE as i32)
            })
            .await?
            .into_inner();
        let (text, is_done) = exported.lines(page.events)?;
        emit(&text)?;
        if is_done || page.next_page_token.is_empty() {
            return exported.finish(&tenant);
        }
        page_token = page.next_page_token;
    }
}

/// An `AuditService` client for `session` that accepts the largest message the service
/// sends (tonic's default, 4 MiB, is less than one large event).
fn audit_client(session: &AdminSession) -> AuditServiceClient<AdminChannel> {
    session
        .audit()
        .max_decoding_message_size(MAX_AUDIT_MESSAGE_BYTES)
}

/// What `audit export` has written so far. It holds one page at a time: what it keeps of
/// the events written is their number and their first and last `seq`.
struct Export {
    /// Where it stops: before the first event at or after this time.
    until_ms: Option<i64>,
    /// The `seq`s of the events written.
    seqs: Seqs,
}

/// A run of `seq`s, as its count and ends, without keeping them all.
#[derive(Debug, Default)]
struct Seqs {
    first: Option<i64>,
    last: Option<i64>,
    len: u64,
}

impl Seqs {
    fn push(&mut self, seq: i64) {
        self.first.get_or_insert(seq);
        self.last = Some(seq);
        self.len += 1;
    }

    fn first(&self) -> Option<i64> {
        self.first
    }

    fn last(&self) -> Option<i64> {
        self.last
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl Export {
    /// The JSON lines of `events` up to `until_ms`, and whether it was reached.
    fn lines(&mut self, events: Vec<v1::AuditEvent>) -> anyhow::Result<(String, bool)> {
        let mut text = String::new();
        for event in events {
            if self
                .until_ms
                .is_some_and(|until_ms| event.time_ms >= until_ms)
            {
                return Ok((text, true));
            }
            self.seqs.push(event.seq);
            if let Some(bytes) = event.elided_bytes {
                super::output::note(format_args!(
                    "note: seq {} is too large to be sent whole ({bytes} bytes stored) and is \
                     exported elided: `audit verify --file` stops at it, `audit verify \
                     --tenant` verifies it on the server",
                    event.seq
                ));
            }
            text.push_str(&to_json_line(&event)?);
            text.push('\n');
        }
        Ok((text, false))
    }

    /// Tells a person, on standard error, what was exported.
    fn finish(&self, tenant: &str) -> anyhow::Result<()> {
        match (self.seqs.first(), self.seqs.last()) {
            (Some(first), Some(last)) => super::output::note(format_args!(
                "note: exported {} audit events of tenant {tenant}, seq {first}..={last}",
                self.seqs.len()
            )),
            _ => super::output::note(format_args!(
                "note: tenant {tenant} has no audit events to export"
            )),
        }
        Ok(())
    }
}

/// Verifies an export, oldest record first, without the server.
fn verify_file(
    format: OutputFormat,
    path: &Path,
    mut verifier: Box<dyn ExportVerifier>,
) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the audit export {}", path.display()))?;
    let mut outcome = Ok(());
    let mut records = 0_u64;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: v1::AuditEvent = from_json(&line).with_context(|| {
            format!(
                "{}, line {}: not an exported audit event",
                path.display(),
                index + 1
            )
        })?;
        records += 1;
        if let Some(bytes) = event.elided_bytes {
            // Its content was cut on the way out: it cannot match its hash here.
            outcome = Err(v1::ChainBreak {
                seq: event.seq,
                reason: format!(
                    "the record was exported elided ({bytes} bytes stored, too large to be \
                     sent whole): verify it on the server with `audit verify --tenant`"
                ),
            });
            break;
        }
        if let Err(broken) = verifier.push(event) {
            outcome = Err(broken);
            break;
        }
    }
    if records == 0 {
        bail!("the audit export {} holds no events", path.display());
    }
    let response = verifier.report(outcome);
    report(
        format,
        &format!("the audit export {}", path.display()),
        &response,
    )
}

/// Prints a verification result; an error (exit status 1) naming the first broken record
/// when the chain does not verify.
fn report(
    format: OutputFormat,
    what: &str,
    response: &v1::VerifyChainResponse,
) -> anyhow::Result<()> {
    if format == OutputFormat::Json {
        print(format, response)?;
    }
    if let Some(broken) = response.first_break.as_ref().filter(|_| !response.ok) {
        bail!(
            "{what} is broken at seq {}: {} ({} records before it verified)",
            broken.seq,
            broken.reason,
            response.records_checked
        );
    }
    if format == OutputFormat::Text {
        let text = match (response.oldest_seq, response.newest_seq) {
            (Some(oldest), Some(newest)) => format!(
                "{what} verified: {} records, seq {oldest}..={newest}\n",
                response.records_checked
            ),
            _ => format!("{what} verified: no records kept\n"),
        };
        emit(&text)?;
    }
    Ok(())
}

fn unix_ms(time: &Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1_000)
        .saturating_add(i64::from(time.nanos.div_euclid(1_000_000)))
}

/// One event on one line: time, tenant, seq, action and result, then whichever other
/// fields are set as `name=value`.
fn event_line(event: &v1::AuditEvent) -> String {
    let time = event
        .time
        .map_or_else(|| event.time_ms.to_string(), |time| time.to_string());
    let mut line = format!(
        "{time} {} seq={} {} {}",
        word(&event.tenant_name),
        event.seq,
        word(&event.action),
        word(&event.result)
    );
    let optional = [
        ("error", &event.error_code),
        ("actor", &event.actor),
        ("client_id", &event.client_id),
        ("secret_id", &event.secret_id),
        ("audience", &event.audience),
    ];
    let lists = [
        ("scopes_requested", &event.scopes_requested),
        ("scopes_granted", &event.scopes_granted),
    ];
    let more = [
        ("jti", &event.jti),
        ("source", &event.source),
        ("transport", &event.transport),
        ("trace_id", &event.trace_id),
        ("resource", &event.resource),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={}", word(value)));
        }
    }
    for (name, values) in lists {
        if !values.is_empty() {
            line.push_str(&format!(" {name}={}", word(&values.join(","))));
        }
    }
    for (name, value) in more {
        if let Some(value) = value {
            line.push_str(&format!(" {name}={}", word(value)));
        }
    }
    if !event.changed_fields.is_empty() {
        line.push_str(&format!(
            " changed_fields={}",
            word(&event.changed_fields.join(","))
        ));
    }
    if event.count != 1 {
        line.push_str(&format!(" count={}", event.count));
    }
    line
}

/// A value as one word: as is, or JSON-quoted when empty or holding spaces, quotes or
/// control characters (a stored value that was tampered with may).
fn word(value: &str) -> String {
    let is_plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    if is_plain {
        value.to_owned()
    } else {
        serde_json::Value::String(value.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_ages() -> Result<(), String> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |seconds| Timestamp { seconds, nanos: 0 };
        assert_eq!(parse_time_at("45s", now)?, at(999_955));
        assert_eq!(parse_time_at("15m", now)?, at(999_100));
        assert_eq!(parse_time_at("1h", now)?, at(996_400));
        assert_eq!(parse_time_at("7d", now)?, at(395_200));
        assert_eq!(
            parse_time_at("2023-11-14T22:13:20Z", now)?,
            at(1_700_000_000)
        );
        assert_eq!(
            parse_time_at("2023-11-14T23:13:20.5+01:00", now)?,
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            parse_time_at("2023-11-14", now)?,
            at(1_699_920_000),
            "a date is its midnight, UTC"
        );
        for bad in ["", "1w", "h", "-1h", "yesterday", "99999999999999999999d"] {
            assert!(parse_time_at(bad, now).is_err(), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn event_lines_show_what_is_set() {
        let event = v1::AuditEvent {
            tenant_name: "acme".into(),
            seq: 7,
            time_ms: 1_700_000_000_123,
            time: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            action: "token_issued".into(),
            result: "granted".into(),
            client_id: Some("c1".into()),
            scopes_granted: vec!["read".into(), "write".into()],
            transport: Some("grpc".into()),
            count: 1,
            ..Default::default()
        };
        assert_eq!(
            event_line(&event),
            "2023-11-14T22:13:20.123Z acme seq=7 token_issued granted client_id=c1 \
             scopes_granted=read,write transport=grpc"
        );
        let odd = v1::AuditEvent {
            actor: Some("two words".into()),
            count: 3,
            ..event
        };
        assert!(
            event_line(&odd).contains(" actor=\"two words\" "),
            "{}",
            event_line(&odd)
        );
        assert!(event_line(&odd).ends_with(" count=3"));
    }
}
