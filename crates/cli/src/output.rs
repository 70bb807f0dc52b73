//! Printing responses and errors.
//!
//! Every response message goes through one path: it is encoded, decoded again as a
//! [`DynamicMessage`] with the descriptors embedded in `tollgate-proto`, and then either
//! serialized to JSON (canonical protobuf JSON mapping, proto field names, default values
//! included) or rendered as indented `key: value` text in field order.

use std::io::Write;

use anyhow::Context;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, SerializeOptions, Value};
use tollgate_proto::v1;
use tonic::Code;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Readable `key: value` lines; `token issue` prints the bare access token.
    Text,
    /// The response message as JSON, with the proto field names.
    Json,
}

/// A generated message whose protobuf full name is known, so it can be printed through its
/// descriptor.
pub trait ProtoMessage: prost::Message + Sized {
    /// The message's full name, e.g. `tollgate.v1.Api`.
    const FULL_NAME: &'static str;
}

macro_rules! proto_messages {
    ($($name:ident),* $(,)?) => {
        $(
            impl ProtoMessage for v1::$name {
                const FULL_NAME: &'static str = concat!("tollgate.v1.", stringify!($name));
            }
        )*
        /// Every message implementing [`ProtoMessage`], for the tests.
        #[cfg(test)]
        const ALL_FULL_NAMES: &[&str] = &[$(<v1::$name as ProtoMessage>::FULL_NAME),*];
    };
}

proto_messages!(
    IssueTokenResponse,
    GetJwksResponse,
    Tenant,
    AdminCredentials,
    CreateTenantResponse,
    ListTenantsResponse,
    DeleteTenantResponse,
    ScopeDefinition,
    Api,
    ListApisResponse,
    DeleteApiResponse,
    Grant,
    App,
    CreateAppResponse,
    ListAppsResponse,
    DeleteAppResponse,
    ClientSecretInfo,
    RotateSecretResponse,
    RevokeSecretResponse,
    ListSecretsResponse,
    SigningKeyInfo,
    RotateSigningKeyResponse,
    ListKeysResponse,
    RevokeTokensResponse,
    RevokeTokenResponse,
    IntrospectTokenResponse,
    AuditEvent,
    ListEventsResponse,
    StreamEventsResponse,
    VerifyChainResponse,
);

/// Prints `message` in `format` to standard output.
pub fn print<M: ProtoMessage>(format: OutputFormat, message: &M) -> anyhow::Result<()> {
    let text = match format {
        OutputFormat::Text => to_text(message)?,
        OutputFormat::Json => to_json(message)? + "\n",
    };
    emit(&text)
}

/// Prints the (empty) response of a delete: a confirmation in text, the message in JSON.
pub fn print_deleted<M: ProtoMessage>(
    format: OutputFormat,
    message: &M,
    what: &str,
) -> anyhow::Result<()> {
    print_done(format, message, &format!("deleted {what}"))
}

/// Prints an (empty) response: the one-line `confirmation` in text, the message in JSON.
pub fn print_done<M: ProtoMessage>(
    format: OutputFormat,
    message: &M,
    confirmation: &str,
) -> anyhow::Result<()> {
    match format {
        OutputFormat::Text => emit(&format!("{confirmation}\n")),
        OutputFormat::Json => print(format, message),
    }
}

/// Tells a person, on standard error and in text mode only, that a secret just printed is
/// not shown again.
pub fn secret_shown_once(format: OutputFormat) {
    if format == OutputFormat::Text {
        note(format_args!(
            "note: the client secret is shown only once; store it now."
        ));
    }
}

/// Standard output's reader went away (`tollgate audit export | head -1`): the command
/// stops, and `main` exits with status 0 and says nothing, as `cat` or `grep` would have
/// been ended quietly by SIGPIPE. (Rust ignores SIGPIPE, so a write gets `EPIPE` instead.)
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
pub struct OutputClosed;

