//! Resolving an SSH alias the way OpenSSH does (DESIGN §5): an inventory's
//! `sshRef` (or `ssh.host`) may be a `Host` alias of `~/.ssh/config` —
//! `Host` patterns, `HostName`, `User`, `Port`, `IdentityFile`,
//! `UserKnownHostsFile`, `Include` with globs, first value wins — and a name
//! `lima-<instance>` resolves through the file Lima writes for its instance,
//! `$LIMA_HOME/<instance>/ssh.config` (default `~/.lima`), when `~/.ssh/config`
//! does not define it. A Lima VM is just an SSH host; no Lima binary is needed.
//!
//! Parsing is `ssh2-config` (a maintained ssh_config parser with `Include`
//! support). `StrictHostKeyChecking` is read but never weakens agentplane:
//! host keys are always checked strictly against the known_hosts file.

use anyhow::{Context, Result};
use ssh2_config::{ParseRule, SshConfig};
use std::path::{Path, PathBuf};

use crate::types::SshTarget;

/// Where an alias was looked up and what it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub target: SshTarget,
    /// The file that defined the alias.
    pub file: PathBuf,
}

/// The places agentplane looks for an alias, for error messages.
pub fn search_path(alias: &str, home: &Path, lima_home: &Path) -> Vec<PathBuf> {
    let mut v = vec![home.join(".ssh/config")];
    if let Some(instance) = alias.strip_prefix("lima-").filter(|i| is_lima_instance(i)) {
        v.push(lima_home.join(instance).join("ssh.config"));
    }
    v
}

/// A Lima instance name: letters, digits, `-`, `_` and `.`, not starting with
/// `.` or `-` (so never a path out of `$LIMA_HOME`).
pub fn is_lima_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `$LIMA_HOME`, else `~/.lima`.
pub fn lima_home(home: &Path) -> PathBuf {
    std::env::var_os("LIMA_HOME").map(PathBuf::from).unwrap_or_else(|| home.join(".lima"))
}

/// Resolve `alias` for `user_default` (the login name when the config names
/// none). `Ok(None)`: no config file defines it (the caller treats it as a
/// host name).
pub fn resolve(alias: &str, home: &Path, lima_home: &Path, user_default: &str) -> Result<Option<Resolved>> {
    for file in search_path(alias, home, lima_home) {
        if !file.is_file() {
            continue;
        }
        let config = parse(&file, home)?;
        if !defines(&config, alias) {
            continue;
        }
        let p = config.query(alias);
        let expand = |s: &str| expand_tilde(s, home);
        let known = p
            .unsupported_fields
            .get("userknownhostsfile")
            .and_then(|v| v.first())
            .map(|s| expand(s))
            .unwrap_or_else(|| home.join(".ssh/known_hosts").display().to_string());
        let identity = p
            .identity_file
            .as_ref()
            .and_then(|v| v.first())
            .map(|p| expand(&p.display().to_string()))
            .unwrap_or_else(|| home.join(".ssh/id_ed25519").display().to_string());
        let target = SshTarget {
            host: p.host_name.clone().unwrap_or_else(|| alias.to_string()),
            port: p.port.unwrap_or(22),
            user: p.user.clone().unwrap_or_else(|| user_default.to_string()),
            identity_file: identity,
            known_hosts_file: known,
        };
        return Ok(Some(Resolved { target, file }));
    }
    Ok(None)
}

/// The most a config file, or a file it includes, may hold.
const FILE_CAP: u64 = 1024 * 1024;
/// How deep `Include`s may nest (OpenSSH's own limit).
const INCLUDE_DEPTH: usize = 16;

/// A config file, read as a regular file with a cap, parsed with `home` for `~` and `Include`.
fn parse(file: &Path, home: &Path) -> Result<SshConfig> {
    let bytes = crate::fsx::read_regular(file, FILE_CAP).with_context(|| "cannot read an ssh config file")?;
    check_includes(&bytes, file, home, &mut vec![file.to_path_buf()])?;
    let mut reader = std::io::BufReader::new(bytes.as_slice());
    SshConfig::default()
        .home_dir(home)
        .parse(&mut reader, ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS)
        .map_err(|e| anyhow::anyhow!("`{}` is not a valid ssh config: {e}", file.display()))
}

