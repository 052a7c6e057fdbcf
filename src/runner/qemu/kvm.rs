//! Deciding between KVM and TCG.
//!
//! `/dev/kvm` existing proves little: on some hosts (nested virtualization)
//! it opens fine and a guest then spins forever. So KVM counts as usable only
//! when a real boot proves it: the same kernel, a busybox-only initramfs
//! whose `/init` writes `@probe-ok` to the control port and powers off,
//! within [`PROBE_TIMEOUT`] (a working KVM needs well under a second).
//!
//! A probe costs up to [`PROBE_TIMEOUT`] when KVM is broken, so verdicts are
//! cached: in this process, and in `kvm-probe.json` in the cache directory
//! keyed by the host's boot id and the QEMU binary and kernel used, so a
//! reboot or an upgrade probes again. A "not usable" verdict expires after
//! [`NEGATIVE_TTL`]: a probe that lost to a busy host should not pin TCG
//! until the next reboot. `AGENTPLANE_QEMU_ACCEL=tcg` skips KVM
//! altogether; `=kvm` trusts it without a probe.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::kernel::BootImage;
use super::{Accel, Ports, initramfs, qemu_command};

/// How long a KVM test boot may take before KVM counts as not working.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_FILE: &str = "kvm-probe.json";
const CACHE_VERSION: u32 = 2;
/// How long a cached "KVM does not work" holds.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(3600);

/// Whether KVM works here, and why (or why not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvmVerdict {
    pub usable: bool,
    pub reason: String,
}

impl KvmVerdict {
    fn no(reason: impl Into<String>) -> Self {
        KvmVerdict { usable: false, reason: reason.into() }
    }
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    version: u32,
    key: String,
    /// Seconds since the Unix epoch.
    checked_at: u64,
    verdict: KvmVerdict,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

static VERDICTS: Mutex<Option<HashMap<String, KvmVerdict>>> = Mutex::new(None);

/// Decide whether to use KVM for booting `boot` with `qemu`.
pub fn verdict(qemu: &Path, boot: &BootImage, busybox: &Path, cache: Option<&Path>) -> KvmVerdict {
    match std::env::var("AGENTPLANE_QEMU_ACCEL").ok().as_deref() {
        Some("tcg") => return KvmVerdict::no("AGENTPLANE_QEMU_ACCEL=tcg"),
        Some("kvm") => {
            return match device_check() {
                Ok(()) => KvmVerdict { usable: true, reason: "AGENTPLANE_QEMU_ACCEL=kvm (not probed)".into() },
                Err(why) => KvmVerdict::no(why),
            };
        }
        _ => {}
    }
    if let Err(why) = device_check() {
        return KvmVerdict::no(why);
    }
    let key = cache_key(qemu, &boot.source);
    if let Some(v) = VERDICTS.lock().ok().and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned())) {
        return v;
    }
    let from_disk = cache.and_then(|c| read_cache(c, &key));
    let v = from_disk.clone().unwrap_or_else(|| {
        probe(qemu, boot, busybox).unwrap_or_else(|e| KvmVerdict::no(format!("the KVM probe could not run: {e:#}")))
    });
    if from_disk.is_none()
        && let Some(c) = cache
    {
        // Best effort: without a cache the next process probes again.
        let _ = write_cache(c, &key, &v);
    }
    if let Ok(mut m) = VERDICTS.lock() {
        m.get_or_insert_with(HashMap::new).insert(key, v.clone());
    }
    v
}

