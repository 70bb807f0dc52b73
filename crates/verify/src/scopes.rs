//! Which scopes a request needs, by route (an HTTP path or a gRPC method path such as
//! `/tollgate.v1.TokenService/IssueToken`) and optionally by HTTP method.
//!
//! Pure data, no HTTP types: the layers ask [`ScopeRules::required`] with the request's
//! method and path and compare the answer with [`Claims::scopes`](crate::Claims::scopes).

/// A route pattern: an exact path, or a prefix when it ends with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// Upper-case HTTP method, or `None` for any.
    method: Option<String>,
    pattern: String,
    scopes: Vec<String>,
}

impl Rule {
    fn matches(&self, method: &str, path: &str) -> bool {
        let is_method = self
            .method
            .as_deref()
            .is_none_or(|expected| expected.eq_ignore_ascii_case(method));
        let is_path = match self.pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.pattern,
        };
        is_method && is_path
    }
}

/// Scope requirements: every scope of the first matching rule must have been granted;
/// requests no rule matches need the default scopes (none, unless set).
///
/// ```
/// use tollgate_verify::ScopeRules;
///
/// let rules = ScopeRules::new()
///     .require_for("GET", "/archive/*", ["archive:read"])
///     .require_for("POST", "/archive/*", ["archive:write"])
///     .require("/acme.v1.Archive/*", ["archive:read"]);
/// assert_eq!(rules.required("GET", "/archive/1"), ["archive:read"]);
/// assert_eq!(rules.required("POST", "/archive/1"), ["archive:write"]);
/// assert!(rules.required("GET", "/healthz").is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRules {
    default: Vec<String>,
    rules: Vec<Rule>,
}

impl ScopeRules {
    /// No requirements: any valid token will do.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every request needs all of `scopes` unless a rule says otherwise.
    #[must_use]
    pub fn require_by_default<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.default = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Requests to `pattern` (an exact path, or a prefix ending with `*`), whatever their
    /// method, need all of `scopes`.
    #[must_use]
    pub fn require<I, S>(mut self, pattern: impl Into<String>, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.push(Rule {
            method: None,
            pattern: pattern.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Requests with `method` to `pattern` need all of `scopes`.
    #[must_use]
    pub fn require_for<I, S>(
        mut self,
        method: impl Into<String>,
        pattern: impl Into<String>,
        scopes: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.push(Rule {
            method: Some(method.into().to_ascii_uppercase()),
            pattern: pattern.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// The scopes a request with `method` to `path` needs: the first matching rule's, in the
    /// order the rules were added, or the default.
    pub fn required(&self, method: &str, path: &str) -> &[String] {
        self.rules
            .iter()
            .find(|rule| rule.matches(method, path))
            .map_or(self.default.as_slice(), |rule| rule.scopes.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::ScopeRules;

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = ScopeRules::new()
            .require_by_default(["base"])
            .require_for("get", "/a/*", ["a:read"])
            .require("/a/*", ["a:write"])
            .require("/exact", ["e"])
            .require("/open", Vec::<String>::new());
        #[rustfmt::skip]
        let cases: [(&str, &str, &[&str]); 9] = [
            ("GET",    "/a/1",      &["a:read"]),
            ("get",    "/a/",       &["a:read"]),
            ("POST",   "/a/1",      &["a:write"]),
            ("DELETE", "/a/x/y",    &["a:write"]),
            ("GET",    "/exact",    &["e"]),
            ("GET",    "/exact/no", &["base"]),
            ("GET",    "/a",        &["base"]),
            ("GET",    "/open",     &[]),
            ("POST",   "/",         &["base"]),
        ];
        for (method, path, expected) in cases {
            assert_eq!(rules.required(method, path), expected, "{method} {path}");
        }
    }
}