/// Every file an `Include` of `text` (the contents of `file`) reaches, and
/// those they include, judged before the parser opens them: it opens them
/// with a plain `open` and reads lines, so a FIFO there would hang `place`
/// and `/dev/zero` would fill memory with one endless line. Each must be a
/// regular file (links followed, as OpenSSH follows them: dotfile managers
/// link configs) of at most [`FILE_CAP`]. `stack`: the files being read, so
/// that a cycle is left to the parser, which names it.
fn check_includes(text: &[u8], file: &Path, home: &Path, stack: &mut Vec<PathBuf>) -> Result<()> {
    for line in String::from_utf8_lossy(text).lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let (key, args) = line.split_once(|c: char| c.is_whitespace() || c == '=').unwrap_or((line, ""));
        if !key.eq_ignore_ascii_case("include") {
            continue;
        }
        if stack.len() > INCLUDE_DEPTH {
            anyhow::bail!("`{}` nests `Include` deeper than {INCLUDE_DEPTH} files", file.display());
        }
        let args = args.trim_start_matches(|c: char| c.is_whitespace() || c == '=');
        for arg in args.split_whitespace().map(|a| a.trim_matches('"')) {
            let pattern = match arg.strip_prefix("~/") {
                _ if arg.starts_with('/') => arg.to_string(),
                Some(rest) => format!("{}/{rest}", glob::Pattern::escape(&home.display().to_string())),
                None => format!("{}/.ssh/{arg}", glob::Pattern::escape(&home.display().to_string())),
            };
            let Ok(paths) = glob::glob(&pattern) else { continue }; // the parser names a bad pattern
            for path in paths.flatten() {
                let Ok(real) = std::fs::canonicalize(&path) else { continue };
                if stack.contains(&real) {
                    continue;
                }
                let bytes = crate::fsx::read_regular(&real, FILE_CAP).map_err(|e| {
                    anyhow::anyhow!(
                        "`{}` includes `{}`, which agentplane will not read: {e}",
                        file.display(),
                        path.display()
                    )
                })?;
                stack.push(real);
                check_includes(&bytes, &path, home, stack)?;
                stack.pop();
            }
        }
    }
    Ok(())
}

/// Whether a `Host` block other than a catch-all names `alias`.
fn defines(config: &SshConfig, alias: &str) -> bool {
    config
        .get_hosts()
        .iter()
        .any(|h| h.intersects(alias) && h.pattern.iter().any(|c| !c.negated && c.pattern.chars().any(|ch| ch != '*')))
}