/// Whether `error` is, or was caused by, [`OutputClosed`], also when carried as the source of
/// a `tonic::Status`.
pub fn is_output_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<OutputClosed>())
}

/// `error` as a status for code that reports failures as `tonic::Status`: an
/// [`OutputClosed`] stays recognisable through [`is_output_closed`], anything else becomes
/// INTERNAL with the error's text.
pub fn status_of_output_error(error: anyhow::Error) -> tonic::Status {
    if is_output_closed(&error) {
        let mut status = tonic::Status::cancelled(OutputClosed.to_string());
        status.set_source(std::sync::Arc::new(OutputClosed));
        status
    } else {
        tonic::Status::internal(error.to_string())
    }
}

/// Writes `text` to standard output. A closed pipe is [`OutputClosed`], which ends the
/// command quietly; any other failure is an error.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        result => result.context("cannot write to standard output"),
    }
}

/// Writes one line for a person to standard error, as `eprintln!` would, but never panics:
/// `eprintln!` panics when standard error is a pipe whose reader has gone
/// (`tollgate … 2>&1 | head -1`), and a note nobody can read is not worth failing for.
/// Use it with `format_args!`: `note(format_args!("note: {x}"))`.
pub fn note(line: std::fmt::Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    // Ignored on purpose: there is nowhere left to report a failure to write to stderr.
    let _ = stderr
        .write_fmt(line)
        .and_then(|()| stderr.write_all(b"\n"));
}

/// `message` as pretty-printed JSON with the proto field names and every field, default or
/// not (canonical protobuf JSON: 64-bit integers are strings, timestamps RFC 3339).
pub fn to_json<M: ProtoMessage>(message: &M) -> anyhow::Result<String> {
    let dynamic = to_dynamic(message)?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut serializer = serde_json::Serializer::pretty(Vec::new());
    dynamic
        .serialize_with_options(&mut serializer, &options)
        .with_context(|| format!("cannot print a {} as JSON", M::FULL_NAME))?;
    String::from_utf8(serializer.into_inner()).context("JSON output is not UTF-8")
}

/// `message` as JSON on one line (a JSON-lines record), otherwise as [`to_json`].
pub fn to_json_line<M: ProtoMessage>(message: &M) -> anyhow::Result<String> {
    let dynamic = to_dynamic(message)?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false);
    let mut serializer = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut serializer, &options)
        .with_context(|| format!("cannot print a {} as JSON", M::FULL_NAME))?;
    String::from_utf8(serializer.into_inner()).context("JSON output is not UTF-8")
}

/// Reads a message back from its JSON form (as [`to_json`] or [`to_json_line`] print it,
/// or with the camelCase JSON names). The error says what is wrong, not where: callers
/// name the line.
pub fn from_json<M: ProtoMessage + Default>(text: &str) -> anyhow::Result<M> {
    let descriptor = descriptor_pool()?
        .get_message_by_name(M::FULL_NAME)
        .with_context(|| format!("no message {} in the embedded descriptors", M::FULL_NAME))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut deserializer)
        .with_context(|| format!("not a {} in JSON", M::FULL_NAME))?;
    deserializer
        .end()
        .with_context(|| format!("not a {} in JSON", M::FULL_NAME))?;
    dynamic
        .transcode_to::<M>()
        .with_context(|| format!("cannot decode a {}", M::FULL_NAME))
}

/// `message` as indented `key: value` lines in field order, ending with a newline. Nested
/// messages are indented, repeated messages are `- ` items, repeated scalars are joined by
/// spaces, timestamps are RFC 3339, and empty or unusual strings are quoted.
pub fn to_text<M: ProtoMessage>(message: &M) -> anyhow::Result<String> {
    let dynamic = to_dynamic(message)?;
    let mut out = String::new();
    render_message(&mut out, &dynamic, 0);
    Ok(out)
}

