//! Measurements: latency histograms, CPU time and resident memory of a process from `/proc`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;

/// The longest latency a histogram holds, in microseconds; longer ones count as this.
const LATENCY_MAX_MICROS: u64 = 60_000_000;

/// A latency histogram in microseconds, 1 µs to 60 s, three significant digits (≤ 0.1 %
/// error): HdrHistogram, so recording is O(1) and memory is fixed whatever the count.
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3)
        .map_err(|error| anyhow::anyhow!("cannot create a histogram: {error:?}"))
}

/// Records `latency`, clamped to the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.clamp(1, LATENCY_MAX_MICROS));
}

/// What one worker saw.
pub struct WorkerReport {
    /// Successful requests that count (started in the measurement window).
    pub ok: u64,
    /// Failed requests that count, by kind.
    pub errors: BTreeMap<String, u64>,
    /// The first failure's description, to show the operator.
    pub first_error: Option<String>,
    /// Latency from sending to the complete answer.
    pub service: Histogram<u64>,
    /// Open loop only: latency from the scheduled send time, which also counts the time a
    /// request waited for a free worker (no coordinated omission).
    pub scheduled: Histogram<u64>,
    /// Open loop only: requests that started more than [`LATE_THRESHOLD`] after their
    /// scheduled time, i.e. the load generator could not keep the rate.
    pub late: u64,
    /// When the worker's last counted request completed.
    pub last_done: Option<std::time::Instant>,
}

/// How late a scheduled request may start before it counts as late: the generator did not
/// keep up (no free client, or no CPU for it).
pub const LATE_THRESHOLD: Duration = Duration::from_millis(2);

impl WorkerReport {
    /// An empty report.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            ok: 0,
            errors: BTreeMap::new(),
            first_error: None,
            service: new_histogram()?,
            scheduled: new_histogram()?,
            late: 0,
            last_done: None,
        })
    }

    /// Counts one failure of `kind`.
    pub fn failure(&mut self, kind: String, detail: String) {
        *self.errors.entry(kind).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(detail);
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: WorkerReport) -> anyhow::Result<()> {
        self.ok += other.ok;
        for (kind, count) in other.errors {
            *self.errors.entry(kind).or_default() += count;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.service
            .add(&other.service)
            .map_err(|error| anyhow::anyhow!("cannot merge histograms: {error:?}"))?;
        self.scheduled
            .add(&other.scheduled)
            .map_err(|error| anyhow::anyhow!("cannot merge histograms: {error:?}"))?;
        self.late += other.late;
        self.last_done = match (self.last_done, other.last_done) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }

    /// All failures that count.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux
/// unless told otherwise).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse::<f64>().ok())
            .filter(|ticks| *ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU time (user + system, all threads) a process has used so far, in seconds; `None`
/// reads this process.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name (field 2) is in parentheses and may contain anything, so count
    // fields after its closing parenthesis: state is field 3, utime 14, stime 15.
    let after_name = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("unexpected format of {path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> anyhow::Result<f64> {
        fields
            .get(number - 3)
            .and_then(|value| value.parse::<f64>().ok())
            .with_context(|| format!("unexpected format of {path}"))
    };
    Ok((field(14)? + field(15)?) / ticks_per_second())
}

/// CPU seconds the whole machine has spent busy (not idle, not waiting for I/O) since boot,
/// summed over CPUs, from the first line of `/proc/stat`. Compared with the server's and
/// this process's own time, it shows how much CPU anything else took during a run.
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
    let values: Vec<f64> = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("cpu "))
        .context("unexpected format of /proc/stat")?
        .split_whitespace()
        .map(|value| value.parse::<f64>())
        .collect::<Result<_, _>>()
        .context("unexpected format of /proc/stat")?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let busy: f64 = values
        .iter()
        .take(8)
        .enumerate()
        .filter(|(index, _)| *index != 3 && *index != 4)
        .map(|(_, value)| value)
        .sum();
    Ok(busy / ticks_per_second())
}

/// Resident memory of a process in KiB (`VmRSS`), if it can be read.
pub fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_time() -> anyhow::Result<()> {
        // Burn a little CPU so the counter is surely positive on a coarse clock.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
        assert!(cpu_seconds(None)? >= 0.0);
        assert!(rss_kib(None).is_some_and(|kib| kib > 0));
        assert!(machine_busy_seconds()? > 0.0);
        Ok(())
    }

    #[test]
    fn histogram_percentiles_and_merge() -> anyhow::Result<()> {
        let mut a = WorkerReport::new()?;
        let mut b = WorkerReport::new()?;
        for micros in 1..=1000 {
            record(&mut a.service, Duration::from_micros(micros));
        }
        record(&mut b.service, Duration::from_secs(3600));
        b.failure("http:500".to_owned(), "boom".to_owned());
        a.merge(b)?;
        assert_eq!(a.service.len(), 1001);
        let p50 = a.service.value_at_quantile(0.5);
        assert!((495..=505).contains(&p50), "p50 {p50}");
        assert_eq!(
            a.service.max(),
            a.service.highest_equivalent(LATENCY_MAX_MICROS)
        );
        assert_eq!(a.error_count(), 1);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
        Ok(())
    }
}
