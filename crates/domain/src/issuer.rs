//! Issuer URLs: each tenant's `iss` comes from one template containing `{tenant}`.

use crate::{InvalidValue, TenantName};

/// Appended to a tenant's issuer URL to form its built-in Management API identifier.
pub const MANAGEMENT_API_SUFFIX: &str = "manage";

/// The issuer URL template, e.g. `https://{tenant}.hub.example.com/`. It must contain
/// `{tenant}` exactly once and end with `/`, so that `<issuer>manage` and
/// `<issuer>.well-known/…` are well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerTemplate {
    prefix: String,
    suffix: String,
}

impl IssuerTemplate {
    /// The development default: served by the gateway on localhost.
    pub const DEFAULT: &'static str = "http://{tenant}.hub.localhost:8080/";

    /// Checks the template.
    pub fn parse(template: &str) -> Result<Self, InvalidValue> {
        let field = "issuer_template";
        let Some((prefix, suffix)) = template.split_once("{tenant}") else {
            return Err(InvalidValue::new(field, "must contain {tenant}"));
        };
        if suffix.contains("{tenant}") {
            return Err(InvalidValue::new(field, "must contain {tenant} only once"));
        }
        if !(prefix.starts_with("https://") || prefix.starts_with("http://")) {
            return Err(InvalidValue::new(
                field,
                "must start with https:// or http://",
            ));
        }
        if !template.ends_with('/') {
            return Err(InvalidValue::new(field, "must end with '/'"));
        }
        if template.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(InvalidValue::new(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
        })
    }

    /// The issuer URL of `tenant`.
    pub fn issuer(&self, tenant: &TenantName) -> String {
        format!("{}{}{}", self.prefix, tenant, self.suffix)
    }

    /// The identifier of `tenant`'s built-in Management API: `<issuer>manage`.
    pub fn management_audience(&self, tenant: &TenantName) -> String {
        format!("{}{}", self.issuer(tenant), MANAGEMENT_API_SUFFIX)
    }

    /// The tenant whose issuer URL is exactly `issuer`, if any.
    pub fn tenant_of_issuer(&self, issuer: &str) -> Option<TenantName> {
        let name = issuer
            .strip_prefix(&self.prefix)?
            .strip_suffix(&self.suffix)?;
        TenantName::parse(name).ok()
    }

    /// The host suffix that follows the tenant in the issuer's host, e.g. `.hub.localhost`
    /// for `http://{tenant}.hub.localhost:8080/`, when the tenant is the first host label.
    /// The gateway uses it to find the tenant from a `Host` header.
    pub fn host_suffix(&self) -> Option<String> {
        let scheme_end = self.prefix.find("://")? + 3;
        if scheme_end != self.prefix.len() {
            return None; // the tenant is not the first host label
        }
        let host_end = self.suffix.find([':', '/']).unwrap_or(self.suffix.len());
        let suffix = &self.suffix[..host_end];
        suffix.starts_with('.').then(|| suffix.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_round_trip() -> Result<(), InvalidValue> {
        let template = IssuerTemplate::parse(IssuerTemplate::DEFAULT)?;
        let acme = TenantName::parse("acme")?;
        assert_eq!(template.issuer(&acme), "http://acme.hub.localhost:8080/");
        assert_eq!(
            template.management_audience(&acme),
            "http://acme.hub.localhost:8080/manage"
        );
        assert_eq!(
            template.tenant_of_issuer("http://acme.hub.localhost:8080/"),
            Some(acme)
        );
        assert_eq!(
            template.tenant_of_issuer("http://acme.hub.localhost:8080/x"),
            None
        );
        assert_eq!(template.host_suffix().as_deref(), Some(".hub.localhost"));
        Ok(())
    }

    #[test]
    fn bad_templates() {
        for (template, reason) in [
            (
                "http://hub.localhost/",
                "issuer_template: must contain {tenant}",
            ),
            (
                "http://{tenant}.x/{tenant}/",
                "issuer_template: must contain {tenant} only once",
            ),
            (
                "ftp://{tenant}.x/",
                "issuer_template: must start with https:// or http://",
            ),
            ("http://{tenant}.x", "issuer_template: must end with '/'"),
        ] {
            assert_eq!(
                IssuerTemplate::parse(template)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(reason.to_owned())
            );
        }
        let path_style = IssuerTemplate::parse("https://auth.example.com/{tenant}/");
        assert_eq!(path_style.ok().and_then(|t| t.host_suffix()), None);
    }
}
