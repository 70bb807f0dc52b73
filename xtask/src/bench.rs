//! `cargo xtask bench tokens`: the measurement behind Tollgate's performance targets
//! (≥ 30,000 ES256 tokens/s over gRPC and over HTTP, p99 ≤ 2 ms at half that load, cost flat
//! from 1 to 10,000 tenants).
//!
//! Builds `tollgate` and `tollgate-bench` in release, starts `tollgate serve` on SQLite in a
//! temporary data dir on free loopback ports, creates the tenants (`tollgate-bench setup`),
//! then runs each scenario as a `tollgate-bench run` process and prints one report:
//!
//! - closed loop (maximum throughput), one tenant, per protocol;
//! - open loop at half the measured maximum and at 15,000/s (half the target), per protocol;
//! - closed loop round robin over 100, 1,000 and 10,000 tenants, per protocol.
//!
//! The load generator runs on the same machine as the server. Every scenario therefore
//! reports the server's own CPU time (from `/proc/<pid>/stat`) and the tokens per server
//! CPU second, and, when `taskset` exists and there are two CPUs or more, the whole set runs
//! twice: `shared` (both processes on all CPUs) and `pinned` (server on one CPU, load
//! generator on another). The server is stopped with SIGTERM (SIGKILL if it lingers) and the
//! temporary directory removed on every exit path but a kill of xtask itself.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const USAGE: &str = "usage: cargo xtask bench tokens [options]

  --duration SECS          measurement per scenario (default 10)
  --warmup SECS            uncounted warm-up per scenario (default 3)
  --concurrency N          requests in flight, closed loop (default 256: every token
                           waits for its audit record's commit, so by Little's law the
                           closed loop needs about rate x commit latency in flight)
  --open-concurrency N     clients available to the open loop (default 256)
  --grpc-connections N     HTTP/2 connections of the gRPC load (default 4)
  --tenants K[,K…]         largest tenant count (sweep 1, 100, 1000, 10000 up to K), or an
                           explicit list (default 10000; creating them takes minutes, so
                           use e.g. --tenants 100 for a quick run)
  --setup-concurrency N    tenants created at once (default 8)
  --rates R[,R…]           open-loop rates in tokens/s (default: half the measured maximum,
                           and 15000 = half the 30,000 target)
  --modes grpc,http        protocols to load (default both)
  --pin auto|off|only      auto: shared and pinned runs when taskset and 2+ CPUs exist;
                           off: shared only; only: pinned only (default auto)
  --no-build               use the release binaries already built
  --quiet-wait SECS        before each scenario, wait up to this long for other processes
                           to leave the CPUs idle (default 120; 0 = do not wait)
  --tollgate PATH          benchmark this server binary instead of the workspace's (A/B
                           comparisons); tollgate-bench is still built
  --database-url URL       the server's TOLLGATE_DATABASE_URL (default: SQLite in the
                           temporary data dir); give an empty PostgreSQL database

Every token is recorded in the durable audit trail before it is returned, as in
production; the report ends with what the audit writer did (events, transactions, mean
batch and commit time), read from the server's shutdown log.";

/// The throughput target, tokens per second.
const TARGET_TOKENS_PER_SECOND: f64 = 30_000.0;
/// The latency target at half the throughput target, microseconds.
const TARGET_P99_MICROS: f64 = 2_000.0;

#[derive(Debug, Clone)]
struct Options {
    duration: u64,
    warmup: u64,
    concurrency: u32,
    open_concurrency: u32,
    grpc_connections: u32,
    tenants: Vec<u32>,
    setup_concurrency: u32,
    rates: Option<Vec<u32>>,
    modes: Vec<String>,
    pin: Pin,
    build: bool,
    tollgate: Option<PathBuf>,
    quiet_wait: u64,
    database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pin {
    Auto,
    Off,
    Only,
}

/// `cargo xtask bench <what> …`.
pub fn bench(args: &[String]) -> anyhow::Result<()> {
    match args.first().map(String::as_str) {
        Some("tokens") => tokens(&args[1..]),
        Some("-h" | "--help") | None => {
            eprintln!("{USAGE}");
            Ok(())
        }
        Some(other) => {
            eprintln!("{USAGE}");
            bail!("unknown benchmark {other:?}")
        }
    }
}

fn parse_number<T>(flag: &str, value: &str, range: (T, T)) -> anyhow::Result<T>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let number: T = value
        .trim()
        .parse()
        .ok()
        .with_context(|| format!("{flag}: {value:?} is not a number"))?;
    if number < range.0 || number > range.1 {
        bail!("{flag} must be between {} and {}", range.0, range.1);
    }
    Ok(number)
}

