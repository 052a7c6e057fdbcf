//! SSH sessions to executors, shared by the placement probe and the SSH runner.
//!
//! [`connect`] opens an authenticated `ssh2` session with every step bounded by
//! one deadline, and checks the host key strictly against the target's
//! known_hosts file: no trust on first use, and known_hosts is never written.
//! Failures carry a stable code ([`SshFailure`]) that placement records as the
//! rejection reason.
//!
//! The remaining helpers run a command ([`exec`]), move directory trees over
//! SFTP ([`upload_dir`], [`upload_file`], [`download_dir`]) and quote words for
//! the remote `sh` ([`shell_quote`]).

use anyhow::{Context, Result, bail};
use ssh2::{CheckResult, ErrorCode, KnownHostFileKind, MethodType, Session, Sftp};
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::types::{RejectCode, SshTarget};

/// The executor cannot be reached: DNS, refused, no route, connect timed out,
/// no SSH banner, handshake failed or timed out.
pub const UNREACHABLE: RejectCode = RejectCode::SshUnreachable;
/// known_hosts has no key for this host (or cannot be read).
pub const HOST_KEY_UNKNOWN: RejectCode = RejectCode::SshHostKeyUnknown;
/// known_hosts has a different key for this host (possible man in the middle),
/// or the presented key is marked `@revoked`.
pub const HOST_KEY_CHANGED: RejectCode = RejectCode::SshHostKeyChanged;
/// The identity file is missing or unreadable, or the server rejected it.
pub const AUTH_FAILED: RejectCode = RejectCode::SshAuthFailed;

// libssh2 error codes we tell apart (see libssh2.h).
const LIBSSH2_ERROR_SOCKET_SEND: i32 = -7;
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;
const LIBSSH2_ERROR_SOCKET_DISCONNECT: i32 = -13;
const LIBSSH2_ERROR_EAGAIN: i32 = -37;
const LIBSSH2_ERROR_SOCKET_RECV: i32 = -43;

/// Why an SSH connection could not be used, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshFailure {
    /// One of [`UNREACHABLE`], [`HOST_KEY_UNKNOWN`], [`HOST_KEY_CHANGED`], [`AUTH_FAILED`].
    pub code: RejectCode,
    /// What happened, for a person.
    pub detail: String,
}

impl SshFailure {
    fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        SshFailure { code, detail: detail.into() }
    }
}

impl fmt::Display for SshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for SshFailure {}

/// `user@host:port`, as inventories and messages name an SSH target.
pub fn display_target(target: &SshTarget) -> String {
    format!("{}@{}:{}", target.user, target.host, target.port)
}

/// Open an authenticated session to `target`, everything bounded by `timeout`.
///
/// The session is left in blocking mode with its libssh2 timeout set to what
/// remained of `timeout`; callers set their own with [`Session::set_timeout`].
pub fn connect(target: &SshTarget, timeout: Duration) -> Result<Session, SshFailure> {
    connect_until(target, Instant::now() + timeout)
}

