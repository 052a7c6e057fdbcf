//! The host side of the guest's serial ports: following the port files as
//! QEMU writes them, and reading the control stream (`runners/qemu/init`
//! documents the records it writes).
//!
//! The control stream is line-based. A line starting with `@` is a record;
//! any other line is base64 and belongs to the product whose `@file` header
//! came last. Base64 never contains `@`, so the framing needs no escaping,
//! and each product carries its size and sha256 so a damaged or cut-off
//! transfer is detected rather than recorded.

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Follows a file that another process appends to: each call returns the
/// bytes added since the previous one.
pub struct Tail {
    file: File,
}

impl Tail {
    pub fn open(path: &Path) -> Result<Tail> {
        let file = File::open(path).with_context(|| format!("cannot open `{}`", path.display()))?;
        Ok(Tail { file })
    }

    pub fn read_new(&mut self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.file.read_to_end(&mut buf).context("cannot read a serial port file")?;
        Ok(buf)
    }
}

/// How the script ended, as the guest saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestExit {
    pub code: Option<i32>,
    pub signal: Option<String>,
    pub timed_out: bool,
}

/// The header of one product in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    pub size: u64,
    pub mode: u32,
    pub sha256: String,
    /// Relative to the products directory, as the guest named it.
    pub path: PathBuf,
}

/// One line of the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    ProbeOk,
    Env {
        key: String,
        value: String,
    },
    Started,
    Exit(GuestExit),
    File(FileHeader),
    /// A line of base64 inside a product.
    Data(Vec<u8>),
    End,
    Warn(String),
    Done,
}

/// Parse one line (without its newline).
pub fn parse_record(line: &[u8]) -> Result<Record> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.starts_with(b"@") {
        return Ok(Record::Data(line.to_vec()));
    }
    let text = std::str::from_utf8(line).context("a control record is not UTF-8")?;
    let (word, rest) = text.split_once(' ').unwrap_or((text, ""));
    Ok(match word {
        "@probe-ok" => Record::ProbeOk,
        "@started" => Record::Started,
        "@end" => Record::End,
        "@done" => Record::Done,
        "@warn" => Record::Warn(rest.to_string()),
        "@env" => {
            let (key, value) = rest.split_once(' ').unwrap_or((rest, ""));
            Record::Env { key: key.to_string(), value: value.to_string() }
        }
        "@exit" => Record::Exit(parse_exit(rest)?),
        "@file" => Record::File(parse_file(rest)?),
        _ => bail!("unknown control record `{}`", truncate(text, 80)),
    })
}

fn parse_exit(rest: &str) -> Result<GuestExit> {
    let mut exit = GuestExit { code: None, signal: None, timed_out: false };
    for kv in rest.split(' ').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').with_context(|| format!("bad `@exit` field `{kv}`"))?;
        match (k, v) {
            (_, "-") => {}
            ("code", v) => exit.code = Some(v.parse().with_context(|| format!("bad exit code `{v}`"))?),
            ("signal", v) => exit.signal = Some(v.to_string()),
            ("timedout", v) => exit.timed_out = v == "1",
            _ => bail!("unknown `@exit` field `{k}`"),
        }
    }
    Ok(exit)
}

fn parse_file(rest: &str) -> Result<FileHeader> {
    let f: Vec<&str> = rest.split(' ').collect();
    let [size, mode, sha, name] = f[..] else { bail!("a `@file` record needs 4 fields, got `{}`", truncate(rest, 80)) };
    let size = size.parse().with_context(|| format!("bad product size `{size}`"))?;
    let mode = u32::from_str_radix(mode, 8).with_context(|| format!("bad product mode `{mode}`"))?;
    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("bad product sha256 `{sha}`");
    }
    let raw = B64.decode(name).with_context(|| format!("bad product name `{name}`"))?;
    let path = PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(raw));
    // The guest is not trusted to name files outside the products directory.
    if path.as_os_str().is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("product path `{}` is not a plain relative path", path.display());
    }
    Ok(FileHeader { size, mode, sha256: sha.to_ascii_lowercase(), path })
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Splits a byte stream into lines as it arrives.
#[derive(Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Feed bytes; returns the complete lines they finished.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                lines.push(std::mem::take(&mut self.partial));
            } else {
                self.partial.push(b);
            }
        }
        lines
    }
}