fn parse_list(flag: &str, value: &str, range: (u32, u32)) -> anyhow::Result<Vec<u32>> {
    let mut list = value
        .split(',')
        .map(|item| parse_number(flag, item, range))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    list.sort_unstable();
    list.dedup();
    Ok(list)
}

fn parse_options(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        duration: 10,
        warmup: 3,
        concurrency: 256,
        open_concurrency: 256,
        grpc_connections: 4,
        tenants: vec![1, 100, 1000, 10_000],
        setup_concurrency: 8,
        rates: None,
        modes: vec!["grpc".to_owned(), "http".to_owned()],
        pin: Pin::Auto,
        build: true,
        tollgate: None,
        quiet_wait: 120,
        database_url: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--no-build" {
            options.build = false;
            continue;
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--duration" => options.duration = parse_number(flag, value, (1, 3600))?,
            "--warmup" => options.warmup = parse_number(flag, value, (0, 600))?,
            "--concurrency" => options.concurrency = parse_number(flag, value, (1, 4096))?,
            "--open-concurrency" => {
                options.open_concurrency = parse_number(flag, value, (1, 4096))?;
            }
            "--grpc-connections" => {
                options.grpc_connections = parse_number(flag, value, (1, 256))?;
            }
            "--tenants" => {
                let list = parse_list(flag, value, (1, 100_000))?;
                options.tenants = match list.as_slice() {
                    // One number: the largest count; sweep the powers of ten below it.
                    [largest] => [1, 100, 1000, 10_000]
                        .into_iter()
                        .filter(|count| count < largest)
                        .chain([*largest])
                        .collect(),
                    _ => list,
                };
            }
            "--setup-concurrency" => {
                options.setup_concurrency = parse_number(flag, value, (1, 256))?;
            }
            "--rates" => options.rates = Some(parse_list(flag, value, (1, 1_000_000))?),
            "--modes" => {
                let modes: Vec<String> = value.split(',').map(str::to_owned).collect();
                if modes.is_empty() || modes.iter().any(|mode| mode != "grpc" && mode != "http") {
                    bail!("--modes takes grpc, http or grpc,http");
                }
                options.modes = modes;
            }
            "--tollgate" => options.tollgate = Some(PathBuf::from(value)),
            "--database-url" => options.database_url = Some(value.clone()),
            "--quiet-wait" => options.quiet_wait = parse_number(flag, value, (0, 3600))?,
            "--pin" => {
                options.pin = match value.as_str() {
                    "auto" => Pin::Auto,
                    "off" => Pin::Off,
                    "only" => Pin::Only,
                    _ => bail!("--pin takes auto, off or only"),
                };
            }
            _ => bail!("unknown option {flag}\n{USAGE}"),
        }
    }
    Ok(options)
}

/// Where the server and the load generator may run.
#[derive(Debug, Clone)]
struct Placement {
    name: &'static str,
    /// CPU of the server and of the load generator, or none for "anywhere".
    cpus: Option<(u32, u32)>,
}

fn tokens(args: &[String]) -> anyhow::Result<()> {
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return Ok(());
    }
    let options = parse_options(args)?;
    let facts = MachineFacts::read();
    println!("{}", facts.describe());

    if options.build {
        // Separately, so the server is exactly what `cargo build --release -p tollgate`
        // makes, whatever features the load generator's dependencies would add.
        if options.tollgate.is_none() {
            super::cargo(&["build", "--release", "--package", "tollgate"])?;
        }
        super::cargo(&["build", "--release", "--package", "tollgate-bench"])?;
    }
    let release = target_dir()?.join("release");
    let binaries = Binaries {
        tollgate: options
            .tollgate
            .clone()
            .unwrap_or_else(|| release.join("tollgate")),
        bench: release.join("tollgate-bench"),
    };
    println!("server binary: {}", binaries.tollgate.display());
    for binary in [&binaries.tollgate, &binaries.bench] {
        if !binary.is_file() {
            bail!("{} is missing; run without --no-build", binary.display());
        }
    }

    let placements = placements(&options, &facts)?;
    let work = TempDir::create()?;
    let mut report = Report::default();
    let outcome = run_all(&options, &binaries, &work, &placements, &mut report);
    println!();
    println!("{}", facts.describe());
    report.print(&options, &placements);
    if outcome.is_err() {
        let log = work.path.join("server.log");
        eprintln!("--- last lines of the server log ---\n{}", tail(&log, 30));
    }
    outcome?;
    let failed = report
        .rows
        .iter()
        .filter(|row| row.number("errors") > 0.0)
        .count();
    if failed > 0 {
        bail!("{failed} scenario(s) had failed requests; their figures are not valid");
    }
    Ok(())
}

