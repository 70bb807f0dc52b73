//! The process's open-file limit (`RLIMIT_NOFILE`): raised from the soft to the hard limit
//! at start, since every connection costs a file descriptor and the listeners' default caps
//! are derived from the limit in force.

/// Raises the soft open-file limit to the hard limit, logs the outcome, and returns the
/// soft limit now in force (`None`: unlimited, or not a Unix system).
pub fn raise_open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

        let before = getrlimit(Resource::Nofile);
        if before.current != before.maximum {
            let raised = Rlimit {
                current: before.maximum,
                maximum: before.maximum,
            };
            if let Err(error) = setrlimit(Resource::Nofile, raised) {
                // Some systems refuse "unlimited" as a soft limit: the old one stays.
                tracing::warn!(
                    %error,
                    soft = ?before.current,
                    hard = ?before.maximum,
                    "cannot raise the open-file limit"
                );
            }
        }
        let now = getrlimit(Resource::Nofile);
        tracing::info!(
            soft = ?now.current,
            hard = ?now.maximum,
            previous_soft = ?before.current,
            "open-file limit"
        );
        now.current
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[cfg(unix)]
    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let soft = super::raise_open_file_limit();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(soft, limit.current);
        // Linux always allows raising the soft limit up to a finite hard limit.
        if limit.maximum.is_some() {
            assert_eq!(limit.current, limit.maximum);
        }
    }
}