/// `/dev/kvm` must exist and be openable read-write by this user.
fn device_check() -> Result<(), String> {
    let dev = Path::new("/dev/kvm");
    if !dev.exists() {
        return Err("/dev/kvm does not exist".into());
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map(drop)
        .map_err(|e| format!("cannot open /dev/kvm ({e}); is this user in the `kvm` group?"))
}

/// Boot the probe image under KVM and see whether userspace reports in time.
fn probe(qemu: &Path, boot: &BootImage, busybox: &Path) -> Result<KvmVerdict> {
    let dir = super::workdir::WorkDir::create("agentplane-kvm-probe-")?;
    let initrd = dir.path().join("probe.cpio");
    initramfs::write(&initrd, busybox, None)?;
    let ports = Ports::create(dir.path())?;
    let mut cmd = qemu_command(qemu, Accel::Kvm, 128, 1, boot, &initrd, "agentplane.probe=1", &ports, false);
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{}`", qemu.display()))?;
    let end = Instant::now() + PROBE_TIMEOUT;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let control = std::fs::read(&ports.control).unwrap_or_default();
    let ok = control.split(|&b| b == b'\n').any(|l| l == b"@probe-ok");
    Ok(match (status, ok) {
        (Some(_), true) => KvmVerdict { usable: true, reason: "a test boot under KVM reached userspace".into() },
        (None, _) => KvmVerdict::no(format!(
            "a test boot under KVM did not reach userspace within {} s",
            PROBE_TIMEOUT.as_secs()
        )),
        (Some(st), false) => {
            let log = std::fs::read_to_string(&ports.qemu_log).unwrap_or_default();
            let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no message");
            KvmVerdict::no(format!("QEMU under KVM exited ({st}) without reaching userspace: {last}"))
        }
    })
}

/// Identifies what a verdict depends on: this boot of the host, and the
/// QEMU binary and kernel image (path, size, modification time).
fn cache_key(qemu: &Path, kernel: &Path) -> String {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let stamp = |p: &Path| -> String {
        let full = crate::runner::contract::which(p).unwrap_or_else(|| p.to_path_buf());
        let meta = std::fs::metadata(&full).ok();
        let mtime = meta
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        format!("{}:{}:{}", full.display(), meta.map_or(0, |m| m.len()), mtime)
    };
    format!("{}|{}|{}", boot_id.trim(), stamp(qemu), stamp(kernel))
}

fn read_cache(dir: &Path, key: &str) -> Option<KvmVerdict> {
    let text = std::fs::read_to_string(dir.join(CACHE_FILE)).ok()?;
    let entry: CacheEntry = serde_json::from_str(&text).ok()?;
    let fresh = entry.verdict.usable || unix_now().saturating_sub(entry.checked_at) < NEGATIVE_TTL.as_secs();
    (entry.version == CACHE_VERSION && entry.key == key && fresh).then_some(entry.verdict)
}

fn write_cache(dir: &Path, key: &str, v: &KvmVerdict) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let entry = CacheEntry { version: CACHE_VERSION, key: key.to_string(), checked_at: unix_now(), verdict: v.clone() };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, &entry)?;
    tmp.persist(dir.join(CACHE_FILE))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_cache_round_trips_and_checks_its_key() {
        let d = tempfile::tempdir().unwrap();
        let v = KvmVerdict::no("hung");
        write_cache(d.path(), "k1", &v).unwrap();
        assert_eq!(read_cache(d.path(), "k1"), Some(v));
        assert_eq!(read_cache(d.path(), "k2"), None);
        std::fs::write(d.path().join(CACHE_FILE), "garbage").unwrap();
        assert_eq!(read_cache(d.path(), "k1"), None);
    }

    #[test]
    fn a_negative_verdict_expires_and_a_positive_one_lasts_the_boot() {
        let d = tempfile::tempdir().unwrap();
        let old = unix_now() - NEGATIVE_TTL.as_secs() - 1;
        for usable in [false, true] {
            let entry = CacheEntry {
                version: CACHE_VERSION,
                key: "k".into(),
                checked_at: old,
                verdict: KvmVerdict { usable, reason: "r".into() },
            };
            std::fs::write(d.path().join(CACHE_FILE), serde_json::to_string(&entry).unwrap()).unwrap();
            assert_eq!(read_cache(d.path(), "k").is_some(), usable);
        }
    }

    #[test]
    fn cache_key_changes_with_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "1").unwrap();
        std::fs::write(&b, "22").unwrap();
        assert_ne!(cache_key(Path::new("sh"), &a), cache_key(Path::new("sh"), &b));
        assert_eq!(cache_key(Path::new("sh"), &a), cache_key(Path::new("sh"), &a));
    }
}
