//! End-to-end tests: the real server on ephemeral ports, driven over gRPC, HTTP and the CLI
//! as clients drive it. Each scenario runs on SQLite and on PostgreSQL.

// Tests bound their waits for real I/O and report latencies in real time; what they test of time runs on injected clocks.
#![allow(clippy::disallowed_methods)]

mod audit;
mod bounds;
mod cli;
mod delegation;
mod demo;
mod fixtures;
mod forwarding;
mod health;
mod hostile;
mod http_errors;
mod infra;
mod interop;
mod lifecycle;
mod limits;
mod logs;
mod management;
mod multi;
mod outage;
mod sdk;
mod tokens;
mod trail;
mod watch;

/// Declares each listed scenario `async fn name(server: TestServer) -> anyhow::Result<()>`
/// of the calling module as two tests: `sqlite::name` and `postgres::name`. With
/// `options = f;` first, where `fn f() -> TestOptions` is in the calling module, the servers
/// start with those options (the backend aside).
#[macro_export]
macro_rules! backend_tests {
    (options = $options:ident; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let server = tollgate_testkit::TestServer::start_with(tollgate_testkit::TestOptions {
                        backend: tollgate_testkit::Backend::Sqlite,
                        ..super::$options()
                    })
                    .await?;
                    super::$name(server).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    if tollgate_testkit::postgres_url_or_skip(concat!(module_path!(), "::", stringify!($name))).is_none() {
                        return Ok(());
                    }
                    let server = tollgate_testkit::TestServer::start_with(tollgate_testkit::TestOptions {
                        backend: tollgate_testkit::Backend::Postgres,
                        ..super::$options()
                    })
                    .await?;
                    super::$name(server).await
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    let server = tollgate_testkit::TestServer::start().await?;
                    super::$name(server).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    if tollgate_testkit::postgres_url_or_skip(concat!(module_path!(), "::", stringify!($name))).is_none() {
                        return Ok(());
                    }
                    let server = tollgate_testkit::TestServer::start_with(tollgate_testkit::TestOptions {
                        backend: tollgate_testkit::Backend::Postgres,
                        ..Default::default()
                    })
                    .await?;
                    super::$name(server).await
                }
            )*
        }
    };
}
