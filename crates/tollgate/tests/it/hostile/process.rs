//! `tollgate serve` as a child process, for the attacks whose damage is counted in the
//! process's own resources: resident memory (`/proc/<pid>/status`), open files (started
//! under `ulimit -n`), and the size of its SQLite database on disk.
//!
//! The binary is the one Cargo built for these tests, or the one named by
//! `HOSTILE_TOLLGATE_BINARY`: a release build, to compare figures with a production build,
//! or an older version, to see the attacks succeed against it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Statement};
use tollgate_testkit::{AdminCredentials, TestServer};

/// How long a child server may take to start (a debug build on a busy machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running `tollgate serve` process on loopback with a fresh SQLite data dir. Dropping it
/// kills the process.
pub(crate) struct ServeProcess {
    /// Clients of the process, as for an in-process server.
    pub(crate) server: TestServer,
    /// The process id (the shell execs the server, so it is the server's).
    pub(crate) pid: u32,
    /// `host:port` of the HTTP gateway.
    pub(crate) http_addr: String,
    /// `host:port` of the gRPC API.
    pub(crate) grpc_addr: String,
    /// The data dir (SQLite database, master key, admin credentials).
    pub(crate) data_dir: PathBuf,
    /// Standard error of the server.
    pub(crate) log_path: PathBuf,
    child: tokio::process::Child,
    _temp: tempfile::TempDir,
}

impl ServeProcess {
    /// Starts `tollgate serve` with `settings` (`TOLLGATE_*` variables; none is inherited
    /// from the test's environment) on ports the kernel picks (`127.0.0.1:0`, read back from
    /// the server's "tollgate serving" log line), with at most `open_files` descriptors
    /// (`ulimit -n`, soft and hard, so the server cannot raise it) when given.
    pub(crate) async fn start(
        settings: &[(&str, String)],
        open_files: Option<u32>,
    ) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let data_dir = temp.path().join("data");
        let log_path = temp.path().join("serve.log");
        let log = std::fs::File::create(&log_path)?;
        let binary = std::env::var("HOSTILE_TOLLGATE_BINARY")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tollgate").to_owned());
        let mut command = match open_files {
            Some(limit) => {
                let mut command = tokio::process::Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" serve"))
                    .arg(&binary);
                command
            }
            None => {
                let mut command = tokio::process::Command::new(&binary);
                command.arg("serve");
                command
            }
        };
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TOLLGATE_") {
                command.env_remove(name);
            }
        }
        command
            .env("TOLLGATE_DATA_DIR", &data_dir)
            .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
            .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
            // Only what the harness reads (the serving line) and what goes wrong: a flood
            // of refusals must not be measured as the cost of logging it.
            .env("RUST_LOG", "warn,tollgate::server=info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        for (name, value) in settings {
            command.env(name, value);
        }
        let mut child = command.spawn().context("cannot start tollgate serve")?;
        let pid = child.id().context("tollgate serve has no pid")?;
        let (grpc_addr, http_addr) = match wait_for_addresses(&log_path, &mut child).await {
            Ok(addresses) => addresses,
            Err(error) => {
                let _ = child.kill().await;
                return Err(error);
            }
        };
        let admin = read_admin_credentials(&data_dir).await?;
        let server = TestServer::attach(&grpc_addr, &http_addr, admin, data_dir.clone())?;
        Ok(Self {
            server,
            pid,
            http_addr,
            grpc_addr,
            data_dir,
            log_path,
            child,
            _temp: temp,
        })
    }

    /// The server's memory as `/proc/<pid>/status` reports it now.
    pub(crate) fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .context("the server process is gone")?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|line| line.starts_with(name))
                .with_context(|| format!("no {name} in /proc/<pid>/status"))?;
            let kib = line
                .split_whitespace()
                .nth(1)
                .with_context(|| format!("no value in {line}"))?;
            Ok(kib.parse::<u64>()? * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }

    /// Resets the server's peak resident memory (`VmHWM`) to what is resident now, so that
    /// the next [`ServeProcess::memory`] reports the peak since this call. Returns whether
    /// the kernel allowed it (`/proc/<pid>/clear_refs`, Linux 4.0 and later).
    pub(crate) fn reset_peak_memory(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// How many descriptors the server has open now.
    pub(crate) fn open_files(&self) -> anyhow::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// The size of the SQLite database: `tollgate.db` and its WAL together, after a
    /// checkpoint that folds the WAL into the database and truncates it (so that the WAL's
    /// high-water mark does not count as growth), retried while the server's connections
    /// hold it up. Also returns the two files' sizes as found before the checkpoint.
    pub(crate) async fn database_size(&self) -> anyhow::Result<DatabaseSize> {
        let raw = files_size(&self.data_dir);
        let url = format!(
            "sqlite://{}?mode=rw",
            self.data_dir.join("tollgate.db").display()
        );
        let connection = sea_orm::Database::connect(url.as_str()).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut is_checkpointed = false;
        while Instant::now() < deadline {
            let row = connection
                .query_one(Statement::from_string(
                    connection.get_database_backend(),
                    "PRAGMA wal_checkpoint(TRUNCATE)",
                ))
                .await?;
            let busy: i64 = match &row {
                Some(row) => row.try_get_by_index(0)?,
                None => 1,
            };
            if busy == 0 {
                is_checkpointed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        connection.close().await?;
        Ok(DatabaseSize {
            bytes: files_size(&self.data_dir),
            raw,
            is_checkpointed,
        })
    }

    /// Number of audit records of refusals in the database (every tenant's chain).
    pub(crate) async fn denied_rows(&self) -> anyhow::Result<i64> {
        let url = format!(
            "sqlite://{}?mode=ro",
            self.data_dir.join("tollgate.db").display()
        );
        let connection = sea_orm::Database::connect(url.as_str()).await?;
        let row = connection
            .query_one(Statement::from_string(
                connection.get_database_backend(),
                "SELECT COUNT(*) FROM audit_events WHERE result = 'denied'",
            ))
            .await?
            .context("no count")?;
        let count: i64 = row.try_get_by_index(0)?;
        connection.close().await?;
        Ok(count)
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines of the server's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server with SIGTERM and waits (at most 30 s) for it to exit.
    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()?;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("tollgate serve ignored SIGTERM for 30 s")
            }
        }
    }
}