fn placements(options: &Options, facts: &MachineFacts) -> anyhow::Result<Vec<Placement>> {
    let shared = Placement {
        name: "shared",
        cpus: None,
    };
    let pinned = match (facts.allowed_cpus.as_slice(), facts.has_taskset) {
        ([server, generator, ..], true) => Some(Placement {
            name: "pinned",
            cpus: Some((*server, *generator)),
        }),
        _ => None,
    };
    Ok(match (options.pin, pinned) {
        (Pin::Off, _) | (Pin::Auto, None) => vec![shared],
        (Pin::Auto, Some(pinned)) => vec![shared, pinned],
        (Pin::Only, Some(pinned)) => vec![pinned],
        (Pin::Only, None) => bail!("--pin only needs taskset and at least two CPUs"),
    })
}

struct Binaries {
    tollgate: PathBuf,
    bench: PathBuf,
}

fn run_all(
    options: &Options,
    binaries: &Binaries,
    work: &TempDir,
    placements: &[Placement],
    report: &mut Report,
) -> anyhow::Result<()> {
    let data_dir = work.path.join("data");
    let fixture = work.path.join("tenants.jsonl");
    let largest = options.tenants.iter().copied().max().unwrap_or(1);
    for placement in placements {
        let server_cpu = placement.cpus.map(|(server, _)| server);
        let mut server = Server::start(
            &binaries.tollgate,
            &data_dir,
            &work.path,
            server_cpu,
            options.database_url.as_deref(),
            None,
        )?;
        eprintln!(
            "\n== {}: tollgate serve (pid {}) on gRPC {} and HTTP {} ==",
            placement.name, server.pid, server.grpc_url, server.http_url
        );
        server.wait_ready(&data_dir)?;
        if !fixture.exists() {
            let started = Instant::now();
            let output = run_bench(
                binaries,
                work,
                None,
                &[
                    "setup".to_owned(),
                    "--grpc-url".to_owned(),
                    server.grpc_url.clone(),
                    "--admin-credentials".to_owned(),
                    data_dir
                        .join("admin-credentials.json")
                        .display()
                        .to_string(),
                    "--tenants".to_owned(),
                    largest.to_string(),
                    "--concurrency".to_owned(),
                    options.setup_concurrency.to_string(),
                    "--out".to_owned(),
                    fixture.display().to_string(),
                ],
                Duration::from_secs(3600),
                "SETUP",
            )?;
            report.setup = Some((largest, started.elapsed(), output));
        }
        let generator_cpu = placement.cpus.map(|(_, generator)| generator);
        let context = ScenarioContext {
            options,
            binaries,
            work,
            fixture: &fixture,
            server: &server,
            placement,
            generator_cpu,
        };
        for mode in &options.modes {
            let max = context.run(report, mode, None, 1)?;
            let rates = match &options.rates {
                Some(rates) => rates.clone(),
                None => default_rates(max),
            };
            for rate in rates {
                context.run(report, mode, Some(rate), 1)?;
            }
            for &tenants in options.tenants.iter().filter(|count| **count > 1) {
                context.run(report, mode, None, tenants)?;
            }
        }
        server.stop()?;
        let log = std::fs::read_to_string(work.path.join("server.log")).unwrap_or_default();
        if let Some(line) = log
            .lines()
            .rev()
            .find(|line| line.contains("audit trail flushed"))
        {
            report.audit.push((placement.name, audit_summary(line)));
        }
    }
    Ok(())
}

/// "N events in M transactions (mean batch B, mean commit C µs)" from the server's
/// `audit trail flushed` log line.
fn audit_summary(line: &str) -> String {
    let field = |name: &str| -> String {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{} events durably recorded in {} transactions (mean batch {}, mean commit {} µs), {} refused",
        field("events"),
        field("transactions"),
        field("mean_batch"),
        field("mean_commit_micros"),
        field("failed_events"),
    )
}

