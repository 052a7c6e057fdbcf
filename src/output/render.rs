//! One renderer for every command's outcome: each outcome knows its exit code,
//! its human text and its one JSON document, and writes them to the printer's
//! stream. Only `validate` also speaks GitHub annotations (`--format github`).

use serde_json::Value;
use std::io::Write;

use crate::exit::Exit;

/// How human text is decorated (colour only on a terminal, never with `NO_COLOR`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
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

    pub fn mark(&self, ok: bool) -> String {
        if ok { self.ok() } else { self.bad() }
    }
}

/// A command's outcome, ready to print.
pub trait Render {
    /// The exit code this outcome maps to (0 or 1; exit 2 is an error, not an outcome).
    fn exit(&self) -> Exit;
    /// Text for people: lines ending in `\n` (may be empty).
    fn human(&self, style: Style) -> String;
    /// The one JSON document `--format json` prints on stdout.
    fn json(&self) -> Value;
    /// GitHub Actions annotations, for the commands that support them.
    fn github(&self) -> Option<String> {
        None
    }
    /// An error that stopped the command after its outcome was known (e.g.
    /// `validate` reported every check but could not sign): printed on stderr
    /// after the outcome, and its exit code (2) wins.
    fn stopped_by(&self) -> Option<&anyhow::Error> {
        None
    }
    /// Human text goes to stderr (a refusal reads like an error), and is
    /// printed even with `--quiet`.
    fn human_is_diagnostic(&self) -> bool {
        false
    }

    /// [`Render::human`] written to `out`. An outcome too large to hold as one
    /// string (`validate` over many bundles) writes it piece by piece instead.
    /// An error is the outcome's own or `out`'s.
    fn write_human(&self, style: Style, out: &mut dyn Write) -> anyhow::Result<()> {
        Ok(out.write_all(self.human(style).as_bytes())?)
    }

    /// [`Render::json`] written to `out`, pretty, with a final newline.
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let mut buf = serde_json::to_vec_pretty(&self.json())?;
        buf.push(b'\n');
        Ok(out.write_all(&buf)?)
    }

    /// [`Render::github`] written to `out` (nothing when there is none).
    fn write_github(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        match self.github() {
            Some(text) => Ok(out.write_all(text.as_bytes())?),
            None => Ok(()),
        }
    }

    /// Dropping this outcome releases only memory and anonymous temporary
    /// files: no named file, child process or lock. The process, about to
    /// exit once the outcome is printed, then leaves it to the kernel instead
    /// of freeing it piece by piece (clang's `-disable-free`): `validate`
    /// over 2,000 bundles spent ~1 ms, serially, freeing what the workers
    /// had made. Answer `true` only when nothing else happens on drop.
    fn only_memory(&self) -> bool {
        false
    }
}

/// `n thing` / `n things`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Lines joined into the text [`Render::human`] returns.
#[derive(Debug, Default)]
pub struct Lines(String);

impl Lines {
    pub fn line(&mut self, s: impl AsRef<str>) {
        self.0.push_str(s.as_ref());
        self.0.push('\n');
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "product", "products"), "1 product");
        assert_eq!(plural(0, "product", "products"), "0 products");
        assert_eq!(plural(2, "bundle", "bundles"), "2 bundles");
    }
}
