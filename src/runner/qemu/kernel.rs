//! Finding the kernel to boot, and booting it faster.
//!
//! Debian's `vmlinuz` is a bzImage whose payload is xz-compressed; under TCG
//! the guest spends about 3.5 s decompressing itself before Linux starts.
//! When the kernel carries a PVH entry point (`CONFIG_PVH`), QEMU can boot
//! the uncompressed ELF directly, so the host decompresses the payload once
//! (with `xz`, which handles the x86 BCJ filter the kernel build uses) and
//! keeps the ELF in the cache directory, keyed by the bzImage's sha256.
//! Anything unexpected along the way falls back to booting the bzImage as is.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::INSTALL_HINT;

/// The kernel to boot: the job's, else the newest `/boot/vmlinuz-*`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(k) = explicit {
        crate::fsx::open_regular(k, None)
            .with_context(|| format!("cannot read the kernel `{}` the bundle names", k.display()))?;
        return Ok(k.to_path_buf());
    }
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let ver = name.strip_prefix("vmlinuz-")?.to_string();
                    Some((ver, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    let Some((_, newest)) = found.pop() else {
        bail!("no kernel to boot: `/boot/vmlinuz-*` does not exist ({INSTALL_HINT})");
    };
    // Some distributions make kernels root-only; say so rather than fail later in QEMU.
    std::fs::File::open(&newest)
        .with_context(|| format!("cannot read the kernel `{}` (QEMU needs to read it)", newest.display()))?;
    Ok(newest)
}

/// Compare version-like strings with digit runs as numbers: `6.10` > `6.9`.
pub(crate) fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let b = s.as_bytes();
        for i in 1..=b.len() {
            if i == b.len() || b[i].is_ascii_digit() != b[start].is_ascii_digit() {
                out.push((b[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The parts of a bzImage header we use (Linux boot protocol ≥ 2.08).
#[derive(Debug)]
pub struct BzImage<'a> {
    /// The kernel release (`6.1.0-56-amd64`), from the header's version string.
    pub release: Option<String>,
    /// The compressed kernel, without the 4-byte size the build appends.
    pub payload: &'a [u8],
    /// The uncompressed size the build appended to the payload.
    pub uncompressed_size: u32,
}

pub fn parse_bzimage(d: &[u8]) -> Option<BzImage<'_>> {
    let u16_at = |o: usize| d.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| d.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if d.get(0x202..0x206)? != b"HdrS" || u16_at(0x206)? < 0x208 {
        return None;
    }
    let setup_sects = match *d.get(0x1f1)? {
        0 => 4,
        n => usize::from(n),
    };
    let release = u16_at(0x20e).and_then(|p| {
        let at = usize::from(p) + 0x200;
        let s = d.get(at..)?;
        let s = &s[..s.iter().position(|&b| b == 0 || b == b' ')?];
        String::from_utf8(s.to_vec()).ok().filter(|s| !s.is_empty())
    });
    let start = (setup_sects + 1) * 512 + usize::try_from(u32_at(0x248)?).ok()?;
    let len = usize::try_from(u32_at(0x24c)?).ok()?;
    let whole = d.get(start..start.checked_add(len)?)?;
    let (payload, size) = whole.split_at(whole.len().checked_sub(4)?);
    Some(BzImage { release, payload, uncompressed_size: u32::from_le_bytes(size.try_into().ok()?) })
}

/// Whether `elf` is a 64-bit little-endian ELF with a PVH entry note
/// (`Xen` note type 18, XEN_ELFNOTE_PHYS32_ENTRY), which QEMU needs to boot
/// an uncompressed kernel.
pub fn has_pvh_note(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| elf.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let u64_at =
        |o: usize| elf.get(o..o + 8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok());
    if elf.get(..6) != Some(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(ph) != Some(4) {
            continue; // not PT_NOTE
        }
        let (Some(off), Some(size)) = (u64_at(ph + 8), u64_at(ph + 32)) else {
            continue;
        };
        let mut p = off;
        let end = off.saturating_add(size);
        while p + 12 <= end {
            let (Some(namesz), Some(descsz), Some(kind)) = (u32_at(p), u32_at(p + 4), u32_at(p + 8)) else {
                break;
            };
            let name_at = p + 12;
            if kind == 18 && namesz == 4 && elf.get(name_at..name_at + 4) == Some(b"Xen\0") {
                return true;
            }
            p = name_at + namesz.div_ceil(4) * 4 + descsz.div_ceil(4) * 4;
        }
    }
    false
}

/// What QEMU's `-kernel` gets.
#[derive(Debug, Clone)]
pub struct BootImage {
    pub path: PathBuf,
    /// The kernel it was made from (what the bundle or `/boot` named).
    pub source: PathBuf,
    /// True when it is the host-decompressed ELF (PVH boot).
    pub uncompressed: bool,
    /// The kernel release read from the bzImage header, when it has one.
    pub release: Option<String>,
}

/// Pick the image to boot for `kernel`: a cached or freshly extracted ELF
/// when possible (`cache` is the cache directory, `scratch` the run's temp
/// dir used when there is no cache), else the kernel itself.
pub fn boot_image(kernel: &Path, cache: Option<&Path>, scratch: &Path) -> BootImage {
    let source = kernel.to_path_buf();
    let as_is =
        |release| BootImage { path: kernel.to_path_buf(), source: kernel.to_path_buf(), uncompressed: false, release };
    let Ok(data) = std::fs::read(kernel) else {
        return as_is(None);
    };
    let Some(bz) = parse_bzimage(&data) else {
        return as_is(None);
    };
    let release = bz.release.clone();
    if std::env::var_os("AGENTPLANE_QEMU_NO_ELF").is_some() {
        return as_is(release);
    }
    let digest = hex::encode(Sha256::digest(&data));
    let name = format!("vmlinux-{}.elf", &digest[..32]);
    let dir = cache.map(|c| c.join("kernels"));
    if let Some(hit) = dir.as_ref().map(|d| d.join(&name)).filter(|p| p.is_file()) {
        return BootImage { path: hit, source, uncompressed: true, release };
    }
    let Some(elf) = decompress(&bz) else {
        return as_is(release);
    };
    if !has_pvh_note(&elf) {
        return as_is(release);
    }
    let stored = dir.as_deref().and_then(|d| store(d, &name, &elf).ok()).or_else(|| {
        let p = scratch.join("vmlinux.elf");
        // In the run's private temp dir, private like everything there.
        let mut f = super::workdir::private_file(&p).ok()?;
        f.write_all(&elf).ok().map(|()| p)
    });
    match stored {
        Some(path) => BootImage { path, source, uncompressed: true, release },
        None => as_is(release),
    }
}

/// Decompress an xz payload with the host's `xz`; `None` if that is not possible.
fn decompress(bz: &BzImage<'_>) -> Option<Vec<u8>> {
    if !bz.payload.starts_with(b"\xfd7zXZ\0") {
        return None;
    }
    let mut child = Command::new("xz")
        .args(["--decompress", "--stdout", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    let payload = bz.payload.to_vec();
    // Feed from a thread: xz's output would otherwise fill the pipe and deadlock.
    let feeder = std::thread::spawn(move || stdin.write_all(&payload));
    let mut out = Vec::with_capacity(bz.uncompressed_size as usize);
    child.stdout.take()?.read_to_end(&mut out).ok()?;
    let fed = feeder.join().ok()?.is_ok();
    let ok = child.wait().ok()?.success();
    (fed && ok && out.len() == bz.uncompressed_size as usize).then_some(out)
}

/// Write `data` as `dir/name` atomically, and keep only the newest few kernels.
fn store(dir: &Path, name: &str, data: &[u8]) -> Result<PathBuf> {
    const KEEP: usize = 3;
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    let dest = dir.join(name);
    tmp.persist(&dest)?;
    let mut old: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".elf"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    old.sort();
    old.reverse();
    for (_, p) in old.into_iter().skip(KEEP) {
        let _ = std::fs::remove_file(p);
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_kernel_versions_naturally() {
        let mut v = vec!["6.10.0-1-amd64", "6.1.0-56-amd64", "6.9.2-amd64", "6.1.0-9-amd64"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-56-amd64", "6.9.2-amd64", "6.10.0-1-amd64"]);
    }

    fn fake_bzimage(payload: &[u8], size: u32) -> Vec<u8> {
        let mut d = vec![0u8; 0x1000];
        d[0x1f1] = 1; // setup_sects: protected-mode code at 2 * 512
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        d[0x20e..0x210].copy_from_slice(&0x100u16.to_le_bytes()); // version string at 0x300
        d[0x300..0x316].copy_from_slice(b"6.1.0-56-amd64 (x) #1\0");
        d[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        d[0x24c..0x250].copy_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
        let at = 1024 + 16;
        d[at..at + payload.len()].copy_from_slice(payload);
        d[at + payload.len()..at + payload.len() + 4].copy_from_slice(&size.to_le_bytes());
        d
    }

    #[test]
    fn reads_the_bzimage_header() {
        let d = fake_bzimage(b"\xfd7zXZ\0rest", 1234);
        let bz = parse_bzimage(&d).unwrap();
        assert_eq!(bz.release.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(bz.payload, b"\xfd7zXZ\0rest");
        assert_eq!(bz.uncompressed_size, 1234);
        assert!(parse_bzimage(&d[..0x100]).is_none());
        assert!(parse_bzimage(b"not a kernel").is_none());
        let mut bad = d.clone();
        bad[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_bzimage(&bad).is_none());
    }

    #[test]
    fn finds_the_pvh_note() {
        // ELF64 header, one PT_NOTE program header, two notes (GNU, then Xen 18).
        let mut e = vec![0u8; 0x200];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[0x40..0x44].copy_from_slice(&4u32.to_le_bytes());
        e[0x48..0x50].copy_from_slice(&0x100u64.to_le_bytes());
        let mut notes = Vec::new();
        for (name, kind, desc) in [(&b"GNU\0"[..], 3u32, &[1u8, 2, 3, 4, 5][..]), (b"Xen\0", 18, &[0; 4])] {
            notes.extend((name.len() as u32).to_le_bytes());
            notes.extend((desc.len() as u32).to_le_bytes());
            notes.extend(kind.to_le_bytes());
            notes.extend(name);
            notes.extend(desc);
            notes.resize(notes.len().div_ceil(4) * 4, 0);
        }
        e[0x60..0x68].copy_from_slice(&(notes.len() as u64).to_le_bytes());
        e[0x100..0x100 + notes.len()].copy_from_slice(&notes);
        assert!(has_pvh_note(&e));
        let mut other = e.clone();
        other[0x100 + 24 + 8] = 17; // the second note's type
        assert!(!has_pvh_note(&other));
        assert!(!has_pvh_note(&e[..0x80]));
        assert!(!has_pvh_note(b"\x7fELF\x01\x01"));
    }

    #[test]
    fn the_installed_kernel_boots_as_an_elf_when_xz_is_there() {
        // Exercises the real path on machines that have a Debian kernel.
        let Ok(kernel) = locate(None) else { return };
        let scratch = tempfile::tempdir().unwrap();
        let img = boot_image(&kernel, None, scratch.path());
        assert!(img.release.is_some());
        if img.uncompressed {
            assert!(has_pvh_note(&std::fs::read(&img.path).unwrap()));
        }
    }
}
