//! `agentplane validate PATH...`

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::bundle::digest::Want;
use crate::bundle::discover::{Found, OpenAhead};
use crate::bundle::gates::{self, Check, Status};
use crate::cli::{Format, ValidateArgs};
use crate::error::{Refusal, RefusalCode};
use crate::exit::Exit;
use crate::output::escape::{gh_message, gh_property, untrusted};
use crate::output::nested_json;
use crate::output::render::{Lines, Render, Style, plural};
use crate::output::spool::{Spool, Spooled};
use crate::stages::validate::held::HeldChecks;
use crate::stages::validate::shared::{OutDirs, Shared};
use crate::stages::validate::{self, Outcome, Rendered, Shown};

/// What `validate` found, for every bundle, in path order.
pub struct Validated {
    /// Every bundle's result, held until rendered (on disk beyond a budget).
    shown: Spooled<Shown>,
    /// The outDirs several bundles name: those fail `out-dir-safe` as rendered.
    shared: Shared,
    invalid: usize,
    /// No artifact could be signed (no key): the checks are still reported.
    pub unsigned: Option<anyhow::Error>,
}

/// The results held in memory before the rest goes to a temporary file
/// (~8,000 bundles' worth): enough for every run that needs no more.
const HELD_BYTES: usize = 8 * 1024 * 1024;

/// The documented `--format json` shape: `{"valid": …, "bundles": [JsonBundle…]}`,
/// written a bundle at a time by [`Validated::write_json`].
#[derive(Serialize)]
struct JsonBundle<'a> {
    path: &'a str,
    bundle: Option<&'a str>,
    valid: bool,
    digest: Option<&'a str>,
    checks: &'a HeldChecks,
}

pub fn run(ctx: &Ctx, args: ValidateArgs) -> Result<Box<dyn Render>> {
    let paths: Vec<PathBuf> = args.paths.iter().map(|p| ctx.bundle_arg(p)).collect();
    // `--check` checks the bundles as they are found: they come open. A
    // run that writes artifacts collects them first: they come as paths.
    let ahead = args.check.then(OpenAhead::from_limit);
    let mut manifests = validate::discover(&ctx.root, &paths, ahead)?.peekable();
    if manifests.peek().is_none() {
        // A typo in a CI path must not pass green.
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Refusal::new(RefusalCode::NoBundles, format!("no bundle.json under {}", shown.join(", ")))
            .hint("pass a bundle directory, a bundle.json, or a folder of bundles")
            .into());
    }
    // The digest is shown only in json output; it and each file's own
    // digest are recorded in artifacts.
    let want = match (args.check, ctx.printer.format) {
        (false, _) => Want::DigestAndFiles,
        (true, Format::Json) => Want::Digest,
        (true, _) => Want::Check,
    };
    if args.check {
        // Nothing is written: reports are checked in a bounded window, and
        // what they show is held (on disk beyond a budget) until rendered.
        let ahead = match ctx.printer.format {
            Format::Json => Ahead::Json,
            Format::Human => Ahead::Human(ctx.printer.style()),
            _ => Ahead::Nothing,
        };
        return Ok(Box::new(Validated::stream(&ctx.root, manifests, want, ahead)?));
    }
    let manifests: Vec<PathBuf> = manifests.map(Found::into_path).collect();
    let reports = validate::check_all(&ctx.root, &manifests, want)?;
    let unwritten = |reports: Vec<_>| {
        reports.into_iter().map(|report| Outcome { report, written: None, not_written: None }).collect()
    };
    // Without a key the checks are still worth seeing; then exit 2.
    let (outcomes, unsigned) = match ctx.signer(args.key.key.as_deref()) {
        Ok(signer) => (validate::write_all(&ctx.root, reports, &signer)?, None),
        Err(e) => {
            let inner = crate::error::hint_of(&e).map(|h| format!("; or {h}")).unwrap_or_default();
            let e = anyhow::Error::new(
                crate::error::Problem::error(format!("no ValidationArtifact was written ({e})"))
                    .hint(format!("pass --check to validate without writing evidence{inner}")),
            );
            (unwritten(reports), Some(e))
        }
    };
    Validated::settled(&ctx.root, outcomes, unsigned).map(|v| Box::new(v) as Box<dyn Render>)
}