fn descriptor_pool() -> anyhow::Result<DescriptorPool> {
    DescriptorPool::decode(tollgate_proto::FILE_DESCRIPTOR_SET)
        .context("cannot read the embedded protobuf descriptors")
}

fn to_dynamic<M: ProtoMessage>(message: &M) -> anyhow::Result<DynamicMessage> {
    let descriptor = descriptor_pool()?
        .get_message_by_name(M::FULL_NAME)
        .with_context(|| format!("no message {} in the embedded descriptors", M::FULL_NAME))?;
    DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("cannot decode a {}", M::FULL_NAME))
}

fn render_message(out: &mut String, message: &DynamicMessage, indent: usize) {
    for field in message.descriptor().fields() {
        if field.supports_presence() && !message.has_field(&field) {
            continue; // an unset message or `optional` field
        }
        render_field(out, indent, field.name(), &message.get_field(&field));
    }
}

fn render_field(out: &mut String, indent: usize, name: &str, value: &Value) {
    let pad = " ".repeat(indent);
    match value {
        Value::Message(inner) if !is_well_known(inner) => {
            if inner.descriptor().fields().next().is_none() {
                out.push_str(&format!("{pad}{name}: {{}}\n"));
            } else {
                out.push_str(&format!("{pad}{name}:\n"));
                render_message(out, inner, indent + 2);
            }
        }
        Value::List(items) if items.is_empty() => out.push_str(&format!("{pad}{name}: []\n")),
        Value::List(items) if items.iter().all(|item| !is_nested(item)) => {
            let joined: Vec<String> = items.iter().map(scalar_text).collect();
            out.push_str(&format!("{pad}{name}: {}\n", joined.join(" ")));
        }
        Value::List(items) => {
            out.push_str(&format!("{pad}{name}:\n"));
            for item in items {
                render_list_item(out, indent + 2, item);
            }
        }
        Value::Map(map) => {
            out.push_str(&format!("{pad}{name}:\n"));
            let mut entries: Vec<(String, &Value)> = map
                .iter()
                .map(|(key, value)| (map_key_text(key), value))
                .collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in entries {
                render_field(out, indent + 2, &key, value);
            }
        }
        scalar => out.push_str(&format!("{pad}{name}: {}\n", scalar_text(scalar))),
    }
}

/// One item of a repeated field: `- ` then the item, its further lines aligned under it.
fn render_list_item(out: &mut String, indent: usize, item: &Value) {
    let pad = " ".repeat(indent);
    match item {
        Value::Message(message) if !is_well_known(message) => {
            let mut block = String::new();
            render_message(&mut block, message, indent + 2);
            match block.get(indent + 2..) {
                Some(rest) if !rest.is_empty() => {
                    out.push_str(&pad);
                    out.push_str("- ");
                    out.push_str(rest);
                }
                _ => out.push_str(&format!("{pad}- {{}}\n")),
            }
        }
        other => out.push_str(&format!("{pad}- {}\n", scalar_text(other))),
    }
}

/// Whether `value` renders on lines of its own.
fn is_nested(value: &Value) -> bool {
    match value {
        Value::Message(message) => !is_well_known(message),
        Value::List(_) | Value::Map(_) => true,
        _ => false,
    }
}

/// `google.protobuf.*` messages (timestamps) render as their JSON value, on one line.
fn is_well_known(message: &DynamicMessage) -> bool {
    message
        .descriptor()
        .full_name()
        .starts_with("google.protobuf.")
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Bool(value) => value.to_string(),
        Value::I32(value) => value.to_string(),
        Value::I64(value) => value.to_string(),
        Value::U32(value) => value.to_string(),
        Value::U64(value) => value.to_string(),
        Value::F32(value) => value.to_string(),
        Value::F64(value) => value.to_string(),
        Value::EnumNumber(value) => value.to_string(),
        Value::String(text) => string_text(text),
        Value::Bytes(bytes) => format!("<{} bytes>", bytes.len()),
        Value::Message(message) => match serde_json::to_value(message) {
            Ok(serde_json::Value::String(text)) => text,
            Ok(other) => other.to_string(),
            Err(_) => format!("<{}>", message.descriptor().full_name()),
        },
        Value::List(items) => {
            let joined: Vec<String> = items.iter().map(scalar_text).collect();
            format!("[{}]", joined.join(", "))
        }
        Value::Map(_) => "{…}".to_owned(),
    }
}