/// What the control stream has said so far (everything but product bytes).
#[derive(Debug, Default)]
pub struct ControlState {
    pub probe_ok: bool,
    pub env: BTreeMap<String, String>,
    pub started: bool,
    pub exit: Option<GuestExit>,
    pub done: bool,
    in_file: bool,
}

impl ControlState {
    /// Take in one line; returns the record when it is one the caller may
    /// want to act on at once (data lines are only counted).
    pub fn feed(&mut self, line: &[u8]) -> Result<Option<Record>> {
        let rec = parse_record(line)?;
        match &rec {
            Record::Data(_) if self.in_file => return Ok(None),
            Record::Data(d) if d.is_empty() => return Ok(None),
            Record::Data(_) => bail!("product data outside a `@file` record"),
            Record::ProbeOk => self.probe_ok = true,
            Record::Env { key, value } => {
                self.env.insert(key.clone(), value.clone());
            }
            Record::Started => self.started = true,
            Record::Exit(e) => self.exit = Some(e.clone()),
            Record::File(_) => self.in_file = true,
            Record::End => self.in_file = false,
            Record::Done => self.done = true,
            Record::Warn(_) => {}
        }
        Ok(Some(rec))
    }
}

/// A product written into the products directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub path: PathBuf,
    pub size: u64,
}

/// What [`extract_products`] found.
#[derive(Debug, Default)]
pub struct Extracted {
    pub products: Vec<Product>,
    /// A product cut off by the end of the stream (the VM was stopped mid-transfer).
    pub truncated: Option<PathBuf>,
}

/// Decode every product in the control stream at `control` into `dest`,
/// checking each one's size and sha256. A product cut off by the end of the
/// stream is an error when `complete` (the guest said `@done`), otherwise it
/// is removed and reported in [`Extracted::truncated`].
pub fn extract_products(control: &Path, dest: &Path, complete: bool) -> Result<Extracted> {
    let file = File::open(control).with_context(|| format!("cannot open `{}`", control.display()))?;
    let mut reader = BufReader::new(file);
    let mut out = Extracted::default();
    let mut current: Option<Sink> = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).context("cannot read the control stream")? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match (parse_record(text)?, current.as_mut()) {
            (Record::File(h), None) => current = Some(Sink::create(dest, h)?),
            (Record::File(_), Some(_)) => bail!("a `@file` record inside another product"),
            (Record::Data(d), Some(sink)) => sink.write_b64(&d)?,
            (Record::Data(d), None) if d.is_empty() => {}
            (Record::Data(_), None) => bail!("product data outside a `@file` record"),
            (Record::End, Some(_)) => {
                let sink = current.take().expect("matched Some");
                out.products.push(sink.finish()?);
            }
            (Record::End, None) => bail!("`@end` without a product"),
            _ => {}
        }
    }
    if let Some(sink) = current {
        let path = sink.header.path.clone();
        if complete {
            bail!("product `{}` is cut off in the control stream", path.display());
        }
        sink.discard();
        out.truncated = Some(path);
    }
    Ok(out)
}

/// One product being decoded to disk.
struct Sink {
    header: FileHeader,
    path: PathBuf,
    file: File,
    hash: Sha256,
    written: u64,
    /// Base64 characters not yet decoded (decoding goes in whole quanta).
    pending: Vec<u8>,
}

