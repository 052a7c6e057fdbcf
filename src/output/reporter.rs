//! The reporters stages report progress through: on a terminal a spinner
//! naming the stage and the runner's steps; with `--watch` the smoke script's
//! (redacted) output live; with `--format json` nothing (stdout is the document).

use crate::output::Printer;
use crate::stages::{Reporter, Stage, Stream};

/// Progress for people: a spinner on a terminal, live output with `--watch`.
pub struct HumanReporter<'p> {
    printer: &'p Printer,
    watch: bool,
    spinner: Option<indicatif::ProgressBar>,
}

impl<'p> HumanReporter<'p> {
    pub fn new(printer: &'p Printer, watch: bool) -> Self {
        HumanReporter { printer, watch, spinner: None }
    }
}

impl Reporter for HumanReporter<'_> {
    fn begin(&mut self, stage: Stage, subject: &str) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
        if self.watch {
            self.printer.note(format!("· {} {subject}", stage.verb()));
        } else {
            self.spinner = self.printer.spinner(format!("{} {subject}", stage.verb()));
        }
    }

    fn status(&mut self, msg: &str) {
        if let Some(s) = &self.spinner {
            s.set_message(msg.to_string());
        } else if self.watch {
            self.printer.note(format!("· {msg}"));
        }
    }

    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        if self.watch {
            match stream {
                Stream::Stdout => self.printer.raw_out(bytes),
                Stream::Stderr => self.printer.raw_err(bytes),
            }
        }
    }

    fn end(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }
}

impl Drop for HumanReporter<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// The reporter for the printer's format.
pub fn for_printer(printer: &Printer, watch: bool) -> Box<dyn Reporter + '_> {
    if printer.human() { Box::new(HumanReporter::new(printer, watch)) } else { Box::new(crate::stages::Silent) }
}
