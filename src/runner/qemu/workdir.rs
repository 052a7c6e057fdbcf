//! The VM's temp dir: private, owned, and swept when its owner died.
//!
//! The initramfs holds the governed environment and the run's secrets
//! (`/agentplane/env`), and the serial-port files carry the script's output,
//! so the dir is created 0700 and every file in it 0600, set explicitly
//! (`fchmod`, not left to the umask).
//!
//! A dir outlives its run only when agentplane is killed (`kill -9`): QEMU dies
//! with it (see `qemu_command`), but nothing removes the dir. So each dir
//! holds an [`OWNER`] file naming the agentplane process that made it (pid,
//! start time, so a recycled pid does not count as alive, and PID namespace),
//! and creating a new dir first removes those siblings with the same prefix
//! whose owner is gone
//! (killing first a `qemu-system` still naming the dir, should one have
//! outlived its owner where `setpriv` was missing).
//! A dir without a readable owner file, written in another PID namespace, not
//! ours (uid), or not named with the prefix is never touched.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The owner marker inside every temp dir: `PID STARTTIME\n`.
pub const OWNER: &str = "agentplane.owner";

/// Create `path` as a new, private (0600) file, whatever the umask.
pub fn private_file(path: &Path) -> Result<File> {
    let f = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    // The umask can only take bits away; fchmod states the mode outright.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make `{}` private", path.display()))?;
    Ok(f)
}

/// `(pid, start time in clock ticks since boot, PID namespace)` of this
/// process: what [`OWNER`] holds.
fn me() -> (i32, u64, u64) {
    let pid = std::process::id() as i32;
    (pid, start_time(pid).unwrap_or(0), pid_ns().unwrap_or(0))
}

/// The inode of this process's PID namespace (`pid:[4026531836]`): a pid in
/// an owner marker means something only in the namespace that wrote it.
fn pid_ns() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    link.to_str()?.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// Fields 3.. of `/proc/PID/stat` (state first), after the command name,
/// which may hold spaces and parentheses.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(s.get(s.rfind(')')? + 2..)?.split(' ').map(str::to_string).collect())
}

/// Field 22 of `/proc/PID/stat`: when the process started (clock ticks since boot).
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether process `pid` is alive (`kill(pid, 0)`, and not a zombie in
/// `/proc`) and is the one that started at `started` (`None`: any).
pub fn alive(pid: i32, started: Option<u64>) -> bool {
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let Some(f) = stat_fields(pid) else {
        return false;
    };
    let zombie = f.first().is_some_and(|s| s == "Z" || s == "X");
    !zombie && started.is_none_or(|t| f.get(19).and_then(|v| v.parse::<u64>().ok()) == Some(t))
}

/// Live QEMU processes (`qemu-system-*`) whose command line names a file
/// in `dir`: the VM of the run that owns `dir`, whatever its pid.
pub fn vms_using(dir: &Path) -> Vec<i32> {
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| {
                let argv0 = c.split(|&b| b == 0).next().unwrap_or_default();
                let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
                name.starts_with(b"qemu-system") && c.windows(needle.len()).any(|w| w == needle.as_slice())
            })
        })
        .filter(|&p| alive(p, None))
        .collect()
}

/// Whether the owner named by `marker` (an [`OWNER`] file's text) is gone:
/// `None` when the marker cannot be read as one, or was written in another
/// PID namespace (another container sharing the temp dir), whose pids this
/// process cannot see: then the dir is left alone.
fn owner_gone(marker: &str) -> Option<bool> {
    let mut it = marker.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let started: u64 = it.next()?.parse().ok()?;
    let ns: u64 = it.next()?.parse().ok()?;
    if it.next().is_some() || pid <= 0 || Some(ns) != pid_ns() {
        return None;
    }
    Some(start_time(pid) != Some(started))
}

/// A private temp dir for one VM run (or probe), removed on drop.
pub struct WorkDir {
    dir: tempfile::TempDir,
}

impl WorkDir {
    /// Sweep dead siblings in the temp dir, then make a new 0700 dir named
    /// `prefix…` holding the owner marker.
    pub fn create(prefix: &str) -> Result<WorkDir> {
        WorkDir::create_in(&std::env::temp_dir(), prefix)
    }

