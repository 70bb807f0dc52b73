//! The single translation between [`ErrorCode`] and gRPC [`tonic::Status`], and of a
//! service's error into a status ([`service_status`]). The OAuth-style reason travels in
//! `google.rpc.ErrorInfo.reason` (domain `tollgate`) so clients can tell `invalid_scope`
//! from `unauthorized_client` although both are PERMISSION_DENIED; a retry hint travels as
//! `google.rpc.RetryInfo`.

use std::collections::HashMap;

use tollgate_domain::{ErrorCode, InvalidValue, ServiceError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `google.rpc.ErrorInfo.domain` of Tollgate's errors.
pub const ERROR_DOMAIN: &str = "tollgate";

/// The gRPC code for each error code.
fn grpc_code(code: ErrorCode) -> Code {
    match code {
        ErrorCode::InvalidRequest | ErrorCode::UnsupportedGrantType | ErrorCode::InvalidTarget => {
            Code::InvalidArgument
        }
        ErrorCode::InvalidClient | ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::UnauthorizedClient | ErrorCode::InvalidScope | ErrorCode::PermissionDenied => {
            Code::PermissionDenied
        }
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::Internal => Code::Internal,
    }
}

/// Builds the status for `code`, with `message` and an `ErrorInfo` carrying the reason.
pub fn to_status(code: ErrorCode, message: impl Into<String>) -> Status {
    let details = ErrorDetails::with_error_info(code.reason(), ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(grpc_code(code), message, details)
}

/// Like [`to_status`], with a `google.rpc.RetryInfo` telling the client when to retry.
pub fn to_status_with_retry(
    code: ErrorCode,
    message: impl Into<String>,
    retry_after: std::time::Duration,
) -> Status {
    let mut details = ErrorDetails::with_error_info(code.reason(), ERROR_DOMAIN, HashMap::new());
    details.set_retry_info(Some(retry_after));
    Status::with_error_details(grpc_code(code), message, details)
}

/// The status of a service's error: its code, its message, and its retry hint
/// ([`ServiceError::retry_after`]: a rate limit's delay, or a second for an outage) as
/// `RetryInfo`. The error's `source`, its internal cause, is left out: the caller logs it.
pub fn service_status<E: ServiceError + ?Sized>(error: &E) -> Status {
    let code = error.code();
    match error.retry_after() {
        Some(retry_after) => to_status_with_retry(code, error.to_string(), retry_after),
        None => to_status(code, error.to_string()),
    }
}

/// A malformed request field: INVALID_ARGUMENT naming the field.
pub fn invalid_argument(error: InvalidValue) -> Status {
    to_status(ErrorCode::InvalidRequest, error.to_string())
}

/// Reads back the error code and message of a status received from a Tollgate server. A
/// status without Tollgate's `ErrorInfo` (e.g. a transport failure) is classified by its
/// gRPC code alone.
pub fn error_code(status: &Status) -> (ErrorCode, String) {
    let code = match status.get_details_error_info() {
        Some(info) if info.domain == ERROR_DOMAIN => ErrorCode::from_reason(&info.reason),
        _ => match status.code() {
            Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidRequest,
            Code::Unauthenticated => ErrorCode::Unauthenticated,
            Code::PermissionDenied => ErrorCode::PermissionDenied,
            Code::NotFound => ErrorCode::NotFound,
            Code::AlreadyExists => ErrorCode::AlreadyExists,
            Code::FailedPrecondition => ErrorCode::FailedPrecondition,
            Code::ResourceExhausted => ErrorCode::ResourceExhausted,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        },
    };
    (code, status.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_the_reason() {
        for (code, grpc) in [
            (ErrorCode::InvalidClient, Code::Unauthenticated),
            (ErrorCode::InvalidTarget, Code::InvalidArgument),
            (ErrorCode::UnauthorizedClient, Code::PermissionDenied),
            (ErrorCode::InvalidScope, Code::PermissionDenied),
            (ErrorCode::NotFound, Code::NotFound),
            (ErrorCode::Unavailable, Code::Unavailable),
        ] {
            let status = to_status(code, "some message");
            assert_eq!(status.code(), grpc);
            assert_eq!(error_code(&status), (code, "some message".to_owned()));
        }
    }

    #[test]
    fn retry_info_travels() {
        let status = to_status_with_retry(
            ErrorCode::ResourceExhausted,
            "slow down",
            std::time::Duration::from_secs(3),
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(
            status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay),
            Some(std::time::Duration::from_secs(3))
        );
        assert_eq!(error_code(&status).0, ErrorCode::ResourceExhausted);
    }

    #[derive(Debug)]
    struct TestError(ErrorCode, &'static str);

    impl std::fmt::Display for TestError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.1)
        }
    }

    impl std::error::Error for TestError {}

    impl ServiceError for TestError {
        fn code(&self) -> ErrorCode {
            self.0
        }
    }

    #[test]
    fn service_errors_keep_code_message_and_retry_hint() {
        let retry_delay = |status: &Status| {
            status
                .get_details_retry_info()
                .and_then(|info| info.retry_delay)
        };
        let outage = service_status(&TestError(ErrorCode::Unavailable, "database unavailable"));
        assert_eq!(outage.code(), Code::Unavailable);
        assert_eq!(outage.message(), "database unavailable");
        assert_eq!(
            retry_delay(&outage),
            Some(tollgate_domain::UNAVAILABLE_RETRY_AFTER)
        );
        let refused = service_status(&TestError(ErrorCode::InvalidScope, "scope x"));
        assert_eq!(
            error_code(&refused),
            (ErrorCode::InvalidScope, "scope x".to_owned())
        );
        assert_eq!(retry_delay(&refused), None);
    }

    #[test]
    fn foreign_status_is_classified_by_code() {
        let status = Status::unavailable("connection refused");
        assert_eq!(error_code(&status).0, ErrorCode::Unavailable);
    }
}