impl Validated {
    /// Check every manifest as a stream, holding each result until rendered.
    /// `ahead`: what to render of each bundle as it is checked.
    fn stream(
        root: &Path,
        manifests: impl Iterator<Item = Found> + Send,
        want: Want,
        ahead: Ahead,
    ) -> Result<Validated> {
        Validated::stream_in(root, manifests, want, ahead, validate::WINDOW, HELD_BYTES)
    }

    /// [`Validated::stream`] with its window and memory budget given.
    fn stream_in(
        root: &Path,
        manifests: impl Iterator<Item = Found> + Send,
        want: Want,
        ahead: Ahead,
        window: usize,
        held_bytes: usize,
    ) -> Result<Validated> {
        let mut spool = Spool::new(held_bytes);
        let mut out_dirs = OutDirs::default();
        let mut invalid = 0;
        // On the workers: what is shown of a report, and its part of the
        // output (rendering 2,000 of them serially at the end was ~10 % of the
        // json run, ~3 % of the human one).
        let finish = |report| {
            let mut shown = Shown::unshared(root, report);
            shown.rendered = match ahead {
                Ahead::Json => json_element(&shown).ok().and_then(|j| String::from_utf8(j).ok()).map(Rendered::Json),
                Ahead::Human(style) => Some(Rendered::Human { color: style.color, text: human_text(&shown, style) }),
                Ahead::Nothing => None,
            };
            shown
        };
        validate::check_each_in(root, manifests, want, window, finish, |shown| {
            if let Some((key, _)) = &shown.out_dir {
                out_dirs.see(key);
            }
            invalid += usize::from(!shown.valid);
            let weight = shown.weight();
            spool.push(shown, weight)
        })?;
        let shown = spool.seal()?;
        // Which outDirs are shared is known only now; the candidates are few.
        let candidates = out_dirs.finish();
        let mut shared = Shared::default();
        if !candidates.is_empty() {
            shown.for_each(|s| {
                if let Some((key, _)) = s.out_dir.as_ref().filter(|(key, _)| candidates.may_share(key)) {
                    shared.add(key, &s.path, s.valid);
                }
                Ok(())
            })?;
        }
        let shared = shared.settle();
        invalid += shared.newly_invalid();
        Ok(Validated { shown, shared, invalid, unsigned: None })
    }

    /// Outcomes whose every check (the cross-bundle one too) is done.
    fn settled(root: &Path, outcomes: Vec<Outcome>, unsigned: Option<anyhow::Error>) -> Result<Validated> {
        let mut spool = Spool::new(usize::MAX);
        let invalid = outcomes.iter().filter(|o| !o.report.valid).count();
        for o in outcomes {
            spool.push(Shown::settled(root, o), 0)?;
        }
        Ok(Validated { shown: spool.seal()?, shared: Shared::default(), invalid, unsigned })
    }

    /// Each bundle's result in order, with the cross-bundle check applied.
    fn each(&self, mut f: impl FnMut(&Shown) -> Result<()>) -> Result<()> {
        self.shown.for_each(|s| {
            let shared = s.out_dir.as_ref().and_then(|(key, dir)| Some((dir, self.shared.others(key, &s.path)?)));
            match shared {
                Some((dir, others)) => {
                    let mut s = s.clone();
                    s.share_out_dir(dir, &others);
                    f(&s)
                }
                None => f(s),
            }
        })
    }

    fn all_valid(&self) -> bool {
        self.invalid == 0
    }

    fn summary(&self) -> String {
        let total = self.shown.len();
        format!("{}: {} valid, {} invalid", plural(total, "bundle", "bundles"), total - self.invalid, self.invalid)
    }
}

