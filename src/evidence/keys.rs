//! ed25519 signing keys: generation, PEM files, key ids, and where to find them.

use anyhow::{Context, Result};
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::fmt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::Problem;

/// Where a key is looked for when none is named (under the root).
pub const DEFAULT_KEY_PREFIX: &str = ".agentplane/keys/signing";
/// The environment variable naming the signing key file.
pub const KEY_ENV: &str = "AGENTPLANE_SIGNING_KEY";

/// Key id: lowercase hex sha256 of the raw 32-byte public key.
pub fn key_id(key: &VerifyingKey) -> String {
    crate::fsx::sha256_hex(key.as_bytes())
}

/// A private signing key. Its `Debug` shows the key id only; the secret
/// scalar is zeroized on drop (ed25519-dalek's `zeroize` feature).
pub struct Signer {
    key: SigningKey,
    id: String,
    pub path: PathBuf,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("key_id", &self.id).field("path", &self.path).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn key_id(&self) -> &str {
        &self.id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.key.sign(msg).to_bytes()
    }

    /// Load a PKCS#8 PEM private key, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Signer> {
        let meta = std::fs::metadata(path).map_err(|e| {
            Problem::error(format!("cannot read signing key `{}`: {e}", path.display()))
                .hint("create one with `agentplane keygen`, or name one with --key or AGENTPLANE_SIGNING_KEY")
        })?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(Problem::error(format!(
                "signing key `{}` is readable by others (mode {:o})",
                path.display(),
                mode & 0o777
            ))
            .hint(format!("run `chmod 600 {}`", path.display()))
            .into());
        }
        let bytes = zeroize::Zeroizing::new(read_key_file(
            path,
            "signing key",
            "a signing key is a PKCS#8 PEM file made by `agentplane keygen`",
        )?);
        let pem = std::str::from_utf8(&bytes).map_err(|_| {
            Problem::error(format!("`{}` is not an ed25519 PKCS#8 PEM private key: not text", path.display()))
                .hint("a signing key is a PKCS#8 PEM file made by `agentplane keygen` (`-----BEGIN PRIVATE KEY-----`)")
        })?;
        if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(Problem::error(format!("`{}` is an encrypted private key", path.display()))
                .hint(format!(
                    "encrypted keys are not supported: decrypt with `openssl pkey -in {} -out plain.key`",
                    path.display()
                ))
                .into());
        }
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| {
            let what = match key_type(pem) {
                Some(t) => format!("it holds {t} key, not an ed25519 one"),
                None => e.to_string(),
            };
            Problem::error(format!("`{}` is not an ed25519 PKCS#8 PEM private key: {what}", path.display()))
                .hint("a signing key is a PKCS#8 PEM file made by `agentplane keygen` (`-----BEGIN PRIVATE KEY-----`)")
        })?;
        let id = key_id(&key.verifying_key());
        Ok(Signer { key, id, path: path.to_path_buf() })
    }

    /// Find the signing key: `--key`, else `$AGENTPLANE_SIGNING_KEY`, else the default under the root.
    pub fn find(root: &Path, flag: Option<&Path>) -> Result<Signer> {
        if let Some(p) = flag {
            return Signer::load(p);
        }
        if let Some(p) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
            return Signer::load(Path::new(&p));
        }
        let default = root.join(format!("{DEFAULT_KEY_PREFIX}.key"));
        if default.exists() {
            return Signer::load(&default);
        }
        Err(Problem::error("no signing key: evidence must be signed")
            .hint(format!(
                "run `agentplane keygen` to create `{}`, or pass --key PATH / set {KEY_ENV}",
                default.display()
            ))
            .into())
    }
}

/// The algorithm a PKCS#8 PEM private key holds, named for people, when it is
/// one of the common ones that are not ed25519.
fn key_type(pem: &str) -> Option<&'static str> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()?;
    // The DER encodings of the algorithm identifiers (only to name what was
    // found in an error message; the key itself is never parsed this way).
    const KNOWN: &[(&[u8], &str)] = &[
        (&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01], "an RSA"),
        (&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01], "an EC (ECDSA)"),
        (&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01], "a DSA"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6e], "an X25519"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x6f], "an X448"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x71], "an Ed448"),
    ];
    KNOWN.iter().find(|(oid, _)| der.windows(oid.len()).any(|w| w == *oid)).map(|(_, name)| *name)
}

