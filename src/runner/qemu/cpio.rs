//! A writer for the `newc` cpio format, the one the Linux kernel unpacks as
//! an initramfs (see the kernel's `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex
//! fields), the NUL-terminated name padded to 4 bytes, then the data padded
//! to 4 bytes; the archive ends with an entry named `TRAILER!!!`. Owners are
//! root and times are zero, so the same inputs give the same bytes.

use std::io::{self, Read, Write};

const MAGIC: &str = "070701";
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Streams entries into `out`. Parents must be added before their children:
/// the kernel does not create missing directories.
pub struct NewcWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> NewcWriter<W> {
    pub fn new(out: W) -> Self {
        NewcWriter { out, next_ino: 1, written: 0 }
    }

    pub fn dir(&mut self, name: &[u8], perm: u32) -> io::Result<()> {
        self.header(name, S_IFDIR | (perm & 0o7777), 2, 0, (0, 0))?;
        Ok(())
    }

    pub fn file(&mut self, name: &[u8], perm: u32, data: &[u8]) -> io::Result<()> {
        self.file_from(name, perm, data.len() as u64, &mut &data[..])
    }

    /// A regular file of exactly `size` bytes read from `data`.
    pub fn file_from(&mut self, name: &[u8], perm: u32, size: u64, data: &mut dyn Read) -> io::Result<()> {
        let size32 = u32::try_from(size)
            .map_err(|_| io::Error::other("file larger than 4 GiB (the newc size field is 32 bits)"))?;
        self.header(name, S_IFREG | (perm & 0o7777), 1, size32, (0, 0))?;
        let copied = io::copy(&mut data.take(size), &mut self.out)?;
        if copied != size {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while it was being archived"));
        }
        self.written += copied;
        self.pad()
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> io::Result<()> {
        let len = u32::try_from(target.len()).map_err(|_| io::Error::other("symlink target too long"))?;
        self.header(name, S_IFLNK | 0o777, 1, len, (0, 0))?;
        self.put(target)?;
        self.pad()
    }

    pub fn char_device(&mut self, name: &[u8], perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(name, S_IFCHR | (perm & 0o7777), 1, 0, (major, minor))
    }

    /// Write the trailer and hand back the sink.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(b"TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, name: &[u8], mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) -> io::Result<()> {
        if name.is_empty() || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cpio entry names must be non-empty and free of NUL bytes",
            ));
        }
        let namesize = u32::try_from(name.len() + 1).map_err(|_| io::Error::other("cpio entry name too long"))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        let mut h = String::with_capacity(110);
        h.push_str(MAGIC);
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name)?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    /// Align to the next multiple of 4, as newc requires after names and data.
    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed entry: name, mode, data, (rdev major, minor).
    type Entry = (String, u32, Vec<u8>, (u32, u32));

    /// Parse an archive back into entries: an independent reading of the
    /// format, to check the writer against.
    fn parse(mut b: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut off = 0usize;
        loop {
            assert_eq!(&b[..6], b"070701", "magic at offset {off}");
            let field =
                |i: usize| u32::from_str_radix(std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).unwrap(), 16).unwrap();
            let (mode, size, namesize) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            assert_eq!(b[110 + namesize - 1], 0);
            let data_at = (110 + namesize).div_ceil(4) * 4;
            let data = b[data_at..data_at + size].to_vec();
            let next = (data_at + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                assert_eq!(next, b.len());
                return out;
            }
            out.push((name, mode, data, rdev));
            off += next;
            b = &b[next..];
        }
    }

    #[test]
    fn round_trips_every_entry_kind_with_alignment() {
        let mut w = NewcWriter::new(Vec::new());
        w.dir(b"bin", 0o755).unwrap();
        w.file(b"bin/a", 0o644, b"x").unwrap();
        w.file(b"bin/four", 0o755, b"abcd").unwrap();
        w.file(b"empty", 0o600, b"").unwrap();
        w.symlink(b"bin/sh", b"busybox").unwrap();
        w.char_device(b"console", 0o600, 5, 1).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/a", "bin/four", "empty", "bin/sh", "console"]);
        assert_eq!(entries[0].1, 0o040_755);
        assert_eq!((entries[1].1, entries[1].2.as_slice()), (0o100_644, &b"x"[..]));
        assert_eq!(entries[2].2, b"abcd");
        assert_eq!(entries[3].2, b"");
        assert_eq!((entries[4].1, entries[4].2.as_slice()), (0o120_777, &b"busybox"[..]));
        assert_eq!((entries[5].1, entries[5].3), (0o020_600, (5, 1)));
    }

    #[test]
    fn rejects_bad_names_and_short_readers() {
        let mut w = NewcWriter::new(Vec::new());
        assert!(w.file(b"", 0o644, b"x").is_err());
        assert!(w.file(b"a\0b", 0o644, b"x").is_err());
        let mut short: &[u8] = b"ab";
        assert!(w.file_from(b"f", 0o644, 5, &mut short).is_err());
    }

    #[test]
    fn the_host_cpio_tool_reads_what_we_write() {
        // An outside opinion when one is installed; the parser above covers the rest.
        let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else {
            return;
        };
        if !out.status.success() {
            return;
        }
        let mut w = NewcWriter::new(Vec::new());
        w.dir(b"d", 0o755).unwrap();
        w.file(b"d/f", 0o644, b"hello\n").unwrap();
        w.symlink(b"d/l", b"f").unwrap();
        let bytes = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "d\nd/f\nd/l\n");
    }
}