fn at(c: &Check) -> String {
    match c.pointer.as_deref() {
        Some("") => " at /".to_string(),
        Some(ptr) => format!(" at {}", untrusted(ptr)),
        None => String::new(),
    }
}

/// What of each bundle [`Validated::stream`] renders as it is checked: the
/// output's format, when it is one whose rendering does not depend on later bundles.
#[derive(Debug, Clone, Copy)]
enum Ahead {
    Nothing,
    Json,
    Human(Style),
}

/// One bundle's human lines, as text.
fn human_text(s: &Shown, style: Style) -> String {
    let mut lines = Lines::default();
    human_lines(s, style, &mut lines);
    lines.into_string()
}

/// One bundle's human lines.
fn human_lines(s: &Shown, style: Style, out: &mut Lines) {
    let name = s.bundle.as_deref().map(untrusted).unwrap_or_else(|| "(unnamed)".into());
    out.line(format!("{} {name}  {}", style.mark(s.valid), untrusted(&s.path)));
    for c in s.checks.not_passed() {
        let status = match c.status {
            Status::Fail => style.paint("fail", "31"),
            _ => style.paint("warn", "33"),
        };
        let msg = untrusted(c.message.as_deref().unwrap_or(""));
        out.line(format!("    {status} {}{}: {msg}", c.name, at(c)));
        if c.status == Status::Fail {
            out.line(format!("         hint: {}", gates::hint_for(c.name)));
        }
    }
    if let Some(w) = &s.written {
        out.line(format!("    evidence: {}", untrusted(w)));
    }
    if let Some(why) = &s.not_written {
        out.line(format!("    no artifact written: {why}"));
    }
}

/// One bundle's GitHub annotations.
fn github_lines(s: &Shown, out: &mut Lines) {
    for c in s.checks.not_passed() {
        let level = if c.status == Status::Fail { "error" } else { "warning" };
        let ptr = c.pointer.as_deref().map(|p| format!(" at {}", if p.is_empty() { "/" } else { p }));
        let msg = format!("{}{}: {}", c.name, ptr.unwrap_or_default(), c.message.as_deref().unwrap_or(""));
        let pos = match (c.line, c.column) {
            (Some(l), Some(col)) => format!(",line={l},col={col}"),
            _ => String::new(),
        };
        out.line(format!(
            "::{level} file={}{pos},title={}::{}",
            gh_property(&s.path),
            gh_property(&format!("agentplane {}", c.name)),
            gh_message(&msg)
        ));
    }
}

/// One bundle's element of the json document, as [`Validated::write_json`]
/// writes it: [`JsonBundle`] pretty-printed two levels deep.
fn json_element(s: &Shown) -> Result<Vec<u8>> {
    let b = JsonBundle {
        path: &s.path,
        bundle: s.bundle.as_deref(),
        valid: s.valid,
        digest: s.digest.as_deref(),
        checks: &s.checks,
    };
    let mut element = Vec::with_capacity(512 + 160 * s.checks.len());
    nested_json::write_at_depth(&mut element, 2, &b)?;
    Ok(element)
}

impl Render for Validated {
    fn exit(&self) -> Exit {
        if self.all_valid() { Exit::Success } else { Exit::Failed }
    }