/// [`connect`] with an absolute deadline, so a caller can bound connect plus
/// what follows (the probe's `uname`) by one budget.
pub fn connect_until(target: &SshTarget, deadline: Instant) -> Result<Session, SshFailure> {
    let who = display_target(target);
    let unreachable = |detail: String| SshFailure::new(UNREACHABLE, format!("{who}: {detail}"));

    // ssh2 turns names into C strings with `unwrap`: refuse what would panic.
    if target.host.is_empty() || target.host.contains(['\0', ' ', '\t', '\n']) {
        return Err(unreachable(format!("invalid host name {:?}", target.host)));
    }
    let addrs = resolve(&target.host, target.port, deadline).map_err(&unreachable)?;
    let tcp = tcp_connect(&addrs, deadline).map_err(&unreachable)?;

    let mut session = Session::new().map_err(|e| unreachable(format!("cannot create an SSH session: {e}")))?;
    // Read known_hosts before the handshake so the host key algorithms it
    // lists can be preferred (as OpenSSH does); otherwise the server may offer
    // a key type that known_hosts does not list and a known host looks unknown.
    let known = KnownHostsFile::load(Path::new(&expand_home(&target.known_hosts_file)));
    if let Ok(k) = &known {
        let bare = target.host.trim_start_matches('[').trim_end_matches(']');
        let types = k.key_types_for(bare, target.port);
        if !types.is_empty() {
            prefer_host_key_types(&session, &types);
        }
    }

    session.set_tcp_stream(tcp);
    set_remaining_timeout(&session, deadline).map_err(|()| unreachable("timed out before the SSH handshake".into()))?;
    session.handshake().map_err(|e| {
        if is_timeout(&e) {
            unreachable(format!("no SSH banner or handshake within the timeout ({})", e.message()))
        } else {
            unreachable(format!("SSH handshake failed: {}", e.message()))
        }
    })?;

    check_host_key(&session, target, known).map_err(|f| SshFailure::new(f.code, format!("{who}: {}", f.detail)))?;

    let identity = PathBuf::from(expand_home(&target.identity_file));
    if let Err(e) = fs::File::open(&identity) {
        return Err(SshFailure::new(
            AUTH_FAILED,
            format!("{who}: cannot read identity file `{}`: {e}", identity.display()),
        ));
    }
    set_remaining_timeout(&session, deadline).map_err(|()| unreachable("timed out before authentication".into()))?;
    if let Err(e) = session.userauth_pubkey_file(&target.user, None, &identity, None) {
        return Err(if is_connection_error(&e) {
            unreachable(format!("connection failed during authentication: {}", e.message()))
        } else {
            SshFailure::new(
                AUTH_FAILED,
                format!("{who}: public key `{}` was not accepted: {}", identity.display(), e.message()),
            )
        });
    }
    if !session.authenticated() {
        return Err(SshFailure::new(AUTH_FAILED, format!("{who}: not authenticated with `{}`", identity.display())));
    }
    Ok(session)
}

/// Close a session politely (best effort, at most `timeout`): sshd logs a clean
/// disconnect instead of a reset.
pub fn disconnect(session: &Session, timeout: Duration) {
    session.set_blocking(true);
    session.set_timeout(millis(timeout));
    let _ = session.disconnect(None, "agentplane done", None);
}

/// Resolve `host:port`; a name is resolved on a helper thread so a slow
/// resolver cannot outlive the deadline (the thread finishes on its own).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = bare.to_string();
    std::thread::Builder::new()
        .name("ssh-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| format!("cannot start a resolver thread: {e}"))?;
    match rx.recv_timeout(remaining(deadline)) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(format!("`{bare}` resolves to no address")),
        Ok(Err(e)) => Err(format!("cannot resolve `{bare}`: {e}")),
        Err(_) => Err(format!("resolving `{bare}` timed out")),
    }
}

/// Connect to the first address that accepts before the deadline.
fn tcp_connect(addrs: &[SocketAddr], deadline: Instant) -> Result<TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for addr in addrs {
        let left = remaining(deadline);
        if left.is_zero() {
            return Err(format!("connecting to {addr} timed out"));
        }
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => {
                // libssh2 polls the socket itself; these only guard any direct use.
                let _ = s.set_read_timeout(Some(left));
                let _ = s.set_write_timeout(Some(left));
                // SSH exchanges many small packets: do not let Nagle delay them.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                last = format!("connecting to {addr} timed out");
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Set the libssh2 blocking-call timeout to what is left until `deadline`
/// (libssh2 treats 0 as "no timeout", so an expired deadline is an error).
fn set_remaining_timeout(session: &Session, deadline: Instant) -> Result<(), ()> {
    let left = remaining(deadline);
    if left.is_zero() {
        return Err(());
    }
    session.set_timeout(millis(left).max(1));
    Ok(())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// A duration as libssh2's `u32` milliseconds (saturating).
pub fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Whether an `ssh2` error is libssh2's EAGAIN (a non-blocking call would block).
pub fn is_would_block(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_EAGAIN)
}

fn is_timeout(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT)
}

/// Whether an `ssh2` error means the transport is gone (or stalled), as
/// opposed to the server refusing a request.
pub fn is_connection_error(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::Session(
            LIBSSH2_ERROR_TIMEOUT
                | LIBSSH2_ERROR_SOCKET_SEND
                | LIBSSH2_ERROR_SOCKET_RECV
                | LIBSSH2_ERROR_SOCKET_DISCONNECT
        )
    )
}

fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest).to_string_lossy().into_owned(),
        _ => path.to_string(),
    }
}

/// A known_hosts file, read by us rather than by libssh2's `read_file`.
///
/// libssh2 knows no markers: it would read `@revoked HOST KEY` as an entry
/// for a host literally named `@revoked` (so a revoked key would pass), and
/// `@cert-authority` lines likewise. Markers are handled here (revoked keys
/// refused, CA lines skipped: no host certificates), and plain entries are
/// fed to libssh2 one line at a time, only those of the presented key type.
struct KnownHostsFile {
    path: PathBuf,
    /// Non-marker lines: (host field, key type, base64 key).
    entries: Vec<(String, String, String)>,
    /// Base64 blobs of keys marked `@revoked`.
    revoked: Vec<String>,
}

impl KnownHostsFile {
    fn load(path: &Path) -> Result<Self, String> {
        let text =
            fs::read_to_string(path).map_err(|e| format!("cannot read known_hosts `{}`: {e}", path.display()))?;
        let mut entries = Vec::new();
        let mut revoked = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or_default();
            if let Some(marker) = first.strip_prefix('@') {
                // `@revoked HOSTS TYPE KEY`: remember the key; `@cert-authority`
                // is not supported by libssh2 (no host certificates) and skipped.
                if marker == "revoked" {
                    let _hosts = fields.next();
                    let _ty = fields.next();
                    if let Some(key) = fields.next() {
                        revoked.push(key.to_string());
                    }
                }
                continue;
            }
            if let (Some(ty), Some(key)) = (fields.next(), fields.next()) {
                entries.push((first.to_string(), ty.to_string(), key.to_string()));
            }
        }
        Ok(KnownHostsFile { path: path.to_path_buf(), entries, revoked })
    }

    /// Key types listed for `host` (plain names only: hashed entries cannot be
    /// matched without HMAC-SHA1, which is fine: ordering is only a preference).
    fn key_types_for(&self, host: &str, port: u16) -> Vec<String> {
        let wanted = if port == 22 { host.to_string() } else { format!("[{host}]:{port}") };
        let mut types = Vec::new();
        for (hosts, ty, _) in &self.entries {
            if hosts.split(',').any(|h| h == wanted) && !types.contains(ty) {
                types.push(ty.clone());
            }
        }
        types
    }
}

/// Put the host key algorithms known_hosts lists for this host first in the
/// client's preference list (keeping every other supported algorithm after them).
fn prefer_host_key_types(session: &Session, types: &[String]) {
    let Ok(supported) = session.supported_algs(MethodType::HostKey) else {
        return;
    };
    let mut prefs: Vec<&str> = Vec::new();
    for ty in types {
        // An RSA key is used with the SHA-2 signature algorithms first.
        let algs: Vec<&str> =
            if ty == "ssh-rsa" { vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] } else { vec![ty.as_str()] };
        for a in algs {
            if let Some(s) = supported.iter().find(|s| **s == a)
                && !prefs.contains(s)
            {
                prefs.push(s);
            }
        }
    }
    if prefs.is_empty() {
        return;
    }
    for s in &supported {
        if !prefs.contains(s) {
            prefs.push(s);
        }
    }
    let _ = session.method_pref(MethodType::HostKey, &prefs.join(","));
}

