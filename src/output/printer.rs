//! The printer: stdout for data, stderr for diagnostics and progress; colour
//! and progress only on a terminal; `NO_COLOR` and `--quiet` respected.
#![allow(clippy::print_stderr)]

use std::io::{IsTerminal, Write};

use super::render::{Render, Style};
use crate::cli::Format;
use crate::exit::Exit;

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

    pub fn style(&self) -> Style {
        Style { color: self.color }
    }

    /// Print an outcome in the chosen format and return its exit code. The
    /// json document is printed whatever `--quiet` says (it is the data).
    pub fn emit(&self, outcome: &dyn Render) -> Exit {
        let written = match self.format {
            Format::Json => self.to_stdout(|out| outcome.write_json(out)),
            Format::Github => self.to_stdout(|out| outcome.write_github(out)),
            Format::Human if outcome.human_is_diagnostic() => {
                let style = Style { color: self.color && self.stderr_tty };
                self.raw_err(outcome.human(style).as_bytes());
                Ok(())
            }
            Format::Human if self.quiet => Ok(()),
            Format::Human => self.to_stdout(|out| outcome.write_human(self.style(), out)),
        };
        let exit = match outcome.stopped_by() {
            Some(err) => {
                self.error(err);
                outcome.exit().worst(crate::error::exit_of(err))
            }
            None => outcome.exit(),
        };
        match written {
            Ok(()) => exit,
            // The outcome could not be written whole (not stdout's fault): say so.
            Err(err) => {
                self.error(&err);
                exit.worst(Exit::Error)
            }
        }
    }

    /// Run `write` on a buffered stdout (stdout itself is line-buffered: a
    /// syscall a line). A failing stdout (a closed pipe) is ignored, as a
    /// reader that stopped reading wants no more; any other error is returned.
    fn to_stdout(&self, write: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>) -> anyhow::Result<()> {
        let mut out =
            Stdout { inner: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()), failed: false };
        let written = write(&mut out);
        let _ = out.flush();
        match written {
            Err(_) if out.failed => Ok(()),
            other => other,
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
        let style = Style { color: self.color && self.stderr_tty };
        let mut msg = format!("{} {}", style.paint("error:", "1;31"), super::escape::untrusted(&err.to_string()));
        for cause in err.chain().skip(1) {
            let c = super::escape::untrusted(&cause.to_string());
            if !msg.contains(&c) {
                msg.push_str(&format!("\n  caused by: {c}"));
            }
        }
        if let Some(h) = crate::error::hint_of(err) {
            msg.push_str(&format!("\n{} {h}", style.paint("hint:", "1;36")));
        }
        eprintln!("{msg}");
    }

    /// A spinner for long work, on a terminal only.
    pub fn spinner(&self, msg: String) -> Option<indicatif::ProgressBar> {
        if self.quiet || !self.stderr_tty || self.format != Format::Human {
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

/// Stdout that remembers whether it failed, so that its errors can be told
/// from the outcome's own.
struct Stdout<W: Write> {
    inner: W,
    failed: bool,
}

impl<W: Write> Write for Stdout<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|_| self.failed = true)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|_| self.failed = true)
    }
}