/// Half the measured maximum, and half the target, unless the two are within 10 %.
fn default_rates(max_tokens_per_second: f64) -> Vec<u32> {
    let half_target = (TARGET_TOKENS_PER_SECOND / 2.0) as u32;
    let half_max = ((max_tokens_per_second / 2.0 / 100.0).round() * 100.0).max(100.0) as u32;
    let close = (f64::from(half_max) - f64::from(half_target)).abs() < 0.1 * f64::from(half_target);
    if close {
        vec![half_target]
    } else {
        let mut rates = vec![half_max, half_target];
        rates.sort_unstable();
        rates
    }
}

struct ScenarioContext<'a> {
    options: &'a Options,
    binaries: &'a Binaries,
    work: &'a TempDir,
    fixture: &'a Path,
    server: &'a Server,
    placement: &'a Placement,
    generator_cpu: Option<u32>,
}

impl ScenarioContext<'_> {
    /// Runs one scenario, adds its row to `report`, and returns its tokens/s.
    fn run(
        &self,
        report: &mut Report,
        mode: &str,
        rate: Option<u32>,
        tenants: u32,
    ) -> anyhow::Result<f64> {
        let options = self.options;
        let concurrency = match rate {
            Some(_) => options.open_concurrency,
            None => options.concurrency,
        };
        let load = match rate {
            Some(rate) => format!("open-{rate}"),
            None => "closed".to_owned(),
        };
        let label = format!("{}/{mode}/{load}/{tenants}-tenants", self.placement.name);
        let mut args = vec![
            "run".to_owned(),
            "--mode".to_owned(),
            mode.to_owned(),
            "--grpc-url".to_owned(),
            self.server.grpc_url.clone(),
            "--http-url".to_owned(),
            self.server.http_url.clone(),
            "--fixture".to_owned(),
            self.fixture.display().to_string(),
            "--tenants".to_owned(),
            tenants.to_string(),
            "--concurrency".to_owned(),
            concurrency.to_string(),
            "--connections".to_owned(),
            options.grpc_connections.to_string(),
            "--warmup".to_owned(),
            options.warmup.to_string(),
            "--duration".to_owned(),
            options.duration.to_string(),
            "--server-pid".to_owned(),
            self.server.pid.to_string(),
            "--label".to_owned(),
            label,
        ];
        if let Some(rate) = rate {
            args.extend(["--rate".to_owned(), rate.to_string()]);
        }
        wait_for_quiet(Duration::from_secs(options.quiet_wait));
        // Warm-up, measurement, priming every tenant, connecting: generous but finite.
        let limit = Duration::from_secs(options.warmup + options.duration + 120)
            + Duration::from_millis(20 * u64::from(tenants));
        let line = run_bench(
            self.binaries,
            self.work,
            self.generator_cpu,
            &args,
            limit,
            "RESULT",
        )?;
        let row = Row::parse(self.placement.name, &line);
        let tokens_per_second = row.number("tokens_per_s");
        report.rows.push(row);
        Ok(tokens_per_second)
    }
}

/// Other processes may use this many CPUs (cores) before a scenario waits for them.
const QUIET_CORES: f64 = 0.15;

/// Busy and total CPU time of the machine so far, in clock ticks (first line of
/// `/proc/stat`: user nice system idle iowait irq softirq steal).
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let values: Vec<u64> = text
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .take(8)
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = values.iter().sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// CPUs in use by anything over the next second (the server idles between scenarios).
fn busy_cores(cpus: usize) -> Option<f64> {
    let (busy_before, total_before) = machine_ticks()?;
    sleep(Duration::from_secs(1));
    let (busy_after, total_after) = machine_ticks()?;
    let total = total_after.saturating_sub(total_before).max(1) as f64;
    Some(busy_after.saturating_sub(busy_before) as f64 / total * cpus as f64)
}

