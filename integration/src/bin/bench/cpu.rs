//! CPU time and memory of the processes a phase measures, sampled from `/proc` (procfs)
//! while the phase runs: paystream, the broker(s) and PostgreSQL (its postmaster and
//! every backend). The CPU a process spent between two instants is interpolated between
//! the samples around them; samples are [`SAMPLE_INTERVAL`] apart and `/proc` counts in
//! clock ticks (10 ms), so windows of a few seconds or more are accurate to about 1 %.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use procfs::process::{Process, all_processes};

use crate::now_ms;

/// How often the processes are sampled.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// One reading of every measured process.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    unix_ms: i64,
    paystream_cpu_us: u64,
    broker_cpu_us: u64,
    postgres_cpu_us: u64,
    /// Peak resident set of paystream so far (`VmHWM`), bytes.
    paystream_peak_rss_bytes: u64,
}

/// CPU time spent in a window, microseconds, by process.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CpuUse {
    pub paystream_us: u64,
    pub broker_us: u64,
    pub postgres_us: u64,
}

/// The processes of the local stack, found from its state directory.
#[derive(Debug, Clone)]
pub struct StackProcesses {
    brokers: Vec<i32>,
    postmaster: Option<i32>,
}

impl StackProcesses {
    /// Reads the broker pid files (`kafka*/kafka.pid`) and PostgreSQL's
    /// `postgres/data/postmaster.pid` under `stack_dir` (`scripts/stack`'s layout).
    ///
    /// # Errors
    /// When no broker pid file is found: the stack is not running from `stack_dir`.
    pub fn find(stack_dir: &Path) -> anyhow::Result<Self> {
        let mut brokers = Vec::new();
        for entry in std::fs::read_dir(stack_dir)
            .with_context(|| format!("reading the stack directory {}", stack_dir.display()))?
        {
            let path = entry?.path();
            let is_kafka = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("kafka"));
            if is_kafka
                && path.is_dir()
                && let Some(pid) = read_pid(&path.join("kafka.pid"))
            {
                brokers.push(pid);
            }
        }
        anyhow::ensure!(
            !brokers.is_empty(),
            "no broker pid under {}: start the local stack with scripts/stack up",
            stack_dir.display()
        );
        let postmaster = read_pid(&stack_dir.join("postgres/data/postmaster.pid"));
        Ok(StackProcesses {
            brokers,
            postmaster,
        })
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Samples paystream (`pid`) and the stack on a thread until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid` (paystream, or `None` to sample the stack only) and `stack`.
    pub fn start(pid: Option<i32>, stack: StackProcesses) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let thread = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::spawn(move || {
                let ticks_per_s = procfs::ticks_per_second().max(1);
                let mut last = Sample::default();
                while !stop.load(Ordering::Relaxed) {
                    let sample = read(pid, &stack, ticks_per_s, &last);
                    last = sample;
                    samples.lock().expect("samples").push(sample);
                    std::thread::sleep(SAMPLE_INTERVAL);
                }
            })
        };
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns what was read.
    pub fn finish(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        Samples(std::mem::take(&mut *self.samples.lock().expect("samples")))
    }
}

/// The readings of one phase.
pub struct Samples(Vec<Sample>);

impl Samples {
    /// CPU time spent from `from_ms` to `to_ms` (milliseconds since the Unix epoch).
    pub fn cpu_between(&self, from_ms: i64, to_ms: i64) -> CpuUse {
        let at = |t: i64, field: fn(&Sample) -> u64| -> f64 {
            let samples = &self.0;
            let Some(first) = samples.first() else {
                return 0.0;
            };
            if t <= first.unix_ms {
                return field(first) as f64;
            }
            for pair in samples.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                if t <= b.unix_ms {
                    let span = (b.unix_ms - a.unix_ms).max(1) as f64;
                    let share = (t - a.unix_ms) as f64 / span;
                    return field(a) as f64 + share * (field(b) as f64 - field(a) as f64);
                }
            }
            field(samples.last().expect("not empty")) as f64
        };
        let spent = |field: fn(&Sample) -> u64| (at(to_ms, field) - at(from_ms, field)).max(0.0);
        CpuUse {
            paystream_us: spent(|s| s.paystream_cpu_us) as u64,
            broker_us: spent(|s| s.broker_cpu_us) as u64,
            postgres_us: spent(|s| s.postgres_cpu_us) as u64,
        }
    }

    /// Peak resident set of paystream in the phase, bytes.
    pub fn paystream_peak_rss_bytes(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.paystream_peak_rss_bytes)
            .max()
            .unwrap_or(0)
    }
}

/// CPU time (user + system) of one process, microseconds; `None` once it has exited.
fn cpu_us(process: &Process, ticks_per_s: u64) -> Option<u64> {
    let stat = process.stat().ok()?;
    Some((stat.utime + stat.stime) * 1_000_000 / ticks_per_s)
}

/// Reads every process; a process that has exited keeps its last reading, so the
/// figures never go backwards.
fn read(pid: Option<i32>, stack: &StackProcesses, ticks_per_s: u64, last: &Sample) -> Sample {
    let mut sample = Sample {
        unix_ms: now_ms(),
        ..*last
    };
    if let Some(process) = pid.and_then(|pid| Process::new(pid).ok()) {
        if let Some(us) = cpu_us(&process, ticks_per_s) {
            sample.paystream_cpu_us = us;
        }
        if let Some(hwm_kb) = process.status().ok().and_then(|s| s.vmhwm) {
            sample.paystream_peak_rss_bytes = hwm_kb * 1024;
        }
    }
    let brokers: u64 = stack
        .brokers
        .iter()
        .filter_map(|pid| Process::new(*pid).ok())
        .filter_map(|p| cpu_us(&p, ticks_per_s))
        .sum();
    sample.broker_cpu_us = sample.broker_cpu_us.max(brokers);
    if let Some(postmaster) = stack.postmaster {
        // The postmaster and its children (backends, WAL writer, checkpointer, …).
        let mut total = Process::new(postmaster)
            .ok()
            .and_then(|p| cpu_us(&p, ticks_per_s))
            .unwrap_or(0);
        if let Ok(processes) = all_processes() {
            for process in processes.flatten() {
                if let Ok(stat) = process.stat()
                    && stat.ppid == postmaster
                {
                    total += (stat.utime + stat.stime) * 1_000_000 / ticks_per_s;
                }
            }
        }
        sample.postgres_cpu_us = sample.postgres_cpu_us.max(total);
    }
    sample
}