/// Resident memory of the server, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now.
    pub(crate) rss: u64,
    /// `VmHWM`: the most ever resident.
    pub(crate) peak: u64,
}

/// Sizes of the SQLite files, in bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatabaseSize {
    /// Database and WAL after the checkpoint.
    pub(crate) bytes: u64,
    /// Database and WAL as found, before the checkpoint.
    pub(crate) raw: u64,
    /// Whether the checkpoint completed (otherwise `bytes` includes the WAL as it was).
    pub(crate) is_checkpointed: bool,
}

/// `tollgate.db` plus `tollgate.db-wal`.
fn files_size(data_dir: &Path) -> u64 {
    ["tollgate.db", "tollgate.db-wal"]
        .iter()
        .filter_map(|name| std::fs::metadata(data_dir.join(name)).ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Mebibytes, for reports.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Kibibytes of a growth that may be negative, for reports.
pub(crate) fn kib_delta(before: u64, after: u64) -> f64 {
    (after as f64 - before as f64) / 1024.0
}

/// Waits for the "tollgate serving" line and returns its gRPC and HTTP addresses.
async fn wait_for_addresses(
    log_path: &Path,
    child: &mut tokio::process::Child,
) -> anyhow::Result<(String, String)> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(line) = text.lines().find(|line| line.contains("tollgate serving")) {
            let field = |name: &str| -> Option<String> {
                let start = line.find(&format!(" {name}="))? + name.len() + 2;
                Some(line[start..].split_whitespace().next()?.to_owned())
            };
            if let (Some(grpc), Some(http)) = (field("grpc"), field("http")) {
                return Ok((grpc, http));
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!("tollgate serve exited during start-up with {status}: {text}");
        }
        if Instant::now() > deadline {
            bail!("tollgate serve did not start within {START_TIMEOUT:?}: {text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads `admin-credentials.json`, written at the first start before the server serves.
async fn read_admin_credentials(data_dir: &Path) -> anyhow::Result<AdminCredentials> {
    let path = data_dir.join(tollgate::server::ADMIN_CREDENTIALS_FILE);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(admin) = serde_json::from_str::<AdminCredentials>(&text)
        {
            return Ok(admin);
        }
        if Instant::now() > deadline {
            bail!("no admin credentials in {}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