/// `~/x` → `<home>/x`; anything else unchanged.
fn expand_tilde(s: &str, home: &Path) -> String {
    match s.strip_prefix("~/") {
        Some(rest) => home.join(rest).display().to_string(),
        None if s == "~" => home.display().to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn an_alias_resolves_through_ssh_config_with_includes() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        write(
            &home.join(".ssh/config"),
            "Include conf.d/*.conf\n\nHost *\n  User fallback\n  IdentityFile ~/.ssh/id_default\n",
        );
        write(
            &home.join(".ssh/conf.d/builder.conf"),
            "Host builder builder-alt\n  HostName 127.0.0.1\n  Port 2222\n  User agent\n  IdentityFile ~/.ssh/builder_key\n  UserKnownHostsFile ~/.ssh/builder_known\n  StrictHostKeyChecking no\n",
        );
        let r = resolve("builder", home, &home.join(".lima"), "me").unwrap().unwrap();
        assert_eq!(r.file, home.join(".ssh/config"));
        assert_eq!(r.target.host, "127.0.0.1");
        assert_eq!(r.target.port, 2222);
        assert_eq!(r.target.user, "agent");
        assert_eq!(r.target.identity_file, home.join(".ssh/builder_key").display().to_string());
        assert_eq!(r.target.known_hosts_file, home.join(".ssh/builder_known").display().to_string());
        // Only the catch-all matches: not defined, so a plain host name.
        assert_eq!(resolve("example.org", home, &home.join(".lima"), "me").unwrap(), None);
    }

    /// The parser opens included files itself: a FIFO, a device or a huge
    /// file among them, even one include down, is refused before it runs,
    /// never a hang or a fill of memory. A linked include is followed, and a
    /// cycle is still the parser's to name.
    #[test]
    fn an_include_of_anything_but_a_small_regular_file_is_refused_unread() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        let fifo = home.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        std::fs::File::create(home.join("huge")).unwrap().set_len(1 << 30).unwrap();
        write(&home.join(".ssh/real.conf"), "Host linked\n  HostName 127.0.0.2\n");
        std::os::unix::fs::symlink(home.join(".ssh/real.conf"), home.join(".ssh/linked.conf")).unwrap();
        let cases = [
            (format!("Include {}", fifo.display()), Some("is a FIFO")),
            ("Include=/dev/zero".to_string(), Some("is a device")),
            ("Include ~/huge".to_string(), Some("1073741824 bytes, over the 1048576-byte limit")),
            // One include down: conf.d/a.conf includes the FIFO.
            ("Include conf.d/*.conf".to_string(), Some("is a FIFO")),
            ("Include linked.conf".to_string(), None),
            ("Include config".to_string(), Some("include cycle")),
        ];
        write(&home.join(".ssh/conf.d/a.conf"), &format!("Host a\n  Include {}\n", fifo.display()));
        for (include, refused) in cases {
            write(&home.join(".ssh/config"), &format!("Host x\n  HostName 127.0.0.1\n{include}\n"));
            match (resolve("x", home, &home.join(".lima"), "me"), refused) {
                (Err(e), Some(why)) => assert!(format!("{e:#}").contains(why), "{include}: {e:#}"),
                (Ok(r), None) => assert_eq!(r.unwrap().target.host, "127.0.0.1", "{include}"),
                (got, _) => panic!("{include}: {got:?}"),
            }
        }
        write(&home.join(".ssh/config"), "Include linked.conf\n");
        assert_eq!(resolve("linked", home, &home.join(".lima"), "me").unwrap().unwrap().target.host, "127.0.0.2");
    }

    #[test]
    fn a_lima_instance_resolves_through_its_ssh_config() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path();
        let lima = home.join("lima-home");
        write(
            &lima.join("nixbuilder/ssh.config"),
            "Host lima-nixbuilder\n  IdentityFile \"/keys/lima\"\n  User lima\n  Hostname 127.0.0.1\n  Port 60022\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n",
        );
        let r = resolve("lima-nixbuilder", home, &lima, "me").unwrap().unwrap();
        assert_eq!(r.file, lima.join("nixbuilder/ssh.config"));
        assert_eq!((r.target.host.as_str(), r.target.port, r.target.user.as_str()), ("127.0.0.1", 60022, "lima"));
        assert_eq!(search_path("lima-x", home, &lima), vec![home.join(".ssh/config"), lima.join("x/ssh.config")]);
        assert_eq!(resolve("lima-other", home, &lima, "me").unwrap(), None);
    }

    #[test]
    fn lima_instance_names_never_leave_lima_home() {
        for ok in ["default", "nixbuilder", "k8s-1.30", "a_b"] {
            assert!(is_lima_instance(ok), "{ok}");
        }
        for bad in ["", "..", "../etc", "a/b", ".hidden", "-x", "a b", "x\n"] {
            assert!(!is_lima_instance(bad), "{bad:?}");
        }
        let home = Path::new("/h");
        let lima = Path::new("/h/.lima");
        assert_eq!(search_path("lima-../../etc", home, lima), vec![home.join(".ssh/config")]);
    }
}