/// Generate a key pair at `PREFIX.key` (0600) and `PREFIX.pub`. Never overwrites.
pub fn generate(prefix: &Path) -> Result<(String, PathBuf, PathBuf)> {
    let key_path = PathBuf::from(format!("{}.key", prefix.display()));
    let pub_path = PathBuf::from(format!("{}.pub", prefix.display()));
    for p in [&key_path, &pub_path] {
        if p.exists() {
            return Err(Problem::error(format!("`{}` already exists; agentplane never overwrites a key", p.display()))
                .hint("choose another --out prefix, or remove the old key yourself")
                .into());
        }
    }
    if let Some(dir) = key_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut()).map_err(|e| anyhow::anyhow!("the OS random source is unavailable: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    // PKCS#8 v1 (RFC 5208, no public key attached): what `openssl genpkey`
    // writes and what OpenSSL 3.0, Python `cryptography`, Node and ssh-keygen
    // read. (ed25519-dalek's own encoder writes v2, which they reject.)
    let pem = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.to_bytes(), public_key: None }
        .to_pkcs8_pem(Default::default())
        .context("cannot encode the private key")?;
    let public = key.verifying_key().to_public_key_pem(Default::default()).context("cannot encode the public key")?;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .with_context(|| format!("cannot create `{}`", key_path.display()))?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
    }
    crate::fsx::write_atomic(&pub_path, public.as_bytes())?;
    Ok((key_id(&key.verifying_key()), key_path, pub_path))
}

/// A public key an auditor trusts.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub id: String,
    pub key: VerifyingKey,
    pub path: PathBuf,
}

/// Read a key file named by the user: the path may go through symlinks
/// (they named it), but the file itself must be a regular file of at most
/// [`crate::fsx::caps::KEY`] bytes, so a FIFO or device never hangs or floods.
fn read_key_file(path: &Path, what: &str, hint: &str) -> Result<Vec<u8>> {
    let problem = |why: String| Problem::error(format!("cannot read {what} `{}`: {why}", path.display())).hint(hint);
    let real = std::fs::canonicalize(path).map_err(|e| problem(e.to_string()))?;
    let bytes = crate::fsx::read_regular(&real, crate::fsx::caps::KEY).map_err(|e| match e.kind {
        Some(k) => problem(format!("it {k}")),
        None => problem(e.io.map_or_else(|| "unreadable".into(), |io| io.to_string())),
    })?;
    Ok(bytes)
}

/// Load an SPKI PEM public key, refusing a weak (small-order) one: with such
/// a key, signatures verify for messages nobody signed.
pub fn load_public(path: &Path) -> Result<TrustedKey> {
    let hint = "a trusted key is the `.pub` file `agentplane keygen` wrote (SPKI PEM)";
    let bytes = read_key_file(path, "trusted key", hint)?;
    let pem = String::from_utf8(bytes).map_err(|_| {
        Problem::error(format!("`{}` is not an ed25519 SPKI PEM public key: not text", path.display()))
            .hint("pass the `.pub` file (`-----BEGIN PUBLIC KEY-----`), not the private key")
    })?;
    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        Problem::error(format!("`{}` is not an ed25519 SPKI PEM public key: {e}", path.display()))
            .hint("pass the `.pub` file (`-----BEGIN PUBLIC KEY-----`), not the private key")
    })?;
    if key.is_weak() {
        return Err(Problem::error(format!(
            "trusted key `{}` is a weak ed25519 key (a point of small order): anyone can forge signatures for it",
            path.display()
        ))
        .hint("trust the `.pub` file written by `agentplane keygen` for the key that signed the evidence")
        .into());
    }
    Ok(TrustedKey { id: key_id(&key), key, path: path.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_material() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("k");
        let (id, key_path, _) = generate(&prefix).unwrap();
        let signer = Signer::load(&key_path).unwrap();
        let dbg = format!("{signer:?}");
        assert!(dbg.contains(&id));
        let pem = std::fs::read_to_string(&key_path).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!dbg.contains(&body));
        assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_weak_trusted_key_is_refused_with_exit_2() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("weak.pub");
        let mut b = [0u8; 32];
        b[0] = 1; // the identity point
        let pem = VerifyingKey::from_bytes(&b).unwrap().to_public_key_pem(Default::default()).unwrap();
        std::fs::write(&p, pem).unwrap();
        let err = load_public(&p).unwrap_err();
        assert_eq!(crate::error::exit_of(&err), crate::exit::Exit::Error);
        assert!(err.to_string().contains("weak"), "{err}");
        assert!(crate::error::hint_of(&err).is_some());
    }

    #[test]
    fn a_fifo_as_a_key_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pub");
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = load_public(&p).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
        assert_eq!(crate::error::exit_of(&err), crate::exit::Exit::Error);
    }
}
