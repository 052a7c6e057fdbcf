//! A real, throwaway OpenSSH server on 127.0.0.1 for the SSH tests.
//!
//! [`Sshd::start`] generates a host key and a client key in a temporary
//! directory, writes `authorized_keys` and a matching `known_hosts`, starts
//! `/usr/sbin/sshd -D` on a free port and waits until it accepts. Dropping it
//! kills the server and every process it started (by pid).
//!
//! Helpers write the broken variants the placement tests need: a known_hosts
//! with a different key (mismatch), an empty one (unknown host) and a client
//! key the server does not know. [`FreezeProxy`] stands between a client and
//! the server and can go silent without closing anything, like a host that
//! dropped off the network.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    dir: tempfile::TempDir,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key the server accepts.
    pub client_key: PathBuf,
    /// known_hosts with the server's real key for `[127.0.0.1]:PORT`.
    pub known_hosts: PathBuf,
    /// `ssh-ed25519 AAAA…` of the server's host key.
    pub host_public_key: String,
    log: PathBuf,
    child: Option<Child>,
}

/// Run a command, panicking with its stderr when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh ed25519 key pair at `path` / `path.pub`; returns the public line.
fn keygen(path: &Path) -> String {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "agentplane-test", "-f"]).arg(path));
    let public = std::fs::read_to_string(path.with_extension("pub")).expect("public key written");
    // `ssh-ed25519 AAAA… comment` → type and key only.
    public.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// A port that was free a moment ago (bind to 0, learn it, let go).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