impl Sink {
    fn create(dest: &Path, header: FileHeader) -> Result<Sink> {
        let path = dest.join(&header.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let file = File::create(&path).with_context(|| format!("cannot create product `{}`", path.display()))?;
        Ok(Sink { header, path, file, hash: Sha256::new(), written: 0, pending: Vec::new() })
    }

    fn write_b64(&mut self, line: &[u8]) -> Result<()> {
        self.pending.extend(line.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        let whole = self.pending.len() / 4 * 4;
        if whole == 0 {
            return Ok(());
        }
        let rest = self.pending.split_off(whole);
        let bytes = B64
            .decode(&self.pending)
            .with_context(|| format!("bad base64 in product `{}`", self.header.path.display()))?;
        self.pending = rest;
        self.hash.update(&bytes);
        self.written += bytes.len() as u64;
        if self.written > self.header.size {
            bail!("product `{}` is longer than its announced {} bytes", self.header.path.display(), self.header.size);
        }
        self.file.write_all(&bytes).with_context(|| format!("cannot write `{}`", self.path.display()))
    }

    fn finish(mut self) -> Result<Product> {
        let name = self.header.path.display().to_string();
        if !self.pending.is_empty() {
            bail!("product `{name}` ends with a partial base64 group");
        }
        if self.written != self.header.size {
            bail!("product `{name}`: received {} bytes, the guest sent {}", self.written, self.header.size);
        }
        let sum = hex::encode(self.hash.finalize_reset());
        if sum != self.header.sha256 {
            bail!("product `{name}`: sha256 {sum} does not match the guest's {}", self.header.sha256);
        }
        self.file.flush()?;
        // Keep the executable bits the script gave it; nothing more (no setuid).
        let perm = if self.header.mode & 0o111 != 0 { 0o755 } else { 0o644 };
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(perm))
            .with_context(|| format!("cannot set the mode of `{}`", self.path.display()))?;
        Ok(Product { path: self.header.path, size: self.written })
    }

    fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(path: &[u8], data: &[u8], mode: &str) -> Vec<u8> {
        let mut s = format!("@file {} {mode} {} {}\n", data.len(), hex::encode(Sha256::digest(data)), B64.encode(path))
            .into_bytes();
        // Wrapped at 76 columns like busybox `base64`.
        for chunk in B64.encode(data).as_bytes().chunks(76) {
            s.extend_from_slice(chunk);
            s.push(b'\n');
        }
        s.extend_from_slice(b"@end\n");
        s
    }

    #[test]
    fn parses_every_record() {
        assert_eq!(parse_record(b"@started").unwrap(), Record::Started);
        assert_eq!(parse_record(b"@done\r").unwrap(), Record::Done);
        assert_eq!(
            parse_record(b"@env kernel 6.1.0-56-amd64").unwrap(),
            Record::Env { key: "kernel".into(), value: "6.1.0-56-amd64".into() }
        );
        assert_eq!(
            parse_record(b"@exit code=3 signal=- timedout=0").unwrap(),
            Record::Exit(GuestExit { code: Some(3), signal: None, timed_out: false })
        );
        assert_eq!(
            parse_record(b"@exit code=- signal=SIGTERM timedout=1").unwrap(),
            Record::Exit(GuestExit { code: None, signal: Some("SIGTERM".into()), timed_out: true })
        );
        assert_eq!(parse_record(b"@warn x y").unwrap(), Record::Warn("x y".into()));
        assert_eq!(parse_record(b"QUJD").unwrap(), Record::Data(b"QUJD".to_vec()));
        let sha = "a".repeat(64);
        let rec = parse_record(format!("@file 5 755 {sha} {}", B64.encode("sub/a b")).as_bytes()).unwrap();
        assert_eq!(rec, Record::File(FileHeader { size: 5, mode: 0o755, sha256: sha, path: "sub/a b".into() }));
    }

    #[test]
    fn rejects_malformed_records_and_escaping_paths() {
        let sha = "b".repeat(64);
        for bad in [
            "@bogus".to_string(),
            "@exit code=x".into(),
            "@exit nonsense".into(),
            "@file 1 644".into(),
            format!("@file x 644 {sha} YQ=="),
            format!("@file 1 9z {sha} YQ=="),
            "@file 1 644 nothex YQ==".into(),
            format!("@file 1 644 {sha} {}", B64.encode("../evil")),
            format!("@file 1 644 {sha} {}", B64.encode("/etc/passwd")),
            format!("@file 1 644 {sha} {}", B64.encode("")),
        ] {
            assert!(parse_record(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(parse_record(&[b'@', 0xff]).is_err());
    }

    #[test]
    fn splits_lines_across_chunks() {
        let mut s = LineSplitter::default();
        assert!(s.push(b"@sta").is_empty());
        assert_eq!(s.push(b"rted\n@env a b\n@do"), vec![b"@started".to_vec(), b"@env a b".to_vec()]);
        assert_eq!(s.push(b"ne\n"), vec![b"@done".to_vec()]);
    }

    #[test]
    fn state_tracks_records_and_skips_product_bytes() {
        let mut st = ControlState::default();
        let mut stream = b"@env arch x86_64\n@started\n@exit code=0 signal=- timedout=0\n".to_vec();
        stream.extend(frame(b"p", b"@not-a-record-once-encoded", "644"));
        stream.extend(b"@done\n");
        for line in LineSplitter::default().push(&stream) {
            st.feed(&line).unwrap();
        }
        assert!(st.started && st.done);
        assert_eq!(st.env["arch"], "x86_64");
        assert_eq!(st.exit.unwrap().code, Some(0));
        assert!(ControlState::default().feed(b"QUJD").is_err());
    }

    #[test]
    fn extracts_binary_products_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let dest = dir.path().join("products");
        std::fs::create_dir(&dest).unwrap();
        let binary: Vec<u8> = (0..=255u8).cycle().take(10_007).collect();
        let mut stream = b"@started\n@exit code=0 signal=- timedout=0\n".to_vec();
        stream.extend(frame(b"bin.dat", &binary, "644"));
        stream.extend(frame(b"sub/dir/run me", b"#!/bin/sh\n", "755"));
        stream.extend(frame(b"empty", b"", "600"));
        stream.extend(b"@done\n");
        std::fs::write(&control, &stream).unwrap();
        let got = extract_products(&control, &dest, true).unwrap();
        assert_eq!(got.products.len(), 3);
        assert!(got.truncated.is_none());
        assert_eq!(std::fs::read(dest.join("bin.dat")).unwrap(), binary);
        assert_eq!(std::fs::read(dest.join("empty")).unwrap(), b"");
        let mode = std::fs::metadata(dest.join("sub/dir/run me")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
    }

    #[test]
    fn detects_corruption_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let control = dir.path().join("control");
        let dest = dir.path().join("products");
        std::fs::create_dir(&dest).unwrap();

        // A flipped byte in transit fails the digest.
        let mut stream = frame(b"a", b"hello world", "644");
        let pos = stream.iter().position(|&b| b == b'\n').unwrap() + 1;
        stream[pos] = if stream[pos] == b'B' { b'C' } else { b'B' };
        std::fs::write(&control, &stream).unwrap();
        let err = extract_products(&control, &dest, true).unwrap_err();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");

        // A stream cut off mid-product: an error when the guest claimed to be
        // done, otherwise the partial file is dropped and named.
        let full = frame(b"cut", &[7u8; 300], "644");
        std::fs::write(&control, &full[..full.len() - 30]).unwrap();
        assert!(extract_products(&control, &dest, true).is_err());
        let got = extract_products(&control, &dest, false).unwrap();
        assert_eq!(got.truncated, Some(PathBuf::from("cut")));
        assert!(!dest.join("cut").exists());

        // More bytes than announced.
        let mut long = frame(b"long", b"abc", "644");
        let s = String::from_utf8(long.clone()).unwrap().replacen("@file 3 ", "@file 2 ", 1);
        long = s.into_bytes();
        std::fs::write(&control, &long).unwrap();
        assert!(extract_products(&control, &dest, true).is_err());
    }
}