/// Waits, up to `limit`, until other processes leave the CPUs (nearly) idle, so that a
/// scenario does not share them with a build. Goes ahead regardless after `limit`: the
/// report's "other" column shows what contention there was.
fn wait_for_quiet(limit: Duration) {
    if limit.is_zero() {
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let deadline = Instant::now() + limit;
    let mut said = false;
    while let Some(busy) = busy_cores(cpus) {
        if busy <= QUIET_CORES {
            return;
        }
        if Instant::now() >= deadline {
            eprintln!("  still {busy:.2} CPUs busy; going ahead (see the 'other' column)");
            return;
        }
        if !said {
            eprintln!(
                "  waiting up to {} s for other processes to leave the CPUs ({busy:.2} busy)…",
                limit.as_secs()
            );
            said = true;
        }
        sleep(Duration::from_secs(2));
    }
}

/// Runs `tollgate-bench` (pinned to `cpu` if given), killing it if it outlives `limit`,
/// and returns the last line of its standard output that starts with `marker`.
fn run_bench(
    binaries: &Binaries,
    work: &TempDir,
    cpu: Option<u32>,
    args: &[String],
    limit: Duration,
    marker: &str,
) -> anyhow::Result<String> {
    let output_path = work.path.join("bench.out");
    let output = File::create(&output_path)
        .with_context(|| format!("cannot create {}", output_path.display()))?;
    let mut command = pinned_command(&binaries.bench, cpu);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(Stdio::inherit());
    let mut child = KillOnDrop(
        command
            .spawn()
            .with_context(|| format!("cannot start {}", binaries.bench.display()))?,
    );
    let status = child.wait_until(Instant::now() + limit)?;
    let text = std::fs::read_to_string(&output_path).unwrap_or_default();
    if !status.success() {
        bail!("tollgate-bench {} failed with {status}", args.join(" "));
    }
    text.lines()
        .rev()
        .find(|line| line.starts_with(marker))
        .map(str::to_owned)
        .with_context(|| format!("tollgate-bench printed no {marker} line"))
}

fn pinned_command(program: &Path, cpu: Option<u32>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("--cpu-list").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A child process that is killed (SIGKILL) if it is still running when dropped.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl KillOnDrop {
    /// Waits for the process to exit, killing it at `deadline`.
    pub(crate) fn wait_until(
        &mut self,
        deadline: Instant,
    ) -> anyhow::Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                bail!(
                    "process {} did not finish in time and was killed",
                    self.0.id()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A running `tollgate serve`. Dropping it stops the server.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) pid: u32,
    pub(crate) grpc_url: String,
    pub(crate) http_url: String,
    http_addr: SocketAddr,
}

impl Server {
    /// Starts `tollgate serve` on free loopback ports, logging to `<work>/server.log`.
    /// `{http_addr}` in `issuer_template` becomes the HTTP address.
    pub(crate) fn start(
        tollgate: &Path,
        data_dir: &Path,
        work: &Path,
        cpu: Option<u32>,
        database_url: Option<&str>,
        issuer_template: Option<&str>,
    ) -> anyhow::Result<Self> {
        let [grpc_addr, http_addr] = free_loopback_addresses()?;
        let log_path = work.join("server.log");
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut command = pinned_command(tollgate, cpu);
        // Only this run's settings: no TOLLGATE_* from the caller's environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TOLLGATE_") {
                command.env_remove(name);
            }
        }
        command
            .arg("serve")
            .env("TOLLGATE_DATA_DIR", data_dir)
            .env("TOLLGATE_GRPC_ADDR", grpc_addr.to_string())
            .env("TOLLGATE_HTTP_ADDR", http_addr.to_string())
            // Rate limits are still checked on every request (their cost is measured) but set
            // above any load this machine can generate.
            .env("TOLLGATE_APP_RATE_LIMIT", "1000000")
            .env("TOLLGATE_TENANT_RATE_LIMIT", "1000000")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(url) = database_url {
            command.env("TOLLGATE_DATABASE_URL", url);
        }
        if let Some(template) = issuer_template {
            command.env(
                "TOLLGATE_ISSUER_TEMPLATE",
                template.replace("{http_addr}", &http_addr.to_string()),
            );
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", tollgate.display()))?;
        Ok(Self {
            pid: child.id(),
            child: Some(child),
            grpc_url: format!("http://{grpc_addr}"),
            http_url: format!("http://{http_addr}"),
            http_addr,
        })
    }

    /// Waits until the admin credentials exist and `GET /healthz` answers 200.
    pub(crate) fn wait_ready(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let credentials = data_dir.join("admin-credentials.json");
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("tollgate serve exited during start-up with {status}");
            }
            let written = std::fs::read_to_string(&credentials).is_ok_and(|text| {
                text.contains("\"client_secret\"") && text.trim_end().ends_with('}')
            });
            if written && healthz(self.http_addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("tollgate serve was not ready within 60 s");
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL if the server has not exited within 15 s.
    pub(crate) fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            bail!("tollgate serve had already exited");
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    eprintln!("note: tollgate serve exited with {status}");
                }
                return Ok(());
            }
            sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("tollgate serve ignored SIGTERM for 15 s and was killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("note: {error:#}");
        }
    }
}

