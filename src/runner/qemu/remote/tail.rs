//! Following a file on the executor over SFTP, as [`super::super::channel::Tail`]
//! follows one on this host: each look returns what was appended since the last.

use anyhow::{Context, Result};
use ssh2::Sftp;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// At most this much of one file per look (the rest comes next time).
const LOOK_CAP: usize = 1 << 20;

/// A remote file followed from where the last look stopped.
pub(super) struct RemoteTail {
    file: ssh2::File,
    offset: u64,
}

impl RemoteTail {
    pub(super) fn open(sftp: &Sftp, path: &str) -> Result<RemoteTail> {
        let file = sftp.open(Path::new(path)).with_context(|| format!("cannot open remote `{path}`"))?;
        Ok(RemoteTail { file, offset: 0 })
    }

    /// What was appended since the last call (at most [`LOOK_CAP`] bytes).
    pub(super) fn read_new(&mut self) -> Result<Vec<u8>> {
        // Seek every time: it also drops libssh2's read-ahead, so bytes
        // appended after an earlier end of file are read.
        self.file.seek(SeekFrom::Start(self.offset))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while out.len() < LOOK_CAP {
            match self.file.read(&mut buf)? {
                0 => break,
                n => out.extend_from_slice(&buf[..n]),
            }
        }
        self.offset += out.len() as u64;
        Ok(out)
    }
}
