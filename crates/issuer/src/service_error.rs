//! [`IssueError`] as a [`ServiceError`]: its caller-visible code and retry hints, the only
//! things the transports read of it.

use tollgate_domain::{ErrorCode, RateLimitState, ServiceError};
use tollgate_state::RateDecision;

use crate::issue::IssueError;

impl ServiceError for IssueError {
    fn code(&self) -> ErrorCode {
        match self {
            IssueError::InvalidClient => ErrorCode::InvalidClient,
            IssueError::UnknownAudience(_) => ErrorCode::InvalidTarget,
            IssueError::NoGrant(_) => ErrorCode::UnauthorizedClient,
            IssueError::ScopeNotHeld(_) => ErrorCode::InvalidScope,
            IssueError::RateLimited(_) => ErrorCode::ResourceExhausted,
            IssueError::UnknownTenant(_) => ErrorCode::NotFound,
            IssueError::NoSigningKey(_)
            | IssueError::Catalog(_)
            | IssueError::Crypto(_)
            | IssueError::Revocation(_)
            | IssueError::Audit(_) => ErrorCode::Unavailable,
        }
    }

    fn rate_limit(&self) -> Option<RateLimitState> {
        match self {
            IssueError::RateLimited(limit) => Some(*limit),
            _ => None,
        }
    }
}

impl IssueError {
    /// The refusal of a rate limit that decided `decision`: what the caller is told of it.
    pub(crate) fn rate_limited(decision: &RateDecision) -> Self {
        IssueError::RateLimited(RateLimitState {
            limit: decision.limit,
            remaining: decision.remaining,
            retry_after: decision.retry_after,
            reset_after: decision.reset_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_rate_limit_refusal_carries_its_state_and_delay() {
        let decision = RateDecision {
            allowed: false,
            limit: 20,
            remaining: 0,
            retry_after: Duration::from_millis(250),
            reset_after: Duration::from_secs(2),
            degraded: false,
        };
        let error = IssueError::rate_limited(&decision);
        assert_eq!(error.code(), ErrorCode::ResourceExhausted);
        assert_eq!(error.retry_after(), Some(Duration::from_millis(250)));
        assert_eq!(
            error.rate_limit(),
            Some(RateLimitState {
                limit: 20,
                remaining: 0,
                retry_after: Duration::from_millis(250),
                reset_after: Duration::from_secs(2),
            })
        );
        assert_eq!(error.to_string(), "too many requests; retry in 1 s");
    }

    #[test]
    fn outages_are_unavailable_with_a_retry_hint() {
        let error = IssueError::NoSigningKey(tollgate_domain::Algorithm::Es256);
        assert_eq!(error.code(), ErrorCode::Unavailable);
        assert_eq!(
            error.retry_after(),
            Some(tollgate_domain::UNAVAILABLE_RETRY_AFTER)
        );
        assert_eq!(IssueError::InvalidClient.retry_after(), None);
    }
}