/// Two distinct free loopback ports: bound together, then released for the server.
fn free_loopback_addresses() -> anyhow::Result<[SocketAddr; 2]> {
    let first = TcpListener::bind("127.0.0.1:0")?;
    let second = TcpListener::bind("127.0.0.1:0")?;
    Ok([first.local_addr()?, second.local_addr()?])
}

/// Whether `GET /healthz` answers 200.
fn healthz(address: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )?;
        let mut answer = Vec::new();
        stream.take(4096).read_to_end(&mut answer)?;
        Ok(answer.starts_with(b"HTTP/1.1 200"))
    };
    attempt().unwrap_or(false)
}

/// A directory under the system's temporary directory, removed when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl TempDir {
    fn create() -> anyhow::Result<Self> {
        Self::create_named("tollgate-bench")
    }

    /// `<tmp>/<prefix>-<pid>-<nanos>`.
    pub(crate) fn create_named(prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The target directory (`cargo metadata`, so `CARGO_TARGET_DIR` and config are honoured).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata failed with {}", output.status);
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the report says about the machine.
struct MachineFacts {
    cpus: usize,
    allowed_cpus: Vec<u32>,
    cpu_model: String,
    memory: String,
    kernel: String,
    load_average: String,
    has_taskset: bool,
    commit: String,
}

impl MachineFacts {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or("unknown", |(_, model)| model.trim())
            .to_owned();
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|kib| kib.parse::<f64>().ok())
            })
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0),
            );
        let allowed_cpus = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                    .map(|list| parse_cpu_list(list.trim()))
            })
            .unwrap_or_default();
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned())
        };
        let has_taskset = Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .stderr(Stdio::null())
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let commit = match git(&["rev-parse", "--short", "HEAD"]) {
            Some(commit) => {
                let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|status| !status.is_empty());
                if dirty {
                    format!("{commit} + uncommitted changes")
                } else {
                    commit
                }
            }
            None => "unknown".to_owned(),
        };
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            allowed_cpus,
            cpu_model,
            memory,
            kernel: read("/proc/sys/kernel/osrelease"),
            load_average: read("/proc/loadavg"),
            has_taskset,
            commit,
        }
    }

    fn describe(&self) -> String {
        format!(
            "Machine: {} CPUs (nproc), {}, {} memory, Linux {}\n\
             Load average at start: {} (other work on the machine competes for the same CPUs)\n\
             taskset: {}; commit {}",
            self.cpus,
            self.cpu_model,
            self.memory,
            self.kernel,
            self.load_average,
            if self.has_taskset {
                "available"
            } else {
                "not available"
            },
            self.commit
        )
    }
}

/// `0-3,6` → `[0, 1, 2, 3, 6]`.
fn parse_cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                if let (Ok(first), Ok(last)) = (first.parse::<u32>(), last.parse::<u32>()) {
                    cpus.extend(first..=last.min(first.saturating_add(4096)));
                }
            }
            None => cpus.extend(part.parse::<u32>().ok()),
        }
    }
    cpus
}

/// One scenario's `RESULT` line.
struct Row {
    placement: String,
    fields: BTreeMap<String, String>,
}

impl Row {
    fn parse(placement: &str, line: &str) -> Self {
        let fields = line
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        Self {
            placement: placement.to_owned(),
            fields,
        }
    }

    fn text(&self, key: &str) -> &str {
        self.fields.get(key).map_or("-", String::as_str)
    }

    /// The field as a number; NaN when absent or `-`.
    fn number(&self, key: &str) -> f64 {
        self.text(key).parse().unwrap_or(f64::NAN)
    }
}

#[derive(Default)]
struct Report {
    setup: Option<(u32, Duration, String)>,
    rows: Vec<Row>,
    /// Per placement, what the audit writer did over the whole run.
    audit: Vec<(&'static str, String)>,
}

fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_owned();
    }
    let digits = format!("{:.0}", value.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |rest| ("-", rest));
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}{grouped}")
}

fn millis(micros: f64) -> String {
    if micros.is_finite() {
        format!("{:.2}", micros / 1000.0)
    } else {
        "-".to_owned()
    }
}

