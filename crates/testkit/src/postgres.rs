//! A throwaway PostgreSQL cluster for one test: `initdb` into a temporary directory, the
//! server on a free loopback port, stopped and started again on demand, stopped on drop.
//!
//! The PostgreSQL named by `TOLLGATE_TEST_POSTGRES_URL` is shared by every test running at
//! the same time, so a test that stops its database needs a cluster of its own. PostgreSQL
//! refuses to run as root: as root, its programs run as the `postgres` system user
//! (`runuser -u postgres --`), and the cluster's directory belongs to that user.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::{TcpListener, TcpStream};

/// The directory holding PostgreSQL's programs, one per installed major version.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";
/// How long a start may take before the cluster counts as broken (`pg_ctl -t`).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many free ports are tried when another process takes the one picked.
const START_ATTEMPTS: usize = 5;
/// The system user PostgreSQL's programs run as when the test runs as root.
const SERVICE_USER: &str = "postgres";

/// How [`PostgresServer::stop`] stops the server (`pg_ctl stop -m …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Ends every session at once, then checkpoints and exits: an orderly outage.
    Fast,
    /// Kills every process without a checkpoint: a crash, recovered from the WAL on start.
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL cluster of its own on `127.0.0.1:<port>`, trusting local connections, with
/// its socket in its own directory. Dropping it stops the server (immediately).
pub struct PostgresServer {
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    as_service_user: bool,
    is_running: bool,
}

impl PostgresServer {
    /// The directory of the newest installed PostgreSQL's programs, if `initdb`, `pg_ctl`
    /// and `postgres` are all there.
    pub fn installed_bin() -> Option<PathBuf> {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(INSTALL_ROOT)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, bin)| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|program| bin.join(program).is_file())
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    }

    /// Creates a cluster in a fresh temporary directory and starts it on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        let bin = Self::installed_bin()
            .with_context(|| format!("no PostgreSQL programs under {INSTALL_ROOT}"))?;
        let as_service_user = is_root()?;
        let dir = tempfile::tempdir()?;
        if as_service_user {
            let (uid, gid) = service_user_ids()?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .context("cannot hand the cluster directory to the postgres user")?;
        }
        let mut server = Self {
            bin,
            port: 0,
            dir,
            as_service_user,
            is_running: false,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-sync".as_ref(),
            ],
        )?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            // Free now; another process may take it before PostgreSQL binds it, in which
            // case the start fails and the next port is tried.
            server.port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
            match server.start_again().await {
                Ok(()) => return Ok(server),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it accepts TCP connections now.
    pub async fn is_up(&self) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                TcpStream::connect(("127.0.0.1", self.port))
            )
            .await,
            Ok(Ok(_))
        )
    }

    /// Stops the server (`pg_ctl stop -m <mode>`, waiting until it has exited).
    pub fn stop(&mut self, mode: StopMode) -> anyhow::Result<()> {
        if !self.is_running {
            return Ok(());
        }
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                mode.as_arg().as_ref(),
                "-w".as_ref(),
            ],
        )?;
        self.is_running = false;
        Ok(())
    }

    /// Starts the stopped server again: same data, same port. Returns once it accepts
    /// connections.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.is_running {
            return Ok(());
        }
        let data = self.data_dir();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let timeout = START_TIMEOUT.as_secs().to_string();
        let started = Instant::now();
        let outcome = self.run(
            "pg_ctl",
            &[
                "start".as_ref(),
                "-D".as_ref(),
                data.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-o".as_ref(),
                options.as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                timeout.as_ref(),
            ],
        );
        if let Err(error) = outcome {
            bail!("{error:#}; server log: {}", self.log_tail());
        }
        self.is_running = true;
        // `pg_ctl -w` waits for the server to accept connections; make sure TCP is among them.
        while !self.is_up().await {
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "PostgreSQL on port {} does not accept TCP connections: {}",
                    self.port,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The end of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Runs one of PostgreSQL's programs to completion, as the service user when root.
    fn run(&self, program: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Output> {
        let path = self.bin.join(program);
        let mut command = if self.as_service_user {
            let mut command = Command::new("runuser");
            command.args(["-u", SERVICE_USER, "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        // A directory the service user may enter: it cannot read root's working directory.
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = command
            .output()
            .with_context(|| format!("cannot run {}", path.display()))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.stop(StopMode::Immediate);
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the effective user).
fn is_root() -> anyhow::Result<bool> {
    Ok(std::fs::metadata(Path::new("/proc/self"))?.uid() == 0)
}

/// The uid and gid of the service user.
fn service_user_ids() -> anyhow::Result<(u32, u32)> {
    let id = |flag: &str| -> anyhow::Result<u32> {
        let output = Command::new("id")
            .args([flag, SERVICE_USER])
            .stdin(Stdio::null())
            .output()
            .context("cannot run id")?;
        if !output.status.success() {
            bail!("no {SERVICE_USER} user to run PostgreSQL as");
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}