/// The key type named inside an SSH public key blob (`ssh-ed25519`, …).
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// Check the server's host key strictly, as OpenSSH with
/// `StrictHostKeyChecking yes` does: only entries for `host` (port 22) or
/// `[host]:port`, only entries of the presented key type.
fn check_host_key(
    session: &Session,
    target: &SshTarget,
    known: Result<KnownHostsFile, String>,
) -> Result<(), SshFailure> {
    let known = known.map_err(|e| SshFailure::new(HOST_KEY_UNKNOWN, e))?;
    let (key, _) =
        session.host_key().ok_or_else(|| SshFailure::new(UNREACHABLE, "the server presented no host key"))?;
    let key_type = blob_key_type(key).unwrap_or("unknown").to_string();
    let key_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key);
    let fingerprint = session
        .host_key_hash(ssh2::HashType::Sha256)
        .map(|h| {
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD_NO_PAD, h);
            format!("SHA256:{b64}")
        })
        .unwrap_or_default();
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let name = if target.port == 22 { host.to_string() } else { format!("[{host}]:{}", target.port) };
    let path = known.path.display().to_string();

    if known.revoked.contains(&key_b64) {
        return Err(SshFailure::new(
            HOST_KEY_CHANGED,
            format!("the {key_type} host key {fingerprint} is marked @revoked in `{path}`"),
        ));
    }
    let mut hosts = session
        .known_hosts()
        .map_err(|e| SshFailure::new(HOST_KEY_UNKNOWN, format!("cannot check host keys: {}", e.message())))?;
    // Feed only entries of the presented type: ssh2's check ignores key types,
    // so an RSA entry would otherwise make an ed25519 key look "changed".
    for (names, ty, blob) in &known.entries {
        if *ty == key_type {
            let _ = hosts.read_str(&format!("{names} {ty} {blob}"), KnownHostFileKind::OpenSSH);
        }
    }
    // `check` (no port) compares the literal name: `[host]:port` for a
    // non-standard port, never falling back to the bare host as libssh2's
    // `check_port` would (OpenSSH does not either).
    match hosts.check(&name, key) {
        CheckResult::Match => Ok(()),
        CheckResult::NotFound => Err(SshFailure::new(
            HOST_KEY_UNKNOWN,
            format!(
                "no {key_type} key for `{name}` in known_hosts `{path}` (the server offers {fingerprint}); \
                 verify it and add it, e.g. with ssh-keyscan -p {} {host}",
                target.port
            ),
        )),
        CheckResult::Mismatch => Err(SshFailure::new(
            HOST_KEY_CHANGED,
            format!(
                "the {key_type} host key presented ({fingerprint}) differs from the one for `{name}` \
                 in known_hosts `{path}`: possible man-in-the-middle"
            ),
        )),
        CheckResult::Failure => {
            Err(SshFailure::new(HOST_KEY_UNKNOWN, format!("cannot check the host key for `{name}` against `{path}`")))
        }
    }
}

/// A quoted word for the remote POSIX `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What a remote command printed and how it ended.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Exit status (`-1` when the command was killed by a signal).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl ExecOutput {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Run `command` over a new channel and capture its output, every blocking
/// step bounded by `timeout`. Meant for short commands with small output
/// (stdout is drained before stderr).
pub fn exec(session: &Session, command: &str, timeout: Duration) -> Result<ExecOutput> {
    exec_until(session, command, Instant::now() + timeout)
}

/// [`exec`] with an absolute deadline.
pub fn exec_until(session: &Session, command: &str, deadline: Instant) -> Result<ExecOutput> {
    session.set_blocking(true);
    let step = |what: &str| -> Result<()> {
        if set_remaining_timeout(session, deadline).is_err() {
            bail!("timed out before {what}");
        }
        Ok(())
    };
    step("opening a channel")?;
    let mut channel = session.channel_session().context("cannot open an SSH channel")?;
    step("running the command")?;
    channel.exec(command).context("cannot start the remote command")?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    step("reading its output")?;
    channel.read_to_end(&mut stdout).context("cannot read the remote command's output")?;
    step("reading its errors")?;
    channel.stderr().read_to_end(&mut stderr).context("cannot read the remote command's errors")?;
    step("the command closed")?;
    channel.wait_close().context("the remote command did not finish")?;
    let status = match channel.exit_signal() {
        Ok(sig) if sig.exit_signal.is_some() => -1,
        _ => channel.exit_status().context("no exit status from the remote command")?,
    };
    Ok(ExecOutput { status, stdout, stderr })
}

/// [`exec`] that fails unless the command exits 0, naming its stderr.
pub fn exec_ok(session: &Session, command: &str, timeout: Duration) -> Result<ExecOutput> {
    let out = exec(session, command, timeout)?;
    if out.status != 0 {
        bail!("remote command exited {}: {}", out.status, out.stderr_str().trim());
    }
    Ok(out)
}