impl Report {
    fn print(&self, options: &Options, placements: &[Placement]) {
        println!();
        for placement in placements {
            match placement.cpus {
                None => println!(
                    "shared: server and load generator both run on all CPUs and compete for them; \
                     tokens/s is what the machine does with both, srv-core-s is the server alone"
                ),
                Some((server, generator)) => println!(
                    "pinned: server on CPU {server} (taskset), load generator on CPU {generator}: \
                     tokens/s is what one server core does"
                ),
            }
        }
        if let Some((tenants, elapsed, line)) = &self.setup {
            let row = Row::parse("", line);
            println!(
                "setup: {tenants} tenants (tenant + API + app each) created over gRPC in {:.1} s ({} tenants/s)",
                elapsed.as_secs_f64(),
                thousands(row.number("tenants_per_s"))
            );
        }
        println!(
            "each scenario: {} s warm-up, then {} s measured; latency in ms from send to full answer; \
             'due p99' is from the due time (open loop: also counts waiting for a free client)",
            options.warmup, options.duration
        );
        println!();
        println!(
            "{:<7} {:<5} {:<11} {:>5} {:>7} {:>9} {:>6} {:>6} {:>6} {:>6} {:>9} {:>6} {:>7} {:>6} {:>6} {:>10} {:>7}",
            "config",
            "mode",
            "load",
            "conc",
            "tenants",
            "tokens/s",
            "p50",
            "p90",
            "p99",
            "max",
            "due p99",
            "errors",
            "srv CPU",
            "gen",
            "other",
            "tok/srv-s",
            "srv RSS"
        );
        for row in &self.rows {
            let load = match row.text("load") {
                "open" => format!("open {}/s", row.text("rate")),
                other => other.to_owned(),
            };
            let seconds = row.number("seconds");
            // CPU in cores: seconds of CPU per second of wall time.
            let cores = |key: &str| {
                let value = row.number(key) / seconds;
                if value.is_finite() {
                    format!("{value:.2}")
                } else {
                    "-".to_owned()
                }
            };
            let rss = row.number("server_rss_kib");
            println!(
                "{:<7} {:<5} {:<11} {:>5} {:>7} {:>9} {:>6} {:>6} {:>6} {:>6} {:>9} {:>6} {:>7} {:>6} {:>6} {:>10} {:>7}",
                row.placement,
                row.text("mode"),
                load,
                row.text("concurrency"),
                thousands(row.number("tenants")),
                thousands(row.number("tokens_per_s")),
                millis(row.number("p50_us")),
                millis(row.number("p90_us")),
                millis(row.number("p99_us")),
                millis(row.number("max_us")),
                millis(row.number("sched_p99_us")),
                row.text("errors"),
                cores("server_cpu_s"),
                cores("client_cpu_s"),
                cores("other_cpu_s"),
                thousands(row.number("tokens_per_server_cpu_s")),
                if rss.is_finite() {
                    format!("{:.0}M", rss / 1024.0)
                } else {
                    "-".to_owned()
                }
            );
        }
        println!(
            "\nsrv CPU / gen / other: cores used by the server, by the load generator and by anything else \
             during the measurement; tok/srv-s: tokens per second of server CPU time"
        );
        self.print_verdict(placements);
    }

    fn find(&self, placement: &str, mode: &str, load: &str, tenants: u32) -> Option<&Row> {
        self.rows.iter().find(|row| {
            row.placement == placement
                && row.text("mode") == mode
                && row.text("load") == load
                && row.number("tenants") == f64::from(tenants)
        })
    }

