//! The printer: stdout for data, stderr for diagnostics and progress; colour
//! and progress only on a terminal; `NO_COLOR` and `--quiet` respected.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use crate::cli::Format;

#[derive(Debug, Clone)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    color: bool,
    pub stderr_tty: bool,
}

impl Printer {
    pub fn new(format: Format, quiet: bool) -> Printer {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Printer {
            format,
            quiet,
            color: std::io::stdout().is_terminal() && !no_color,
            stderr_tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn human(&self) -> bool {
        self.format == Format::Human
    }

    /// A line of human output on stdout (suppressed by --quiet and non-human formats).
    pub fn line(&self, s: impl AsRef<str>) {
        if self.human() && !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", s.as_ref());
        }
    }

    /// Raw bytes on stdout (live smoke output).
    pub fn raw_out(&self, b: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b);
        let _ = out.flush();
    }

    pub fn raw_err(&self, b: &[u8]) {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(b);
        let _ = e.flush();
    }

    /// A diagnostic on stderr (suppressed by --quiet).
    pub fn note(&self, s: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("{}", s.as_ref());
        }
    }

    /// Always printed: an error with its cause chain and hint.
    pub fn error(&self, err: &anyhow::Error) {
        let mut msg = format!("{} {err}", self.paint("error:", "1;31"));
        for cause in err.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(&format!("\n  caused by: {c}"));
            }
        }
        if let Some(h) = crate::error::hint_of(err) {
            msg.push_str(&format!("\n{} {h}", self.paint("hint:", "1;36")));
        }
        eprintln!("{msg}");
    }

    /// The single JSON document of `--format json`, written in one go
    /// (stdout is line-buffered: writing it piecemeal costs a syscall a line).
    pub fn json(&self, v: &impl serde::Serialize) {
        let mut buf = serde_json::to_vec_pretty(v).unwrap_or_default();
        buf.push(b'\n');
        self.raw_out(&buf);
    }

    /// Many lines of human output in one write.
    pub fn block(&self, s: &str) {
        if self.human() && !self.quiet && !s.is_empty() {
            self.raw_out(s.as_bytes());
        }
    }

    /// Wrap `s` in an ANSI style when colour is on.
    pub fn paint(&self, s: &str, code: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }

    pub fn ok(&self) -> String {
        self.paint("✓", "32")
    }

    pub fn bad(&self) -> String {
        self.paint("✗", "31")
    }

    /// A spinner for long work, on a terminal only.
    pub fn spinner(&self, msg: String) -> Option<indicatif::ProgressBar> {
        if self.quiet || !self.stderr_tty {
            return None;
        }
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.set_message(msg);
        pb.enable_steady_tick(std::time::Duration::from_millis(100));
        Some(pb)
    }
}