    pub fn create_in(parent: &Path, prefix: &str) -> Result<WorkDir> {
        sweep(parent, prefix);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .context("cannot create a temp dir for the VM")?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .context("cannot make the VM's temp dir private")?;
        // Written under another name and renamed, so a sweeper never reads half a marker.
        let (pid, started, ns) = me();
        let tmp = dir.path().join(format!(".{OWNER}"));
        let mut f = private_file(&tmp)?;
        f.write_all(format!("{pid} {started} {ns}\n").as_bytes()).context("cannot write the temp dir's owner")?;
        drop(f);
        std::fs::rename(&tmp, dir.path().join(OWNER)).context("cannot write the temp dir's owner")?;
        Ok(WorkDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Remove the dir now, reporting a failure.
    pub fn close(self) -> Result<()> {
        self.dir.close().context("cannot remove the VM's temp dir")
    }
}

/// Remove the dirs in `parent` named `prefix…`, owned by this user, whose
/// [`OWNER`] names a process that is gone. Returns what was removed.
pub fn sweep(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(parent) else {
        return removed;
    };
    for e in rd.flatten() {
        if !e.file_name().to_str().is_some_and(|n| n.starts_with(prefix) && n.len() > prefix.len()) {
            continue;
        }
        let path = e.path();
        // symlink_metadata: a link named like ours is not ours to follow.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        let Ok(marker) = std::fs::read_to_string(path.join(OWNER)) else {
            continue;
        };
        if owner_gone(&marker) != Some(true) {
            continue;
        }
        // A VM that outlived its owner (no `setpriv` where it ran) goes with its files.
        for pid in vms_using(&path) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_dir_and_its_files_are_private() {
        let parent = tempfile::tempdir().unwrap();
        // (The umask is left alone: changing it would race other tests' files.)
        let w = WorkDir::create_in(parent.path(), "agentplane-vm-").unwrap();
        private_file(&w.path().join("x")).unwrap();
        assert_eq!(mode(w.path()), 0o700);
        assert_eq!(mode(&w.path().join("x")), 0o600);
        assert_eq!(mode(&w.path().join(OWNER)), 0o600);
        let marker = std::fs::read_to_string(w.path().join(OWNER)).unwrap();
        assert_eq!(owner_gone(&marker), Some(false), "{marker}");
        assert!(private_file(&w.path().join("x")).is_err(), "never reuses an existing file");
    }

    #[test]
    fn alive_tells_the_same_process_from_a_recycled_pid_and_the_dead() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(alive(me, Some(t)) && alive(me, None));
        assert!(!alive(me, Some(t + 1)), "another start time: a recycled pid");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!alive(pid, None));
        assert!(vms_using(Path::new("/nonexistent/agentplane-vm-x")).is_empty());
    }

    #[test]
    fn a_dead_owners_dir_is_swept_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let p = parent.path();
        // A pid that is certainly gone: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mk = |name: &str, marker: Option<String>| {
            let d = p.join(name);
            std::fs::create_dir(&d).unwrap();
            std::fs::write(d.join("initramfs.cpio"), "x").unwrap();
            if let Some(m) = marker {
                std::fs::write(d.join(OWNER), m).unwrap();
            }
            d
        };
        let (pid, started, ns) = me();
        let stale = mk("agentplane-vm-stale", Some(format!("{dead} 12345 {ns}\n")));
        // Our own pid with another start time: the pid was recycled, the owner is gone.
        let recycled = mk("agentplane-vm-recycled", Some(format!("{pid} {} {ns}\n", started + 1)));
        let live = mk("agentplane-vm-live", Some(format!("{pid} {started} {ns}\n")));
        let unmarked = mk("agentplane-vm-unmarked", None);
        let garbled = mk("agentplane-vm-garbled", Some("12".into()));
        // Written in another PID namespace: its pids mean nothing here.
        let foreign = mk("agentplane-vm-foreign", Some(format!("{dead} 12345 {}\n", ns + 1)));
        let other = mk("someone-else-stale", Some(format!("{dead} 12345 {ns}\n")));
        let mut removed = sweep(p, "agentplane-vm-");
        removed.sort();
        let mut want = vec![recycled.clone(), stale.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(!stale.exists() && !recycled.exists());
        for kept in [&live, &unmarked, &garbled, &foreign, &other] {
            assert!(kept.exists(), "{} was removed", kept.display());
        }
        // Creating a new dir sweeps too.
        let stale2 = mk("agentplane-vm-stale2", Some(format!("{dead} 1 {ns}\n")));
        let w = WorkDir::create_in(p, "agentplane-vm-").unwrap();
        assert!(!stale2.exists());
        assert!(live.exists() && w.path().exists());
    }
}