    fn print_verdict(&self, placements: &[Placement]) {
        let contended = self
            .rows
            .iter()
            .filter(|row| row.number("other_cpu_s") / row.number("seconds") > 0.1)
            .count();
        if contended > 0 {
            println!(
                "\nWARNING: in {contended} of {} scenarios other processes used more than 0.1 CPU \
                 ('other' column): their tokens/s and latencies understate the server; tokens per \
                 server CPU second is the sturdier figure. Rerun on a quiet machine.",
                self.rows.len()
            );
        }
        if !self.audit.is_empty() {
            println!("\nAudit trail (every token recorded durably before it is returned):");
            for (placement, summary) in &self.audit {
                println!("  {placement:<6} {summary}");
            }
        }
        println!("\nAgainst the targets:");
        let verdict = |ok: bool| if ok { "meets" } else { "BELOW" };
        for placement in placements {
            let name = placement.name;
            for mode in ["grpc", "http"] {
                let Some(max) = self.find(name, mode, "closed", 1) else {
                    continue;
                };
                let tokens = max.number("tokens_per_s");
                println!(
                    "  {name:<6} {mode:<4} max {} tokens/s ({} target {}), {} tokens per server CPU second",
                    thousands(tokens),
                    verdict(tokens >= TARGET_TOKENS_PER_SECOND),
                    thousands(TARGET_TOKENS_PER_SECOND),
                    thousands(max.number("tokens_per_server_cpu_s")),
                );
                for row in self.rows.iter().filter(|row| {
                    row.placement == name && row.text("mode") == mode && row.text("load") == "open"
                }) {
                    let p99 = row.number("p99_us");
                    let achieved = row.number("tokens_per_s");
                    let rate = row.number("rate");
                    // A rate the generator and server did not keep is no latency figure.
                    let sustained = row.number("unsent") == 0.0
                        && achieved.is_finite()
                        && achieved >= 0.97 * rate;
                    if !sustained {
                        println!(
                            "  {name:<6} {mode:<4} at {}/s: NOT SUSTAINED (achieved {}, {} not sent, {} late starts); no latency verdict",
                            row.text("rate"),
                            thousands(achieved),
                            row.text("unsent"),
                            row.text("late"),
                        );
                        continue;
                    }
                    println!(
                        "  {name:<6} {mode:<4} at {}/s (achieved {}): p99 {} ms ({} target 2 ms); from due time {} ms, {} late starts, {} not sent",
                        row.text("rate"),
                        thousands(achieved),
                        millis(p99),
                        verdict(p99 <= TARGET_P99_MICROS),
                        millis(row.number("sched_p99_us")),
                        row.text("late"),
                        row.text("unsent"),
                    );
                }
                let base_tokens = max.number("tokens_per_s");
                let base_cost = max.number("tokens_per_server_cpu_s");
                let sweep: Vec<String> = self
                    .rows
                    .iter()
                    .filter(|row| {
                        row.placement == name
                            && row.text("mode") == mode
                            && row.text("load") == "closed"
                            && row.number("tenants") > 1.0
                    })
                    .map(|row| {
                        format!(
                            "{} tenants {:.0} % of the 1-tenant tokens/s, {:.0} % of its tokens per server CPU second",
                            thousands(row.number("tenants")),
                            100.0 * row.number("tokens_per_s") / base_tokens,
                            100.0 * row.number("tokens_per_server_cpu_s") / base_cost,
                        )
                    })
                    .collect();
                if !sweep.is_empty() {
                    println!("  {name:<6} {mode:<4} {}", sweep.join("; "));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-1"), vec![0, 1]);
        assert_eq!(parse_cpu_list("0-2,5,7-8"), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(parse_cpu_list(""), Vec::<u32>::new());
    }

    #[test]
    fn tenant_flag_sweeps_powers_of_ten() -> anyhow::Result<()> {
        let options = parse_options(&["--tenants".to_owned(), "10000".to_owned()])?;
        assert_eq!(options.tenants, vec![1, 100, 1000, 10_000]);
        let options = parse_options(&["--tenants".to_owned(), "500".to_owned()])?;
        assert_eq!(options.tenants, vec![1, 100, 500]);
        let options = parse_options(&["--tenants".to_owned(), "1,50".to_owned()])?;
        assert_eq!(options.tenants, vec![1, 50]);
        assert!(parse_options(&["--tenants".to_owned(), "0".to_owned()]).is_err());
        assert!(parse_options(&["--duration".to_owned()]).is_err());
        Ok(())
    }

    #[test]
    fn default_rates_are_half_max_and_half_target() {
        assert_eq!(default_rates(20_000.0), vec![10_000, 15_000]);
        assert_eq!(default_rates(31_000.0), vec![15_000]);
        assert_eq!(default_rates(50_000.0), vec![15_000, 25_000]);
    }

    #[test]
    fn reads_result_lines_and_numbers() {
        let row = Row::parse(
            "shared",
            "RESULT mode=grpc tokens_per_s=123.5 server_cpu_s=-",
        );
        assert_eq!(row.text("mode"), "grpc");
        assert_eq!(row.number("tokens_per_s"), 123.5);
        assert!(row.number("server_cpu_s").is_nan());
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }
}
