//! What the report says about the machine: CPU, cores, memory, kernel, the file system under
//! the scratch directory, the Rust toolchain, and crate versions from this harness's lock file.
//! Everything is read at run time; a fact that cannot be read is reported as "unknown".

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub filesystem: String,
    pub rustc: String,
}

const UNKNOWN: &str = "unknown";

impl Machine {
    pub fn probe(scratch: &Path) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| UNKNOWN.into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_else(|| UNKNOWN.into());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| UNKNOWN.into(), |s| s.trim().to_string()),
            filesystem: filesystem_of(scratch),
            rustc: command_line("rustc", &["--version"]),
        }
    }
}

/// "ext4 on /dev/vda (mounted at /)" for the mount holding `path`.
fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let best = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4).then(|| (f[0], f[1], f[2], f[3]))
        })
        .filter(|(_, mount, _, _)| path.starts_with(mount))
        .max_by_key(|(_, mount, _, _)| mount.len());
    match best {
        Some((device, mount, fs, opts)) => {
            let opts: Vec<&str> = opts.split(',').filter(|o| !o.starts_with("errors")).take(4).collect();
            format!("{fs} on {device} (mounted at {mount}, {})", opts.join(","))
        }
        None => UNKNOWN.into(),
    }
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| UNKNOWN.into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// The version of crate `name` in this harness's Cargo.lock (as built).
pub fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).unwrap_or_default();
    let needle = format!("name = \"{name}\"\n");
    lock.split("[[package]]")
        .find(|block| block.trim_start().starts_with(needle.trim_end()) && block.contains(&needle))
        .and_then(|block| {
            block.lines().find_map(|l| l.strip_prefix("version = \"")).map(|v| v.trim_end_matches('"').to_string())
        })
        .unwrap_or_else(|| UNKNOWN.into())
}
