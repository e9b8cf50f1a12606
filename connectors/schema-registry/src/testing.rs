//! Test support: a real Confluent-compatible registry server (`rivven-schema`, which
//! tests/run.sh installs and names in `MOTCUA_TEST_SCHEMA_REGISTRY`), started on a free
//! port and waited for until it answers HTTP — shared by this crate's tests and the
//! workspace's integration tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A Confluent-compatible Schema Registry (`rivven-schema`, which tests/run.sh installs
/// and names in MOTCUA_TEST_SCHEMA_REGISTRY) on a free port, killed on drop.
#[derive(Debug)]
pub struct RegistryServer {
    child: Child,
    pub port: u16,
    pub url: String,
}

impl RegistryServer {
    /// Starts the registry and returns once it answers HTTP. A port taken by another
    /// test's server between `free_port` and the registry's bind makes the registry exit
    /// (or another server answer the TCP connect): that is seen and retried on a new port.
    pub fn start() -> Self {
        let bin = std::env::var("MOTCUA_TEST_SCHEMA_REGISTRY").unwrap_or_else(|_| {
            panic!("MOTCUA_TEST_SCHEMA_REGISTRY is not set: run tests/run.sh (it installs rivven-schema)")
        });
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args([
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    &port.to_string(),
                    "--log-level",
                    "warn",
                ])
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start the schema registry: {e}"));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if child
                    .try_wait()
                    .unwrap_or_else(|e| panic!("registry status: {e}"))
                    .is_some()
                {
                    break; // it could not bind: try another port
                }
                if registry_answers(port) {
                    return Self {
                        child,
                        port,
                        url: format!("http://127.0.0.1:{port}"),
                    };
                }
                assert!(Instant::now() < deadline, "the registry did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.wait();
        }
        panic!("the registry could not bind a free port in 5 attempts")
    }
}

/// Whether a Schema Registry answers `GET /subjects` with 200 on the port.
fn registry_answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /subjects HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
