//! Moving files and directory trees over SFTP, permission bits kept.

use anyhow::{Context, Result, bail};
use ssh2::{Session, Sftp};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use super::exec_ok;
use crate::runner::contract::shell_quote;

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
    let total = pump(&mut src, &mut dst, &format!("`{}`", local.display()), &format!("remote `{}`", remote.display()))?;
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
                let Some(size) = stat.size else {
                    bail!("the host did not say how large remote `{}` is", path.display());
                };
                report.bytes += download_file(sftp, &path, &dst, mode, size)?;
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

/// Download one file of `size` bytes (as the host listed it). No more than
/// `size + 1` bytes are read: a host that keeps sending (a hostile or broken
/// one) is an error once past the size it stated, never a disk filled.
fn download_file(sftp: &Sftp, remote: &Path, local: &Path, mode: u32, size: u64) -> Result<u64> {
    let src = sftp.open(remote).with_context(|| format!("cannot open remote `{}`", remote.display()))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(local)
        .with_context(|| format!("cannot create `{}`", local.display()))?;
    let total =
        pump_listed(src, &mut dst, size, &format!("remote `{}`", remote.display()), &format!("`{}`", local.display()))?;
    dst.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of `{}`", local.display()))?;
    Ok(total)
}

/// [`pump`] for a source listed at `size` bytes: an error once it sends more.
fn pump_listed(src: impl Read, dst: &mut impl Write, size: u64, from: &str, to: &str) -> Result<u64> {
    let total = pump(&mut src.take(size.saturating_add(1)), dst, from, to)?;
    if total > size {
        bail!("{from} grew past the {size} bytes the host listed while it was copied");
    }
    Ok(total)
}

/// Copy `src` (named `from` in errors) to `dst` (`to`); the bytes copied.
/// Big buffers let libssh2 pipeline several SFTP packets per call.
fn pump(src: &mut impl Read, dst: &mut impl Write, from: &str, to: &str) -> Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("cannot read {from}"))?;
        if n == 0 {
            return Ok(total);
        }
        dst.write_all(&buf[..n]).with_context(|| format!("cannot write {to}"))?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_stops_one_byte_past_the_size_the_host_listed() {
        let mut out = Vec::new();
        assert_eq!(pump_listed(&b"hello"[..], &mut out, 5, "remote `f`", "`f`").unwrap(), 5);
        assert_eq!(out, b"hello");
        // A host that keeps sending: never read (or written) past size + 1.
        let mut out = Vec::new();
        let e = pump_listed(std::io::repeat(b'y'), &mut out, 5, "remote `f`", "`f`").unwrap_err();
        assert!(e.to_string().contains("grew past the 5 bytes the host listed"), "{e}");
        assert_eq!(out.len(), 6);
    }
}
