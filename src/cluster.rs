//! `[cluster]`: several worker processes, on one machine or many, forming one
//! timely dataflow over TCP, and what happens when one of them is lost.
//!
//! The keys mean what timely's own flags mean: `processes` is `-n`,
//! `workers` (per process) is `-w`, `process` (this one's index) is `-p`, and
//! `addresses` (or the lines of `hostfile`) is `-h`. clickflow builds timely's
//! communication config from them itself: timely would reject clickflow's
//! other flags. Every process runs the same command with the same config;
//! only `--process` differs.
//!
//! Worker `w` of process `p` is global worker `p * workers + w`. Process 0
//! holds global worker 0: it reads a file input, writes the SQLite store (or
//! Redis's `as_of` marker) and the trend deltas, and commits offsets.
//!
//! **Failure.** timely's network threads panic with "timely communication
//! error" when a peer's connection breaks; [`exit_when_a_peer_is_lost`] turns
//! that into one clear line naming the lost process and exit status 1, within
//! moments, instead of workers waiting forever for the dead peer.
//! [`watch_join`] gives up with a clear error if the cluster has not formed
//! within `join_timeout`.

use crate::units::Duration;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `[cluster]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Processes in the cluster (timely's `-n`).
    pub processes: usize,
    /// Worker threads per process (timely's `-w`); default `run.workers`.
    pub workers: Option<usize>,
    /// This process's index, from 0 (timely's `-p`); `--process` overrides it.
    pub process: usize,
    /// `host:port` of every process, in process order (timely's `-h` lines);
    /// neither this nor `hostfile`: timely's default, `127.0.0.1:2101` and up.
    pub addresses: Vec<String>,
    /// A file of `host:port` lines to use instead of `addresses`.
    pub hostfile: Option<PathBuf>,
    /// How long to wait for every process to join before giving up.
    pub join_timeout: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { processes: 1, workers: None, process: 0, addresses: Vec::new(), hostfile: None, join_timeout: Duration { ms: 60_000 } }
    }
}

/// A resolved cluster: who we are and where everyone is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Processes.
    pub processes: usize,
    /// Workers per process.
    pub workers: usize,
    /// This process.
    pub process: usize,
    /// Every process's address (empty for one process).
    pub addresses: Vec<String>,
    /// See `cluster.join_timeout`.
    pub join_timeout_ms: u64,
}

/// The command line's `-n`, `-p`, `-h` and `-w`.
#[derive(Debug, Clone, Default)]
pub struct ClusterFlags {
    /// `--processes`.
    pub processes: Option<usize>,
    /// `--process`.
    pub process: Option<usize>,
    /// `--hostfile`.
    pub hostfile: Option<PathBuf>,
    /// `--workers`.
    pub workers: Option<usize>,
}

impl ClusterConfig {
    /// Checks values serde cannot; the message names the key.
    /// ([`ClusterConfig::resolve`] checks the command line's values over them.)
    pub fn check(&self) -> Result<(), String> {
        if self.processes == 0 {
            return Err("`cluster.processes` must be at least 1".into());
        }
        if self.workers == Some(0) {
            return Err("`cluster.workers` must be at least 1".into());
        }
        if self.process >= self.processes {
            return Err(format!("`cluster.process` is {}, but there are {} processes (0 to {})", self.process, self.processes, self.processes - 1));
        }
        if !self.addresses.is_empty() && self.hostfile.is_some() {
            return Err("`cluster.addresses` and `cluster.hostfile` are both set: use one".into());
        }
        for (i, a) in self.addresses.iter().enumerate() {
            check_address(a).map_err(|e| format!("`cluster.addresses[{i}]` {a:?}: {e}"))?;
        }
        if self.join_timeout.ms == 0 {
            return Err("`cluster.join_timeout` must be longer than 0".into());
        }
        Ok(())
    }

    /// The cluster this process is in, with the command line's `-n`, `-p`,
    /// `-h` and `-w` over the config's.
    /// `flags` are the command line's (`None`: not given); `run_workers` is
    /// `run.workers`, the default of `cluster.workers`.
    pub fn resolve(&self, flags: ClusterFlags, run_workers: usize) -> Result<Cluster, String> {
        let ClusterFlags { processes, process, hostfile, workers } = flags;
        let processes = processes.unwrap_or(self.processes);
        let process = process.unwrap_or(self.process);
        if processes == 0 {
            return Err("--processes must be at least 1".into());
        }
        if process >= processes {
            return Err(format!("process index {process} is not below the {processes} processes of the cluster (`cluster.process` / --process)"));
        }
        let workers = workers.or(self.workers).unwrap_or(run_workers);
        if workers == 0 {
            return Err("--workers must be at least 1".into());
        }
        let join_timeout_ms = self.join_timeout.ms;
        if processes == 1 {
            return Ok(Cluster { processes, workers, process, addresses: Vec::new(), join_timeout_ms });
        }
        let addresses = match hostfile.or_else(|| self.hostfile.clone()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read the hostfile {} (`cluster.hostfile` / --hostfile): {e}", path.display()))?;
                let lines: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect();
                for (i, a) in lines.iter().enumerate() {
                    check_address(a).map_err(|e| format!("hostfile {} line {}: {a:?}: {e}", path.display(), i + 1))?;
                }
                lines
            }
            // timely's own default without a hostfile: one machine, ports from 2101.
            None if self.addresses.is_empty() => (0..processes).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect(),
            None => self.addresses.clone(),
        };
        if addresses.len() < processes {
            return Err(format!(
                "the cluster has {processes} processes but {} addresses (`cluster.addresses` or `cluster.hostfile`: one host:port per process)",
                addresses.len()
            ));
        }
        Ok(Cluster { processes, workers, process, addresses: addresses.into_iter().take(processes).collect(), join_timeout_ms })
    }
}

fn check_address(a: &str) -> Result<(), String> {
    let (host, port) = a.rsplit_once(':').ok_or("expected host:port")?;
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    port.parse::<u16>().map(|_| ()).map_err(|_| format!("{port:?} is not a port"))
}

impl Cluster {
    /// Workers in the whole cluster.
    pub fn peers(&self) -> usize {
        self.processes * self.workers
    }

    /// The global index of this process's local worker `local`.
    pub fn global(&self, local: usize) -> usize {
        self.process * self.workers + local
    }

    /// timely's configuration for this process.
    pub fn timely_config(&self) -> timely::Config {
        let communication = if self.processes == 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            timely::CommunicationConfig::Cluster { threads: self.workers, process: self.process, addresses: self.addresses.clone(), report: false, zerocopy: false }
        };
        timely::Config { communication, worker: timely::WorkerConfig::default() }
    }
}

/// How long a process that lost a peer waits before exiting: the other
/// survivors stay up meanwhile, so that each of them sees the process that
/// really died first, not a survivor that exited after it.
const LOST_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Turns a broken connection to a peer into one line naming it and exit
/// status 1 (see the module doc): the first peer lost is named, and any
/// other lost within [`LOST_GRACE`].
pub fn exit_when_a_peer_is_lost(cluster: &Cluster) {
    let addresses = cluster.addresses.clone();
    let me = cluster.process;
    let lost: Arc<std::sync::Mutex<Vec<Option<usize>>>> = Arc::default();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().cloned().or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        if !msg.contains("timely communication error") {
            return default(info);
        }
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("");
        let peer = name.strip_prefix("timely:recv-").or_else(|| name.strip_prefix("timely:send-")).and_then(|p| p.parse::<usize>().ok());
        let first = {
            let mut lost = lost.lock().unwrap_or_else(|p| p.into_inner());
            lost.push(peer);
            lost.len() == 1
        };
        if !first {
            // Park instead of unwinding: an unwound network thread poisons its
            // queue, and the worker reading it would panic before the first
            // thread has said what was lost.
            loop {
                std::thread::park();
            }
        }
        std::thread::sleep(LOST_GRACE);
        let lost = lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let describe = |p: &Option<usize>| match p {
            Some(p) => format!("process {p} ({})", addresses.get(*p).map_or("?", String::as_str)),
            None => "a peer".to_string(),
        };
        let mut others: Vec<String> = lost[1..].iter().filter(|p| **p != lost[0]).map(describe).collect();
        others.dedup();
        let also = if others.is_empty() { String::new() } else { format!(" (then {})", others.join(", ")) };
        eprintln!(
            "clickflow: error: process {me} lost {}{also}: {msg}; stopping (relaunch every process; the store is as of its last complete tick)",
            describe(&lost[0])
        );
        std::process::exit(1);
    }));
}

/// Exits with a clear error unless `joined` is set within the join timeout.
pub fn watch_join(cluster: &Cluster, joined: Arc<AtomicBool>) {
    if cluster.processes == 1 {
        return;
    }
    let cluster = cluster.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(cluster.join_timeout_ms);
        while std::time::Instant::now() < deadline {
            if joined.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        eprintln!(
            "clickflow: error: process {} of {}: the cluster did not form within {} ms (`cluster.join_timeout`); every process must be started, and reachable at {}",
            cluster.process,
            cluster.processes,
            cluster.join_timeout_ms,
            cluster.addresses.join(", ")
        );
        std::process::exit(1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_mean_what_timelys_flags_mean() {
        let c = ClusterConfig { processes: 2, workers: Some(3), process: 1, addresses: vec!["a:2101".into(), "b:2102".into()], ..ClusterConfig::default() };
        c.check().unwrap();
        let r = c.resolve(ClusterFlags::default(), 1).unwrap();
        assert_eq!((r.processes, r.workers, r.process, r.peers(), r.global(2)), (2, 3, 1, 6, 5));
        assert!(matches!(r.timely_config().communication, timely::CommunicationConfig::Cluster { threads: 3, process: 1, .. }));
        let r = c.resolve(ClusterFlags { processes: Some(1), process: Some(0), ..ClusterFlags::default() }, 2).unwrap();
        assert!(matches!(r.timely_config().communication, timely::CommunicationConfig::Process(3)), "one process: no network");
        let r = c.resolve(ClusterFlags { workers: Some(4), ..ClusterFlags::default() }, 2).unwrap();
        assert_eq!(r.workers, 4, "-w over cluster.workers");
        assert_eq!(ClusterConfig::default().resolve(ClusterFlags::default(), 2).unwrap().workers, 2, "run.workers is the default");
        // Neither addresses nor a hostfile: timely's default, one machine from port 2101.
        let r = ClusterConfig::default().resolve(ClusterFlags { processes: Some(3), process: Some(2), ..ClusterFlags::default() }, 1).unwrap();
        assert_eq!(r.addresses, ["127.0.0.1:2101", "127.0.0.1:2102", "127.0.0.1:2103"]);

    }

    #[test]
    fn bad_clusters_name_the_key() {
        let c = ClusterConfig { processes: 2, process: 2, ..ClusterConfig::default() };
        assert!(c.resolve(ClusterFlags::default(), 1).unwrap_err().contains("`cluster.process`"));
        assert!(c.resolve(ClusterFlags { workers: Some(0), process: Some(0), ..ClusterFlags::default() }, 1).unwrap_err().contains("--workers"));
        let c = ClusterConfig { processes: 2, addresses: vec!["nohost".into()], ..ClusterConfig::default() };
        assert!(c.check().unwrap_err().contains("`cluster.addresses[0]`"));
        let c = ClusterConfig { processes: 3, addresses: vec!["a:1".into(), "b:2".into()], ..ClusterConfig::default() };
        assert!(c.resolve(ClusterFlags::default(), 1).unwrap_err().contains("3 processes but 2 addresses"));
    }
}