fn wait_for_port(port: u16, child: &mut Child, log: &Path) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("sshd exited ({st}) before listening: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        assert!(Instant::now() < end, "sshd did not listen on {port} within 10s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every descendant of `pid` (children first found, deepest last), from /proc.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the `(comm)`: state, ppid, …
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse::<u32>().ok()) {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

fn sigkill(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
}

impl Sshd {
    /// Start a server; panics (failing the test) when sshd is not installed.
    pub fn start() -> Sshd {
        Sshd::start_with(&[])
    }

    /// [`Sshd::start`] with more `sshd_config` options (`-o KEY=VALUE`).
    pub fn start_with(options: &[&str]) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: the SSH tests need a real OpenSSH server; \
             install it with `apt-get update && apt-get install -y openssh-server`"
        );
        // sshd refuses to start without its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let dir = tempfile::Builder::new().prefix("agentplane-sshd-").tempdir().expect("tempdir");
        let d = dir.path();
        let host_key = d.join("host_ed25519");
        let host_public_key = keygen(&host_key);
        let client_key = d.join("client_ed25519");
        let client_public = keygen(&client_key);
        let authorized = d.join("authorized_keys");
        std::fs::write(&authorized, format!("{client_public}\n")).expect("write authorized_keys");
        let user = run(Command::new("id").arg("-un")).trim().to_string();
        let log = d.join("sshd.log");
        let pidfile = d.join("sshd.pid");

        // A free port can be taken between our probe and sshd's bind: retry.
        for _attempt in 0..5 {
            let port = free_port();
            let mut child = Command::new(SSHD)
                .args(["-D", "-e", "-f", "/dev/null", "-p", &port.to_string()])
                .args(["-o", "ListenAddress=127.0.0.1", "-h"])
                .arg(&host_key)
                .arg("-o")
                .arg(format!("AuthorizedKeysFile={}", authorized.display()))
                .arg("-o")
                .arg(format!("PidFile={}", pidfile.display()))
                .args(["-o", "StrictModes=no", "-o", "Subsystem=sftp internal-sftp"])
                .args(["-o", "PermitRootLogin=prohibit-password", "-o", "PasswordAuthentication=no"])
                // Parallel probe tests open many connections at once.
                .args(["-o", "MaxStartups=200", "-o", "MaxSessions=50"])
                .args(options.iter().flat_map(|o| ["-o", o]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create sshd log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(Some(_)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") {
                    continue;
                }
                panic!("sshd exited at once: {text}");
            }
            wait_for_port(port, &mut child, &log);
            let sshd = Sshd {
                host: "127.0.0.1".into(),
                port,
                user,
                client_key,
                known_hosts: d.join("known_hosts"),
                host_public_key,
                log,
                child: Some(child),
                dir,
            };
            std::fs::write(&sshd.known_hosts, sshd.known_hosts_line(port)).expect("write known_hosts");
            return sshd;
        }
        panic!("could not find a free port for sshd");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `user@127.0.0.1:PORT`.
    pub fn ssh_ref(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }

    /// The known_hosts line for this server's key as reached on `port`.
    pub fn known_hosts_line(&self, port: u16) -> String {
        format!("[{}]:{port} {}\n", self.host, self.host_public_key)
    }

    /// A known_hosts file (named `name` in the temp dir) with `contents`.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).expect("write test file");
        p
    }

    /// known_hosts naming this host and port with a different key: a mismatch.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        let other = keygen(&self.dir.path().join(format!("other_host_{}", unique())));
        self.write_file(&format!("known_hosts_wrong_{}", unique()), &format!("[{}]:{} {other}\n", self.host, self.port))
    }

    /// known_hosts with the right line buried among what real files hold: a
    /// comment, an `@cert-authority` line (which libssh2 cannot parse), an
    /// ECDSA key for the same host (another key type is not a mismatch) and a
    /// hashed entry for some other host.
    pub fn noisy_known_hosts(&self) -> PathBuf {
        let n = unique();
        let ca = keygen(&self.dir.path().join(format!("ca_{n}")));
        let ecdsa_path = self.dir.path().join(format!("ecdsa_{n}"));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ecdsa", "-N", "", "-f"]).arg(&ecdsa_path));
        let ecdsa = std::fs::read_to_string(ecdsa_path.with_extension("pub")).expect("ecdsa public key");
        let ecdsa = ecdsa.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let contents = format!(
            "# managed by hand\n\
             @cert-authority *.example.internal {ca}\n\
             [{h}]:{p} {ecdsa}\n\
             |1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= {ca}\n\
             {real}",
            h = self.host,
            p = self.port,
            real = self.known_hosts_line(self.port),
        );
        self.write_file(&format!("known_hosts_noisy_{n}"), &contents)
    }

    /// known_hosts with the right key, also marked `@revoked`.
    pub fn revoked_known_hosts(&self) -> PathBuf {
        let contents = format!("{}@revoked * {}\n", self.known_hosts_line(self.port), self.host_public_key);
        self.write_file(&format!("known_hosts_revoked_{}", unique()), &contents)
    }

    /// An empty known_hosts: the host is unknown.
    pub fn empty_known_hosts(&self) -> PathBuf {
        self.write_file(&format!("known_hosts_empty_{}", unique()), "")
    }

    /// known_hosts trusting this server's key when reached through `port` (a proxy).
    pub fn known_hosts_for_port(&self, port: u16) -> PathBuf {
        self.write_file(&format!("known_hosts_{port}"), &self.known_hosts_line(port))
    }

    /// A fresh client key that is not in authorized_keys.
    pub fn bad_client_key(&self) -> PathBuf {
        let p = self.dir.path().join(format!("stranger_{}", unique()));
        keygen(&p);
        p
    }

    /// What sshd logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The typed v0.1 inventory entry for this server (`port`, key and
    /// known_hosts overridable by the caller through the returned JSON).
    pub fn executor_json(&self, name: &str) -> serde_json::Value {
        self.executor_json_with(name, self.port, &self.client_key, &self.known_hosts)
    }

    pub fn executor_json_with(&self, name: &str, port: u16, key: &Path, known_hosts: &Path) -> serde_json::Value {
        serde_json::json!({
            "name": name,
            "sshRef": format!("{}@{}:{port}", self.user, self.host),
            "enabled": true,
            "platform": {"os": "linux", "arch": std::env::consts::ARCH},
            "supportedBackends": ["lima-process"],
            "capabilities": {"kvm": false},
            "health": {"state": "ready"},
            "trustZone": "test",
            "ssh": {
                "host": self.host,
                "port": port,
                "user": self.user,
                "identityFile": key.display().to_string(),
                "knownHostsFile": known_hosts.display().to_string(),
            }
        })
    }

    /// Kill the server and every session it started, at once (SIGKILL): the
    /// host is gone. Connections see a reset, not a polite close.
    pub fn kill_all(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        let tree = descendants(pid);
        sigkill(pid);
        for p in tree {
            sigkill(p);
        }
        let _ = child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A per-process counter for unique file names.
fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A TCP relay on 127.0.0.1 to another local port that can be frozen: once
/// frozen it stops forwarding in both directions but keeps every socket open,
/// as when a host drops off the network (no FIN, no RST).
pub struct FreezeProxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FreezeProxy {
    pub fn start(to_port: u16) -> FreezeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frozen.clone(), stop.clone());
        listener.set_nonblocking(true).expect("nonblocking listener");
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(("127.0.0.1", to_port)) else {
                            continue;
                        };
                        for (a, b) in [(&client, &server), (&server, &client)] {
                            let (mut r, mut w) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
                            let (f, s) = (f.clone(), s.clone());
                            std::thread::spawn(move || pump(&mut r, &mut w, &f, &s));
                        }
                        held.push((client, server));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for (c, sv) in held {
                let _ = c.shutdown(Shutdown::Both);
                let _ = sv.shutdown(Shutdown::Both);
            }
        });
        FreezeProxy { port, frozen, stop }
    }

    /// Stop forwarding, keep the sockets open.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }
}

impl Drop for FreezeProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copy `r` to `w` until EOF, an error, or stop; while frozen, read nothing
/// and write nothing (bytes already read are dropped, as a dead link would).
fn pump(r: &mut TcpStream, w: &mut TcpStream, frozen: &AtomicBool, stop: &AtomicBool) {
    let _ = r.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if frozen.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if frozen.load(Ordering::SeqCst) {
                    continue;
                }
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = w.shutdown(Shutdown::Write);
}
