//! Revocation: which outstanding tokens stop being valid before they expire.

use crate::{TenantId, UnixTime};

/// What a revocation covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RevocationTarget {
    /// One token, by `jti`.
    Token(String),
    /// Every token obtained with one client secret, by `sid`.
    Secret(String),
    /// Every token of one app (by client id) issued at or before the cut-off.
    App(String),
    /// Every token of the tenant issued at or before the cut-off.
    Tenant,
}

impl RevocationTarget {
    /// A stable name of the kind: `jti`, `sid`, `client` or `tenant`.
    pub fn kind(&self) -> &'static str {
        match self {
            RevocationTarget::Token(_) => "jti",
            RevocationTarget::Secret(_) => "sid",
            RevocationTarget::App(_) => "client",
            RevocationTarget::Tenant => "tenant",
        }
    }

    /// The revoked identifier (`jti`, `sid`, client id), empty for a tenant.
    pub fn subject(&self) -> &str {
        match self {
            RevocationTarget::Token(value)
            | RevocationTarget::Secret(value)
            | RevocationTarget::App(value) => value,
            RevocationTarget::Tenant => "",
        }
    }

    /// The inverse of [`kind`](Self::kind) and [`subject`](Self::subject).
    pub fn from_parts(kind: &str, subject: &str) -> Option<Self> {
        Some(match kind {
            "jti" => RevocationTarget::Token(subject.to_owned()),
            "sid" => RevocationTarget::Secret(subject.to_owned()),
            "client" => RevocationTarget::App(subject.to_owned()),
            "tenant" => RevocationTarget::Tenant,
            _ => return None,
        })
    }
}

/// One revocation of a tenant's tokens. The database is its source of truth; fast stores
/// (Redis, memory) hold copies that expire with `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The tenant's id (`cid`).
    pub tenant_id: TenantId,
    /// What is revoked.
    pub target: RevocationTarget,
    /// When it was revoked. For app and tenant revocations this is the cut-off: tokens with
    /// `iat` at or before it are revoked (so a token issued in the same second is too, for at
    /// most that second; `iat` has no finer resolution).
    pub revoked_at: UnixTime,
    /// When every token it can cover has expired; the entry may be forgotten after that.
    pub expires_at: UnixTime,
}

/// The facts of a token a revocation check needs.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// `cid`.
    pub tenant_id: &'a str,
    /// `jti`.
    pub jti: &'a str,
    /// `sid`.
    pub sid: &'a str,
    /// `client_id`.
    pub client_id: &'a str,
    /// `iat`.
    pub iat: UnixTime,
}

impl Revocation {
    /// Whether this revocation covers the token.
    pub fn covers(&self, token: &TokenFacts<'_>) -> bool {
        if self.tenant_id != token.tenant_id {
            return false;
        }
        match &self.target {
            RevocationTarget::Token(jti) => jti == token.jti,
            RevocationTarget::Secret(sid) => sid == token.sid,
            RevocationTarget::App(client_id) => {
                client_id == token.client_id && token.iat <= self.revoked_at
            }
            RevocationTarget::Tenant => token.iat <= self.revoked_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage() {
        let token = TokenFacts {
            tenant_id: "ten_a",
            jti: "j1",
            sid: "sec_1",
            client_id: "c1",
            iat: 100,
        };
        let revocation = |target, revoked_at| Revocation {
            tenant_id: "ten_a".into(),
            target,
            revoked_at,
            expires_at: 1000,
        };
        for (target, revoked_at, expected) in [
            (RevocationTarget::Token("j1".into()), 0, true),
            (RevocationTarget::Token("j2".into()), 0, false),
            (RevocationTarget::Secret("sec_1".into()), 0, true),
            (RevocationTarget::App("c1".into()), 100, true),
            (RevocationTarget::App("c1".into()), 99, false),
            (RevocationTarget::App("c2".into()), 200, false),
            (RevocationTarget::Tenant, 100, true),
            (RevocationTarget::Tenant, 99, false),
        ] {
            assert_eq!(
                revocation(target.clone(), revoked_at).covers(&token),
                expected,
                "{target:?}"
            );
        }
        let other_tenant = Revocation {
            tenant_id: "ten_b".into(),
            ..revocation(RevocationTarget::Tenant, 200)
        };
        assert!(!other_tenant.covers(&token));
        for target in [
            RevocationTarget::Token("x".into()),
            RevocationTarget::Secret("y".into()),
            RevocationTarget::App("z".into()),
            RevocationTarget::Tenant,
        ] {
            assert_eq!(
                RevocationTarget::from_parts(target.kind(), target.subject()),
                Some(target)
            );
        }
    }
}
