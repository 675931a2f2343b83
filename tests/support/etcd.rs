//! A real etcd cluster on loopback ports for the fleet tests: `EtcdCluster::start(3)`,
//! `endpoints()`, `endpoint(i)`, `stop_member(i)` (SIGKILL), `start_member(i)` (same data
//! and ports), `wait_healthy()`. Needs `etcd` and `etcdctl` in `PATH` (Debian:
//! `etcd-server`, `etcd-client`). Dropping it kills every member. Use with
//! `#[path = "support/etcd.rs"] mod etcd;`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A member's ports and process.
struct Node {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

/// A running etcd cluster.
pub struct EtcdCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
    token: String,
}

/// Ports this process has handed to a member: never handed out twice, so two clusters
/// started by parallel tests cannot be given the same port.
static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A free loopback port for a member to listen on.
///
/// Taken below the kernel's ephemeral range (`ip_local_port_range`), where neither
/// `bind(":0")` nor an outgoing connection's source port can land: a port from `:0` is
/// free only until someone else's connection takes it, and a member restarted on its old
/// ports (`start_member`) needs them still free after a kill.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // The SPAN ports under the ephemeral range; 10000.. where that range starts too low
    // to leave room (each port is still checked free, and never given twice).
    const SPAN: u16 = 8192;
    let from = low
        .checked_sub(SPAN)
        .filter(|&f| f >= 10000)
        .unwrap_or(10000);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..10_000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(given.len());
        let port = from + (h.finish() % u64::from(SPAN)) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
    panic!(
        "no free loopback port in {from}..{}",
        u32::from(from) + u32::from(SPAN)
    );
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("e{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let token = format!("imlink-test-{}-{}", std::process::id(), free_port());
        let mut c = EtcdCluster { nodes, dir, token };
        for i in 0..n {
            c.start_member(i);
        }
        c.wait_healthy(&(0..n).collect::<Vec<_>>());
        c
    }

    fn initial_cluster(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The data directory of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.nodes[i].name)
    }

    /// Starts (or restarts, on the same data and ports) member `i`.
    pub fn start_member(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let data = self.data_dir(i);
        let log = std::fs::File::create(self.dir.path().join(format!("e{i}.log"))).unwrap();
        let n = &mut self.nodes[i];
        assert!(n.child.is_none(), "member {i} is running");
        let client = format!("http://127.0.0.1:{}", n.client);
        let peer = format!("http://127.0.0.1:{}", n.peer);
        let child = Command::new("etcd")
            .args(["--name", &n.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Elections in about half a second on loopback.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian: etcd-server) must be installed");
        n.child = Some(child);
    }

    /// Kills member `i` (SIGKILL) and reaps it.
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client endpoint.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.nodes[i].client)
    }

    /// Waits until members `which` report healthy (a quorum read through each).
    pub fn wait_healthy(&self, which: &[usize]) {
        let endpoints: Vec<String> = which.iter().map(|&i| self.endpoint(i)).collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", endpoints.join(",")))
                .args(["endpoint", "health", "--command-timeout=2s"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        (0..self.nodes.len())
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("e{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.stop_member(i);
        }
    }
}
