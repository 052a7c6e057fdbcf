//! known_hosts, read by agentplane: markers handled, entries checked
//! strictly (OpenSSH's `StrictHostKeyChecking yes`), never written.

use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};
use std::path::{Path, PathBuf};

use super::{HOST_KEY_CHANGED, HOST_KEY_UNKNOWN, SshFailure, UNREACHABLE};
use crate::types::SshTarget;

/// A known_hosts file, read by us rather than by libssh2's `read_file`.
///
/// libssh2 knows no markers: it would read `@revoked HOST KEY` as an entry
/// for a host literally named `@revoked` (so a revoked key would pass), and
/// `@cert-authority` lines likewise. Markers are handled here (revoked keys
/// refused, CA lines skipped: no host certificates), and plain entries are
/// fed to libssh2 one line at a time, only those of the presented key type.
pub(super) struct KnownHostsFile {
    path: PathBuf,
    /// Non-marker lines: (host field, key type, base64 key).
    entries: Vec<(String, String, String)>,
    /// Base64 blobs of keys marked `@revoked`.
    revoked: Vec<String>,
}

impl KnownHostsFile {
    pub(super) fn load(path: &Path) -> Result<Self, String> {
        // A regular file (links followed, as OpenSSH follows them) of at most
        // 16 MiB: a FIFO named as known_hosts fails instead of hanging the probe.
        let bytes = crate::fsx::read_regular_followed(path, crate::fsx::caps::DOCUMENT)
            .map_err(|e| format!("cannot read known_hosts `{}`: {e}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
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
    pub(super) fn key_types_for(&self, host: &str, port: u16) -> Vec<String> {
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
pub(super) fn prefer_host_key_types(session: &Session, types: &[String]) {
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
pub(super) fn check_host_key(
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

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::write(
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
        // A FIFO (or a link to one) fails at once instead of hanging the probe;
        // a link to a real known_hosts is followed.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::os::unix::fs::symlink(&fifo, dir.path().join("to-fifo")).unwrap();
        for name in ["fifo", "to-fifo"] {
            let e = KnownHostsFile::load(&dir.path().join(name)).err().unwrap();
            assert!(e.contains("is a FIFO"), "{e}");
        }
        assert!(KnownHostsFile::load(Path::new("/dev/zero")).err().unwrap().contains("is a device"));
        std::os::unix::fs::symlink(&p, dir.path().join("linked")).unwrap();
        assert_eq!(KnownHostsFile::load(&dir.path().join("linked")).unwrap().entries.len(), 4);
    }
}
