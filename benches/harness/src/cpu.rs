//! CPU time consumed by this process, or by another one (the HTTP workload's `cairn serve`),
//! all threads and exited ones included, from /proc/PID/stat.
//!
//! On a shared machine, wall-clock throughput of a CPU-bound run says as much about the
//! neighbours as about the engine; CPU time per event does not. The report shows both.
//! Resolution is one clock tick (usually 10 ms), so it is meaningful for runs of a second or more.

use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second, as `getconf CLK_TCK` reports (100 if it cannot be asked).
fn ticks_per_second() -> u64 {
    const DEFAULT_CLK_TCK: u64 = 100;
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(DEFAULT_CLK_TCK)
    })
}

/// User + system CPU time of this process so far; `None` where /proc is unavailable.
pub fn process_cpu() -> Option<Duration> {
    cpu_from("/proc/self/stat")
}

/// User + system CPU time of process `pid` so far; `None` where /proc is unavailable.
pub fn pid_cpu(pid: u32) -> Option<Duration> {
    cpu_from(&format!("/proc/{pid}/stat"))
}

fn cpu_from(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; the fields after its closing parenthesis
    // start at field 3, so utime and stime (fields 14 and 15) are the 12th and 13th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = ticks_per_second();
    Some(Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks))
}

#[cfg(test)]
mod tests {
    use super::process_cpu;

    #[test]
    fn cpu_time_grows_with_work() {
        let before = process_cpu().expect("/proc/self/stat is readable on Linux");
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
        let after = process_cpu().expect("/proc/self/stat is readable on Linux");
        assert!(after > before, "200 ms of spinning must show up as CPU time ({before:?} -> {after:?})");
    }
}
