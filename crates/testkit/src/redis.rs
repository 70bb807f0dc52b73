//! A throwaway `redis-server` for one test: its own port, nothing on disk, killed on drop.
//!
//! Tollgate's shared state names every Redis key and channel `tollgate:…`, and `serve` has no
//! setting for another prefix; tests that run Tollgate on Redis in parallel therefore each
//! get their own server. It also lets a test kill Redis (SIGKILL) and start an empty one on
//! the same port, as a restarted Redis without persistence would come back.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a fresh `redis-server` may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many free ports are tried when another process takes the one picked.
const START_ATTEMPTS: usize = 5;

/// A `redis-server` child process on `127.0.0.1:<port>`, without persistence
/// (`--save '' --appendonly no`). Dropping it kills the process.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Whether `redis-server` can be run (it is on `PATH`).
    pub fn is_installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts a server on a free loopback port and waits until it answers `PING`.
    pub async fn start() -> anyhow::Result<Self> {
        let mut dir = tempfile::tempdir()?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            // The port is free now; another process may take it before redis-server binds
            // it, in which case redis-server exits and the next port is tried.
            let port = TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
            let mut server = Self {
                port,
                dir,
                child: None,
            };
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(error) => {
                    last_error = Some(error);
                    dir = server.take_dir()?;
                }
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on (kept across [`restart_empty`](Self::restart_empty)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether it answers `PING` now.
    pub async fn is_up(&self) -> bool {
        ping(self.port).await
    }

    /// How many connections are subscribed to `channel` now (`PUBSUB NUMSUB`).
    pub async fn subscribers(&self, channel: &str) -> anyhow::Result<i64> {
        let query = async {
            let client = redis::Client::open(self.url())?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            let (_, count): (String, i64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(count)
        };
        Ok(tokio::time::timeout(Duration::from_secs(2), query)
            .await
            .context("redis-server did not answer PUBSUB NUMSUB within 2 s")??)
    }

    /// Kills the server with SIGKILL (no shutdown, no save) and reaps it.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill redis-server")?;
            child.wait().context("cannot reap redis-server")?;
        }
        Ok(())
    }

    /// Kills the server if it runs, then starts an empty one on the same port and waits until
    /// it answers `PING`.
    pub async fn restart_empty(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        self.spawn().await
    }

    /// Starts `redis-server` on `self.port` and waits until it answers.
    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = self.log_path();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run redis-server (is it on PATH?)")?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if ping(self.port).await {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.child = None;
                bail!(
                    "redis-server on port {} exited at start: {}",
                    self.port,
                    self.log_tail()
                );
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill()?;
                bail!(
                    "redis-server on port {} did not answer PING within {START_TIMEOUT:?}: {}",
                    self.port,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The end of the server's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// Takes the data dir back from a server that failed to start.
    fn take_dir(mut self) -> anyhow::Result<tempfile::TempDir> {
        self.kill()?;
        let placeholder = tempfile::tempdir()?;
        Ok(std::mem::replace(&mut self.dir, placeholder))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `PING` over a fresh connection, within 500 ms.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Ok(true))
    )
}
