//! Parsers of the structured flag values: `--scope VALUE[=DESCRIPTION]` and
//! `--grant AUDIENCE=SCOPE[,SCOPE…]`. They check the syntax with the domain's own rules, so
//! a malformed value is a usage error (exit status 2) before anything is sent.

use tollgate_domain::{ApiIdentifier, Scope};
use tollgate_proto::v1;

/// Parses a scope definition of `api create` / `api update`: `VALUE` or
/// `VALUE=DESCRIPTION`, e.g. `archive:write="Write archives"`.
///
/// The value ends at the first `=`: everything after it, including further `=`, is the
/// description. (A scope token may contain `=`, but such a scope cannot be defined with this
/// flag; scope names with `=` are rare, descriptions with `=` are not.)
pub fn parse_scope_definition(text: &str) -> Result<v1::ScopeDefinition, String> {
    let (value, description) = text.split_once('=').unwrap_or((text, ""));
    let scope = Scope::parse(value).map_err(|error| error.reason)?;
    Ok(v1::ScopeDefinition {
        value: scope.to_string(),
        description: description.to_owned(),
    })
}

/// Parses a grant of `app create` / `app update`: `AUDIENCE=SCOPE[,SCOPE…]`, e.g.
/// `https://archive.example.com/=archive:read,archive:write`. `AUDIENCE=` alone is a grant
/// without scopes.
///
/// The audience ends at the *last* `=`, so an audience that contains `=` works as long as
/// the flag ends with `=` and its scopes; scopes given this way cannot contain `=` or `,`.
/// Empty items between commas are ignored.
pub fn parse_grant(text: &str) -> Result<v1::Grant, String> {
    let Some((audience, scopes)) = text.rsplit_once('=') else {
        return Err(
            "expected AUDIENCE=SCOPE[,SCOPE...] (or AUDIENCE= for a grant without scopes)"
                .to_owned(),
        );
    };
    let audience = ApiIdentifier::parse(audience)
        .map_err(|error| format!("audience {audience:?}: {}", error.reason))?;
    let scopes = scopes
        .split(',')
        .filter(|scope| !scope.is_empty())
        .map(parse_scope)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(v1::Grant {
        audience: audience.to_string(),
        scopes,
    })
}

/// Parses one scope token (RFC 6749 §3.3), as `token issue --scope` takes it.
pub fn parse_scope(text: &str) -> Result<String, String> {
    Scope::parse(text)
        .map(|scope| scope.to_string())
        .map_err(|error| error.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(value: &str, description: &str) -> v1::ScopeDefinition {
        v1::ScopeDefinition {
            value: value.to_owned(),
            description: description.to_owned(),
        }
    }

    fn grant(audience: &str, scopes: &[&str]) -> v1::Grant {
        v1::Grant {
            audience: audience.to_owned(),
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
        }
    }

    #[test]
    fn scope_definitions() {
        assert_eq!(
            parse_scope_definition("archive:read"),
            Ok(definition("archive:read", ""))
        );
        assert_eq!(
            parse_scope_definition("archive:write=Write archives"),
            Ok(definition("archive:write", "Write archives"))
        );
        assert_eq!(
            parse_scope_definition("a=x=y"),
            Ok(definition("a", "x=y")),
            "the value ends at the first '='"
        );
        assert_eq!(parse_scope_definition("a="), Ok(definition("a", "")));
        assert!(parse_scope_definition("=description").is_err());
        assert!(parse_scope_definition("has space").is_err());
        assert!(parse_scope_definition("").is_err());
    }

    #[test]
    fn grants() {
        assert_eq!(
            parse_grant("https://archive.example.com/=archive:read,archive:write"),
            Ok(grant(
                "https://archive.example.com/",
                &["archive:read", "archive:write"]
            ))
        );
        assert_eq!(
            parse_grant("https://archive.example.com/="),
            Ok(grant("https://archive.example.com/", &[]))
        );
        assert_eq!(
            parse_grant("https://x.example/?v=1=read"),
            Ok(grant("https://x.example/?v=1", &["read"])),
            "the audience ends at the last '='"
        );
        assert_eq!(parse_grant("api=a,,b,"), Ok(grant("api", &["a", "b"])));
        assert!(parse_grant("https://archive.example.com/").is_err());
        assert!(parse_grant("=read").is_err());
        assert!(parse_grant("api=bad\"scope").is_err());
        assert!(parse_grant("has space=read").is_err());
    }

    #[test]
    fn scopes() {
        assert_eq!(parse_scope("archive:read"), Ok("archive:read".to_owned()));
        assert!(parse_scope("a b").is_err());
        assert!(parse_scope("").is_err());
    }
}
