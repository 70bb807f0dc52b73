//! The one reader of `Authorization: Bearer <token>` (RFC 6750 §2.1), shared by the server's
//! gRPC adapters and the resource-server SDK, so that every door accepts the same header.

/// The token of an `Authorization` field value using the Bearer scheme: the scheme in any
/// case (RFC 7235 §2.1: auth-schemes are case-insensitive), one or more spaces, then a
/// non-empty token without spaces. `None` for any other value (another scheme, no token,
/// a token with spaces).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_read_in_any_case_and_strictly() {
        #[rustfmt::skip]
        let cases = [
            ("Bearer abc.def.ghi", Some("abc.def.ghi")),
            ("bearer abc",         Some("abc")),
            ("BEARER  abc",        Some("abc")),
            ("bEaReR abc",         Some("abc")),
            ("Basic dXNlcjpwdw==", None),
            ("Bearer",             None),
            ("Bearer ",            None),
            ("Bearer   ",          None),
            ("Bearer a b",         None),
            ("Bearerabc",          None),
            (" Bearer abc",        None),
            ("",                   None),
        ];
        for (value, expected) in cases {
            assert_eq!(bearer_token(value), expected, "{value:?}");
        }
    }
}