/// Upload the file `local` to `remote` with the same permission bits (setuid
/// and friends dropped). Returns the bytes written.
pub fn upload_file(sftp: &Sftp, local: &Path, remote: &Path) -> Result<u64> {
    let meta = fs::metadata(local).with_context(|| format!("cannot read `{}`", local.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    let mut src = fs::File::open(local).with_context(|| format!("cannot read `{}`", local.display()))?;
    let mut dst = sftp
        .open_mode(
            remote,
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
            mode as i32,
            ssh2::OpenType::File,
        )
        .with_context(|| format!("cannot create remote `{}`", remote.display()))?;
    // Big buffers let libssh2 pipeline several SFTP write packets.
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("cannot read `{}`", local.display()))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).with_context(|| format!("cannot write remote `{}`", remote.display()))?;
        total += n as u64;
    }
    // The server applies its umask at open: set the exact mode afterwards.
    dst.setstat(ssh2::FileStat { size: None, uid: None, gid: None, perm: Some(mode), atime: None, mtime: None })
        .with_context(|| format!("cannot set the mode of remote `{}`", remote.display()))?;
    dst.close().with_context(|| format!("cannot close remote `{}`", remote.display()))?;
    Ok(total)
}

/// What a tree transfer moved.
#[derive(Debug, Clone, Default)]
pub struct TransferReport {
    pub files: u64,
    pub bytes: u64,
    /// Entries not transferred (special files), relative paths.
    pub skipped: Vec<String>,
}

/// Upload the directory tree `local` into `remote` (which must not exist yet
/// and is created with owner-only access), preserving permission bits and
/// relative symlinks. `skip` is asked about each path relative to `local`;
/// a skipped directory is not descended into.
pub fn upload_dir(
    session: &Session,
    sftp: &Sftp,
    local: &Path,
    remote: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<TransferReport> {
    let mut report = TransferReport::default();
    sftp.mkdir(remote, 0o700).with_context(|| format!("cannot create remote `{}`", remote.display()))?;
    let mut links = Vec::new();
    let mut walk = walkdir::WalkDir::new(local).follow_links(false).sort_by_file_name().into_iter();
    while let Some(entry) = walk.next() {
        let entry = entry.with_context(|| format!("cannot list `{}`", local.display()))?;
        let rel = entry.path().strip_prefix(local).unwrap_or(entry.path());
        if rel.as_os_str().is_empty() {
            continue;
        }
        if skip(rel) {
            if entry.file_type().is_dir() {
                walk.skip_current_dir();
            }
            continue;
        }
        let dst = remote.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            let mode = entry.metadata().map(|m| m.permissions().mode() & 0o777).unwrap_or(0o755);
            // The owner must be able to write into it while we upload.
            sftp.mkdir(&dst, (mode | 0o700) as i32)
                .with_context(|| format!("cannot create remote `{}`", dst.display()))?;
        } else if ft.is_file() {
            report.bytes += upload_file(sftp, entry.path(), &dst)?;
            report.files += 1;
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path())
                .with_context(|| format!("cannot read link `{}`", entry.path().display()))?;
            links.push((target, dst));
        } else {
            report.skipped.push(rel.display().to_string());
        }
    }
    // Symlinks go through the shell: SFTP's SYMLINK argument order differs
    // between OpenSSH and the specification.
    if !links.is_empty() {
        let cmd = links
            .iter()
            .map(|(t, d)| format!("ln -s {} {}", shell_quote(&t.to_string_lossy()), shell_quote(&d.to_string_lossy())))
            .collect::<Vec<_>>()
            .join(" && ");
        exec_ok(session, &cmd, Duration::from_secs(30)).context("cannot create symlinks on the remote")?;
        report.files += links.len() as u64;
    }
    Ok(report)
}

/// Download the remote directory tree `remote` into the existing local
/// directory `local`, preserving permission bits. Symlinks are recreated, not
/// followed; special files (FIFOs, sockets, devices) are listed in the report
/// and not copied.
pub fn download_dir(sftp: &Sftp, remote: &Path, local: &Path) -> Result<TransferReport> {
    let mut report = TransferReport::default();
    download_into(sftp, remote, local, Path::new(""), 0, &mut report)?;
    Ok(report)
}