    fn human(&self, style: Style) -> String {
        let mut out = Vec::new();
        // Into memory: only a failing result spool can fail here.
        let _ = self.write_human(style, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    fn json(&self) -> Value {
        let mut out = Vec::new();
        match self.write_json(&mut out) {
            Ok(()) => serde_json::from_slice(&out).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    fn github(&self) -> Option<String> {
        let mut out = Vec::new();
        let _ = self.write_github(&mut out);
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn write_human(&self, style: Style, out: &mut dyn Write) -> Result<()> {
        self.each(|s| match &s.rendered {
            // Rendered on a worker already, unless the checks or the style changed since.
            Some(Rendered::Human { color, text }) if *color == style.color => Ok(out.write_all(text.as_bytes())?),
            _ => Ok(out.write_all(human_text(s, style).as_bytes())?),
        })?;
        Ok(writeln!(out, "{}", self.summary())?)
    }

    /// The document of [`JsonBundle`]s, a bundle at a time: the same bytes
    /// as `serde_json::to_writer_pretty` of the whole.
    fn write_json(&self, out: &mut dyn Write) -> Result<()> {
        write!(out, "{{\n  \"valid\": {},\n  \"bundles\": [", self.all_valid())?;
        let mut first = true;
        self.each(|s| {
            out.write_all(if first { b"\n" } else { b",\n" })?;
            first = false;
            // Rendered on a worker already, unless the checks changed since.
            match &s.rendered {
                Some(Rendered::Json(element)) => out.write_all(element.as_bytes())?,
                _ => out.write_all(&json_element(s)?)?,
            }
            Ok(())
        })?;
        out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })?;
        Ok(())
    }

    fn write_github(&self, out: &mut dyn Write) -> Result<()> {
        self.each(|s| {
            let mut lines = Lines::default();
            github_lines(s, &mut lines);
            Ok(out.write_all(lines.into_string().as_bytes())?)
        })?;
        Ok(writeln!(out, "{}", self.summary())?)
    }

    fn stopped_by(&self) -> Option<&anyhow::Error> {
        self.unsigned.as_ref()
    }

    /// Results in memory, or in an unnamed temporary file (`tempfile::tempfile`)
    /// that the kernel removes when the process ends.
    fn only_memory(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tree of bundles of every kind, in more than one window: valid,
    /// schema-invalid, unparsable, not an object, nested, and two groups
    /// sharing an outDir (one of them across windows and with an invalid member).
    fn mixed_tree() -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap();
        let example = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/example-agent/bundle.json"));
        let example: Value = serde_json::from_slice(&example.unwrap()).unwrap();
        let put = |dir: &str, manifest: &[u8]| {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("bundle.json"), manifest).unwrap();
            std::fs::write(dir.join("smoke.sh"), "#!/bin/sh\necho hi\n").unwrap();
        };
        for i in 0..40 {
            let name = format!("b{i:02}");
            let mut m = example.clone();
            m["metadata"]["name"] = json!(name);
            m["spec"]["smoke"]["script"] = json!("./smoke.sh");
            m["spec"]["vm"]["modulePath"] = json!("./smoke.sh");
            let out = match i {
                3 | 17 | 33 => "artifacts/shared-1".to_string(),
                10 | 11 => "artifacts/shared-2".to_string(),
                _ => format!("artifacts/{name}"),
            };
            m["spec"]["artifacts"]["outDir"] = json!(out);
            if i % 5 == 1 {
                m["spec"]["policy"]["maxRunSeconds"] = json!(99999);
            }
            put(&format!("bundles/{name}"), &serde_json::to_vec_pretty(&m).unwrap());
        }
        put("bundles/b20-bad-json", b"{\"apiVersion\": ");
        put("bundles/b21-array", b"[1, 2]");
        let mut nested = example.clone();
        nested["metadata"]["name"] = json!("deep");
        nested["spec"]["smoke"]["script"] = json!("./smoke.sh");
        nested["spec"]["vm"]["modulePath"] = json!("./smoke.sh");
        nested["spec"]["artifacts"]["outDir"] = json!("artifacts/deep");
        put("bundles/group/deep", &serde_json::to_vec_pretty(&nested).unwrap());
        let bundles = root.join("bundles");
        (d, bundles)
    }

    fn rendered(v: &Validated) -> (String, String, String, Exit) {
        let mut json = Vec::new();
        v.write_json(&mut json).unwrap();
        (v.human(Style::default()), String::from_utf8(json).unwrap(), v.github().unwrap(), v.exit())
    }

    #[test]
    fn streamed_output_is_the_output_of_all_reports_at_once() {
        let (d, bundles) = mixed_tree();
        let root = d.path().canonicalize().unwrap();
        let paths = [bundles.clone()];
        // Every report in memory, the cross-bundle check on the whole list.
        let manifests = validate::find(&root, &paths).unwrap();
        let reports = validate::check_all(&root, &manifests, Want::Digest).unwrap();
        let outcomes = reports.into_iter().map(|report| Outcome { report, written: None, not_written: None });
        let whole = rendered(&Validated::settled(&root, outcomes.collect(), None).unwrap());
        assert!(whole.0.contains("is also the outDir of bundles/b10/bundle.json"), "{}", whole.0);
        assert!(whole.0.ends_with("43 bundles: 29 valid, 14 invalid\n"), "{}", whole.0);
        assert_eq!(whole.3, Exit::Failed);
        // The json document is what serde_json's pretty printer makes of it.
        let doc: Value = serde_json::from_str(&whole.1).unwrap();
        assert_eq!(whole.1, serde_json::to_string_pretty(&doc).unwrap() + "\n");
        // Streamed in windows that split both sharing groups, held in memory or all on disk.
        // Each with parts rendered on the workers (json, human in the style
        // rendered or in another one), or all at the end.
        let aheads = [Ahead::Nothing, Ahead::Json, Ahead::Human(Style::default()), Ahead::Human(Style { color: true })];
        // Found as paths, or open: within the process's budget, or a budget
        // of 2 that runs out while the window holds more.
        let opens = [None, Some(OpenAhead::from_limit()), Some(OpenAhead::new(2))];
        for (window, held) in [(1, 0), (3, 0), (7, 1000), (256, usize::MAX)] {
            for ahead in aheads {
                for open in &opens {
                    let manifests = validate::discover(&root, &paths, open.clone()).unwrap();
                    let streamed = Validated::stream_in(&root, manifests, Want::Digest, ahead, window, held).unwrap();
                    assert_eq!(rendered(&streamed), whole, "window {window}, held {held}, {ahead:?}, {open:?}");
                }
            }
        }
        // Every place taken was given back.
        assert_eq!(opens[2].as_ref().map(OpenAhead::left), Some(2));
    }

    #[test]
    fn the_summary_counts_bundles_that_fail_only_for_sharing() {
        let (d, bundles) = mixed_tree();
        let root = d.path().canonicalize().unwrap();
        let manifests = validate::discover(&root, &[bundles], Some(OpenAhead::new(3))).unwrap();
        let v = Validated::stream_in(&root, manifests, Want::Check, Ahead::Human(Style::default()), 4, 0).unwrap();
        // 40 + 3 bundles; invalid: 8 for maxRunSeconds (b01, b06, …, b36), 2
        // that do not parse as a bundle, and b03, b17, b33, b10 sharing (b11
        // is invalid already).
        assert_eq!(v.summary(), "43 bundles: 29 valid, 14 invalid");
        let doc = v.json();
        assert_eq!(doc["valid"], json!(false));
        let shared: Vec<&str> = doc["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| {
                b["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["message"].as_str().is_some_and(|m| m.contains("is also the outDir of")))
            })
            .map(|b| b["path"].as_str().unwrap())
            .collect();
        assert_eq!(
            shared,
            [
                "bundles/b03/bundle.json",
                "bundles/b10/bundle.json",
                "bundles/b11/bundle.json",
                "bundles/b17/bundle.json",
                "bundles/b33/bundle.json"
            ]
        );
    }

    #[test]
    fn an_all_valid_stream_exits_0_with_a_json_document() {
        let (d, bundles) = mixed_tree();
        let root = d.path().canonicalize().unwrap();
        let one = [bundles.join("b00")];
        let v = Validated::stream_in(
            &root,
            validate::discover(&root, &one, None).unwrap(),
            Want::Digest,
            Ahead::Json,
            2,
            0,
        )
        .unwrap();
        assert_eq!(v.exit(), Exit::Success, "{}", v.human(Style::default()));
        assert_eq!(v.summary(), "1 bundle: 1 valid, 0 invalid");
        let mut out = Vec::new();
        v.write_json(&mut out).unwrap();
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["valid"], json!(true));
        assert_eq!(doc["bundles"][0]["path"], json!("bundles/b00/bundle.json"));
    }
}