/// A string as is, or JSON-quoted when it would otherwise be invisible or ambiguous.
fn string_text(text: &str) -> String {
    let plain = !text.is_empty()
        && text.trim() == text
        && !text.chars().any(char::is_control)
        && !text.starts_with(['"', '-', '[', '{']);
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

fn map_key_text(key: &prost_reflect::MapKey) -> String {
    use prost_reflect::MapKey;
    match key {
        MapKey::Bool(value) => value.to_string(),
        MapKey::I32(value) => value.to_string(),
        MapKey::I64(value) => value.to_string(),
        MapKey::U32(value) => value.to_string(),
        MapKey::U64(value) => value.to_string(),
        MapKey::String(value) => value.clone(),
    }
}

/// The one-line description of a failure printed after `error: `: the context messages and
/// causes, joined by `: `. A gRPC status reads `CODE (reason): message`, e.g.
/// `PERMISSION_DENIED (invalid_scope): …`, the reason coming from `google.rpc.ErrorInfo`
/// (or, for a status without it, from the code).
pub fn describe_error(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = match cause.downcast_ref::<tonic::Status>() {
            Some(status) => describe_status(status),
            None => cause.to_string(),
        };
        // Transport errors often repeat their source's text; say it once.
        if text.is_empty() || parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn describe_status(status: &tonic::Status) -> String {
    let (code, message) = tollgate_proto::status::error_code(status);
    let head = format!("{} ({})", code_name(status.code()), code.reason());
    if message.is_empty() {
        head
    } else {
        format!("{head}: {message}")
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use tollgate_domain::ErrorCode;

    use super::*;

    fn sample_app() -> v1::App {
        v1::App {
            tenant: "acme".to_owned(),
            client_id: "c1".to_owned(),
            name: "Reporting job".to_owned(),
            description: String::new(),
            grants: vec![
                v1::Grant {
                    audience: "https://archive.example.com/".to_owned(),
                    scopes: vec!["archive:read".to_owned(), "archive:write".to_owned()],
                },
                v1::Grant {
                    audience: "https://mail.example.com/".to_owned(),
                    scopes: vec![],
                },
            ],
            blocked: false,
            is_system: false,
            create_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            update_time: None,
            rate_limit_per_second: 0,
        }
    }

    #[test]
    fn every_printable_message_is_in_the_descriptors() -> anyhow::Result<()> {
        let pool = DescriptorPool::decode(tollgate_proto::FILE_DESCRIPTOR_SET)?;
        for name in ALL_FULL_NAMES {
            assert!(pool.get_message_by_name(name).is_some(), "{name}");
        }
        Ok(())
    }

    /// `token.proto` is read by people writing clients in other languages: every message
    /// field says what it holds.
    #[test]
    fn every_token_proto_field_is_documented() -> anyhow::Result<()> {
        let pool = DescriptorPool::decode(tollgate_proto::FILE_DESCRIPTOR_SET)?;
        let file = pool
            .get_file_by_name("tollgate/v1/token.proto")
            .context("no token.proto")?;
        let proto = file.file_descriptor_proto();
        let locations = proto
            .source_code_info
            .as_ref()
            .context("no source info in the descriptors")?
            .location
            .iter()
            .filter(|location| {
                location
                    .leading_comments
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty())
            })
            .map(|location| location.path.clone())
            .collect::<std::collections::HashSet<_>>();
        let mut undocumented = Vec::new();
        for (message_index, message) in proto.message_type.iter().enumerate() {
            for (field_index, field) in message.field.iter().enumerate() {
                // FileDescriptorProto.message_type = 4, DescriptorProto.field = 2.
                let path = vec![4, message_index as i32, 2, field_index as i32];
                if !locations.contains(&path) {
                    undocumented.push(format!("{}.{}", message.name(), field.name()));
                }
            }
        }
        assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
        Ok(())
    }

    #[test]
    fn json_uses_proto_field_names_and_keeps_defaults() -> anyhow::Result<()> {
        let json: serde_json::Value = serde_json::from_str(&to_json(&sample_app())?)?;
        assert_eq!(json["client_id"], "c1");
        assert_eq!(json["is_system"], false);
        assert_eq!(json["description"], "");
        assert_eq!(
            json["grants"][0]["audience"],
            "https://archive.example.com/"
        );
        assert_eq!(json["grants"][1]["scopes"], serde_json::json!([]));
        assert_eq!(json["create_time"], "2023-11-14T22:13:20Z");
        assert!(json.get("clientId").is_none());

        let created = v1::CreateAppResponse {
            app: Some(sample_app()),
            client_secret: "tgsec_x".to_owned(),
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&created)?)?;
        assert_eq!(json["client_secret"], "tgsec_x");
        assert_eq!(json["app"]["client_id"], "c1");

        let token = v1::IssueTokenResponse {
            access_token: "a.b.c".to_owned(),
            token_type: "Bearer".to_owned(),
            expires_in: 3600,
            scopes: vec!["read".to_owned()],
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&token)?)?;
        assert_eq!(json["access_token"], "a.b.c");
        assert_eq!(
            json["expires_in"], "3600",
            "int64 is a string in protobuf JSON"
        );

        assert_eq!(to_json(&v1::DeleteAppResponse {})?, "{}");
        Ok(())
    }

    #[test]
    fn text_is_indented_key_value_lines() -> anyhow::Result<()> {
        let expected = "\
tenant: acme
client_id: c1
name: Reporting job
description: \"\"
grants:
  - audience: https://archive.example.com/
    scopes: archive:read archive:write
  - audience: https://mail.example.com/
    scopes: []
blocked: false
is_system: false
create_time: 2023-11-14T22:13:20Z
rate_limit_per_second: 0
";
        assert_eq!(to_text(&sample_app())?, expected);

        let created = v1::CreateTenantResponse {
            tenant: Some(v1::Tenant {
                name: "acme".to_owned(),
                ..Default::default()
            }),
            admin: None,
        };
        let text = to_text(&created)?;
        assert!(
            text.starts_with("tenant:\n  name: acme\n  display_name: \"\"\n"),
            "{text}"
        );
        assert!(!text.contains("admin"), "{text}");
        Ok(())
    }

    #[test]
    fn errors_show_code_reason_and_context() {
        let status =
            tollgate_proto::status::to_status(ErrorCode::InvalidScope, "scope x is not held");
        let error = anyhow::Error::from(status);
        assert_eq!(
            describe_error(&error),
            "PERMISSION_DENIED (invalid_scope): scope x is not held"
        );

        let error = anyhow::Error::from(tonic::Status::not_found("no such tenant"))
            .context("cannot get an admin token");
        assert_eq!(
            describe_error(&error),
            "cannot get an admin token: NOT_FOUND (not_found): no such tenant"
        );
    }

    #[test]
    fn strings_are_quoted_only_when_needed() {
        assert_eq!(string_text("plain text"), "plain text");
        assert_eq!(string_text(""), "\"\"");
        assert_eq!(string_text(" padded"), "\" padded\"");
        assert_eq!(string_text("two\nlines"), "\"two\\nlines\"");
        assert_eq!(string_text("- dash"), "\"- dash\"");
    }
}