fn download_into(
    sftp: &Sftp,
    remote: &Path,
    local: &Path,
    rel: &Path,
    depth: usize,
    report: &mut TransferReport,
) -> Result<()> {
    if depth > 128 {
        bail!("remote tree `{}` is nested too deeply", remote.display());
    }
    let dir = remote.join(rel);
    let mut entries = sftp.readdir(&dir).with_context(|| format!("cannot list remote `{}`", dir.display()))?;
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, stat) in entries {
        let Some(name) = path.file_name() else {
            continue;
        };
        if name == "." || name == ".." {
            continue;
        }
        let child_rel = rel.join(name);
        let dst = local.join(&child_rel);
        let mode = stat.perm.unwrap_or(0o644) & 0o777;
        match stat.file_type() {
            ssh2::FileType::Directory => {
                fs::create_dir(&dst).with_context(|| format!("cannot create `{}`", dst.display()))?;
                download_into(sftp, remote, local, &child_rel, depth + 1, report)?;
                fs::set_permissions(&dst, fs::Permissions::from_mode(mode | 0o700))
                    .with_context(|| format!("cannot set the mode of `{}`", dst.display()))?;
            }
            ssh2::FileType::RegularFile => {
                report.bytes += download_file(sftp, &path, &dst, mode)?;
                report.files += 1;
            }
            ssh2::FileType::Symlink => {
                // Kept as the script left it, as the local runner does; never followed.
                let target =
                    sftp.readlink(&path).with_context(|| format!("cannot read remote link `{}`", path.display()))?;
                std::os::unix::fs::symlink(&target, &dst)
                    .with_context(|| format!("cannot create link `{}`", dst.display()))?;
                report.files += 1;
            }
            _ => report.skipped.push(child_rel.display().to_string()),
        }
    }
    Ok(())
}

fn download_file(sftp: &Sftp, remote: &Path, local: &Path, mode: u32) -> Result<u64> {
    let mut src = sftp.open(remote).with_context(|| format!("cannot open remote `{}`", remote.display()))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(local)
        .with_context(|| format!("cannot create `{}`", local.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("cannot read remote `{}`", remote.display()))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n]).with_context(|| format!("cannot write `{}`", local.display()))?;
        total += n as u64;
    }
    dst.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of `{}`", local.display()))?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_sh() {
        let nasty = "it's \"quoted\" $HOME `id` \\ \n end";
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }

    #[test]
    fn key_type_comes_from_the_blob() {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 32]);
        assert_eq!(blob_key_type(&blob), Some("ssh-ed25519"));
        assert_eq!(blob_key_type(&[0, 0, 0, 99, b'x']), None);
        assert_eq!(blob_key_type(&[]), None);
    }

    #[test]
    fn known_hosts_markers_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("known_hosts");
        fs::write(
            &p,
            "# comment\n\n\
             @cert-authority *.example ssh-ed25519 AAAACA\n\
             @revoked * ssh-ed25519 AAAAREVOKED\n\
             [h]:2222,[h2]:2222 ssh-ed25519 AAAAED\n\
             [h]:2222 ssh-rsa AAAARSA\n\
             h ecdsa-sha2-nistp256 AAAAEC\n\
             |1|salt|hash ssh-ed25519 AAAAHASHED\n",
        )
        .unwrap();
        let k = KnownHostsFile::load(&p).unwrap();
        assert_eq!(k.revoked, vec!["AAAAREVOKED".to_string()]);
        assert_eq!(k.entries.len(), 4, "markers are not entries: {:?}", k.entries);
        assert_eq!(k.key_types_for("h", 2222), vec!["ssh-ed25519".to_string(), "ssh-rsa".to_string()]);
        assert_eq!(k.key_types_for("h", 22), vec!["ecdsa-sha2-nistp256".to_string()]);
        assert!(k.key_types_for("other", 22).is_empty());
        assert!(KnownHostsFile::load(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn a_host_name_that_would_panic_ssh2_is_refused() {
        let t = SshTarget {
            host: "bad\0host".into(),
            port: 22,
            user: "u".into(),
            identity_file: "/x".into(),
            known_hosts_file: "/x".into(),
        };
        let Err(err) = connect(&t, Duration::from_secs(1)) else { panic!("connected") };
        assert_eq!(err.code, UNREACHABLE);
    }
}
