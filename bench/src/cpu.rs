//! CPU time, from /proc (Linux): how busy the machine was over a timed
//! window and which process used it. A wall-time ratio alone cannot tell a
//! design that waits from one that is short of cores, nor a slow run from
//! one the machine's other work slowed.

use std::sync::OnceLock;

/// Clock ticks per second of /proc's counters (`getconf CLK_TCK`, 100 on
/// every Linux this runs on if that cannot be asked).
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds (user and system) `pid` has used so far, if readable.
pub fn process_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

/// CPU seconds every core of the machine has spent busy so far (anything
/// but idle and waiting for I/O), if readable.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: f64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(busy / ticks_per_second())
}

/// CPU used between two moments: the whole machine's and one process's.
#[derive(Debug, Clone, Copy)]
pub struct Meter {
    machine: f64,
    process: Option<(u32, f64)>,
}

/// What a [`Meter`] measured, in CPU seconds.
#[derive(Debug, Clone, Copy)]
pub struct Used {
    /// Busy time summed over every core.
    pub machine: f64,
    /// The process's own time, if one was metered and is still readable.
    pub process: Option<f64>,
}

impl Meter {
    /// Starts metering the machine, and `pid` if given; `None` where /proc
    /// cannot be read (the figures are then left out, not printed as 0).
    pub fn start(pid: Option<u32>) -> Option<Meter> {
        Some(Meter {
            machine: machine_busy_seconds()?,
            process: pid.and_then(|p| process_seconds(p).map(|s| (p, s))),
        })
    }

    /// CPU used since [`Meter::start`], if /proc is still readable.
    pub fn used(&self) -> Option<Used> {
        Some(Used {
            machine: machine_busy_seconds()? - self.machine,
            process: self
                .process
                .and_then(|(p, s)| process_seconds(p).map(|now| now - s)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_the_machine_report_cpu_time_that_grows_with_work() {
        let me = std::process::id();
        let meter = Meter::start(Some(me)).expect("/proc/stat is readable");
        let process = || meter.used().and_then(|u| u.process).unwrap_or(0.0);
        // Spin until this process has used a measurable amount of CPU.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut x = 0u64;
        while process() < 0.05 && std::time::Instant::now() < deadline {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let used = meter.used().expect("/proc/stat is still readable");
        let process = used.process.expect("this process's stat is readable");
        assert!(process >= 0.05, "process used {used:?}");
        // The machine was at least as busy as this process on it.
        assert!(used.machine + 0.02 >= process, "{used:?}");
    }
}
