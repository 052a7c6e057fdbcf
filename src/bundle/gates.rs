//! The named validation gates of DESIGN §4. Each gate reports `pass`, `fail`
//! or `warn` with a message and, where it applies, a JSON pointer. Gates run on
//! the raw JSON, so they still report when the schema check fails: a user sees
//! every problem in one run.

use serde::Deserialize as _;
use serde_json::Value;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::digest::{BadKind, Want};
use super::load;
use super::model::{Backend, Bundle};
use super::schema::SchemaChecker;
use crate::fsx;
use crate::json::at;
use secrets::secrets_are_refs;

pub use crate::types::{Check, CheckStatus as Status, Gate};

/// What to do about a failing gate, shown after it in human output.
pub fn hint_for(gate: Gate) -> &'static str {
    match gate {
        Gate::Parse => {
            "bundle.json must be a regular file holding UTF-8 JSON with no repeated keys (at most 16 MiB); a bundle holds only regular files and links that stay inside it"
        }
        Gate::Schema => "see `agentplane schema bundle` for the bundle schema",
        Gate::LicensePolicy => "set metadata.licensePolicy.allowAGPL to false",
        Gate::MaxRunSeconds => "set spec.policy.maxRunSeconds to a whole number of seconds from 5 to 3600",
        Gate::SecretsAreRefs => {
            "list secret names in spec.secrets.required and supply values at run time from the environment; never put secret values in a bundle"
        }
        Gate::PathsInsideRoot => {
            "bundle paths are relative to the project root (--root) or, written `./x` or found only there, to the bundle directory; they must not leave the root"
        }
        Gate::OutDirSafe => {
            "set spec.artifacts.outDir to a folder of its own under the root, e.g. `artifacts/<bundle name>`: validate moves an earlier chain's files aside there, so it may hold nothing but agentplane's evidence"
        }
        Gate::SmokeScriptPresent => {
            "spec.smoke.script must name an existing file of this bundle: `./smoke.sh` (relative to the bundle directory) or `bundles/<name>/smoke.sh` (relative to the project root)"
        }
        Gate::BackendSupported => "use one of the backends agentplane runs: lima-process, qemu, microvm, fleet",
    }
}

/// The result of validating one `bundle.json`.
#[derive(Debug, Clone)]
pub struct Report {
    /// The manifest path relative to the root (or as given when outside it).
    pub path: String,
    pub manifest: PathBuf,
    /// `name@version` when the metadata has both.
    pub bundle: Option<String>,
    pub valid: bool,
    pub digest: Option<String>,
    pub checks: Vec<Check>,
    /// The parsed manifest, when it is a JSON object: what the artifact
    /// carries of it ([`Report::governance_context`], [`Report::metadata`],
    /// [`Report::extensions`], [`Report::lane`]) is taken from it only when an
    /// artifact is written, not copied for every bundle `--check` looks at.
    pub manifest_value: Option<Value>,
    /// The resolved outDir, when the manifest is typed well enough to have one.
    pub out_dir: Option<PathBuf>,
    /// The resolved outDir however it was judged (for cross-bundle checks).
    pub out_dir_resolved: Option<PathBuf>,
    /// The files the digest covers, each with its own sha256 (only for
    /// [`Want::DigestAndFiles`]).
    pub digest_files: Vec<super::digest::DigestEntry>,
}

/// Run every gate on one manifest. `manifest` must be canonical (as
/// [`crate::stages::validate::find`] returns them).
/// `want`: how much of the bundle digest to compute (none when nothing will
/// show or record it, e.g. `validate --check` in human format: it is most of
/// the I/O; no per-file digests unless an artifact records them).
pub fn validate(root: &Path, manifest: &Path, checker: &SchemaChecker, want: Want) -> Report {
    validate_opened(root, manifest, None, checker, want, &fsx::LstatCache::default())
}

/// [`validate`] sharing `lstat` results with other bundles checked on this
/// thread (`cache`), of a bundle whose directory and manifest the walk that
/// found it has opened already (`opened`), or, without it, opens them.
pub fn validate_opened(
    root: &Path,
    manifest: &Path,
    opened: Option<super::discover::Opened>,
    checker: &SchemaChecker,
    want: Want,
    cache: &fsx::LstatCache,
) -> Report {
    let manifest = manifest.to_path_buf();
    let mut report = Report {
        path: fsx::rel_to(root, &manifest),
        manifest: manifest.clone(),
        bundle: None,
        valid: false,
        digest: None,
        checks: Vec::new(),
        manifest_value: None,
        out_dir: None,
        out_dir_resolved: None,
        digest_files: Vec::new(),
    };

    let dir = manifest.parent().unwrap_or(root).to_path_buf();
    // The bundle directory, opened once: the manifest and the files the
    // digest reads are opened by name from it, and the scan lists it. When it
    // cannot be opened, each is opened by its path and fails as it would alone.
    let (open_dir, read) = match opened {
        Some(o) => {
            let read = load::read_manifest_opened(&manifest, o.file, o.meta);
            // (`Dir::new` makes no system call today; should it fail, the
            // scan opens the directory by its path, as without the walk's.)
            let open_dir = fsx::tree::OpenDir::from_fd(&dir, o.dir).or_else(|_| fsx::tree::OpenDir::open(&dir));
            (open_dir.ok(), read)
        }
        None => {
            let open_dir = fsx::tree::OpenDir::open(&dir).ok();
            let read = load::read_manifest_via(open_dir.as_ref(), &manifest);
            (open_dir, read)
        }
    };

    // parse
    let (bytes, value, mode) = match read {
        Ok(bv) => bv,
        Err(e) => {
            let mut msg = format!("{e:#}").replace(&format!("`{}` ", manifest.display()), "");
            let strict = e.chain().find_map(|c| c.downcast_ref::<crate::json::StrictJsonError>());
            let pointer = strict.and_then(|s| s.pointer.clone());
            if let Some(s) = strict.filter(|s| s.pointer.is_some()) {
                // The check carries the pointer; the message gives the position.
                msg = format!("is not valid JSON: {} (line {}, column {})", s.message, s.line, s.column);
            }
            let mut check = Check::fail(Gate::Parse, msg, pointer.as_deref());
            if let Some(s) = strict {
                check = check.at(s.line, s.column);
            }
            report.checks.push(check);
            return report;
        }
    };
    report.checks.push(Check::pass(Gate::Parse));
    if !value.is_object() {
        // Readable JSON of the wrong shape is a schema problem, not a parse one.
        report.checks.push(Check::fail(
            Gate::Schema,
            format!("top level is {}, not an object", kind_of(&value)),
            Some(""),
        ));
        return report;
    }
    let name = at(&value, "/metadata/name").and_then(Value::as_str);
    let version = at(&value, "/metadata/version").and_then(Value::as_str);
    if let (Some(n), Some(v)) = (name, version) {
        report.bundle = Some(format!("{n}@{v}"));
    }

    // schema
    let violations = checker.check(&value);
    if violations.is_empty() {
        report.checks.push(Check::pass(Gate::Schema));
    } else {
        for v in violations {
            report.checks.push(Check::fail(Gate::Schema, v.message, Some(&v.pointer)));
        }
    }

    // The manifest is canonical: its directory is a real one.
    cache.seed(&dir, Some(false));
    let resolver = Resolver::new(root, &dir, cache);
    // What lives in the bundle and its digest need only the directory and the
    // outDir to leave out, so even a schema-invalid bundle gets them and can
    // record its failure. The directory is listed once, first: the gates'
    // path checks then take what the listing saw instead of asking again.
    let str_at = |ptr: &str| at(&value, ptr).and_then(Value::as_str);
    let out_dir = str_at("/spec/artifacts/outDir")
        .map(|o| resolver.resolve(o))
        .filter(|(p, inside)| *inside && !fsx::is_under(&dir, p))
        .map(|(p, _)| p);
    let scanned = super::digest::scan_from(root, &dir, open_dir, out_dir.as_deref());
    if let Ok(scan) = &scanned {
        for (_, path, is_link) in &scan.files {
            cache.seed(path, Some(*is_link));
        }
    }
    let listed_regular =
        |p: &Path| scanned.as_ref().is_ok_and(|s| s.files.iter().any(|(_, f, l)| !l && fsx::same_path(f, p)));
    report.checks.push(license_policy(&value));
    report.checks.push(max_run_seconds(&value));
    report.checks.extend(secrets_are_refs(&value));
    report.checks.extend(paths_inside_root(&resolver, &value));
    let out_check = out_dir_safe(&resolver, &value, &dir);
    let out_safe = out_check.status == Status::Pass;
    report.checks.push(out_check);
    report.checks.push(smoke_script_present(&resolver, &value, &listed_regular));
    report.checks.push(backend_supported(&value));

    // Evidence is written only to a safe outDir.
    report.out_dir_resolved = out_dir.clone();
    let script: Vec<PathBuf> = str_at("/spec/smoke/script")
        .map(|s| resolver.resolve_bundle(s))
        .filter(|(_, inside)| *inside)
        .map(|(p, _)| p)
        .into_iter()
        .collect();
    let digest = scanned.and_then(|scan| match want {
        Want::Check => super::digest::check_scan(root, scan, &script, Some((&manifest, &bytes, mode))).map(|()| None),
        _ => super::digest::compute_scanned(root, scan, &script, Some((&manifest, &bytes, mode)), want).map(Some),
    });
    match digest {
        Ok(Some(d)) => {
            report.digest = Some(d.digest);
            report.digest_files = d.files;
            report.out_dir = out_dir.filter(|_| out_safe);
        }
        Ok(None) => {}
        Err(e) => {
            let fails: Vec<Check> = match e.downcast_ref::<super::digest::BundleFilesError>() {
                Some(bad) => bad
                    .files
                    .iter()
                    .map(|f| match f.kind {
                        BadKind::Escapes => {
                            Check::fail(Gate::PathsInsideRoot, format!("`{}` {}", f.path, f.why), None)
                        }
                        BadKind::NotRegular => Check::fail(
                            Gate::Parse,
                            format!("`{}` {}; a bundle holds only regular files", f.path, f.why),
                            None,
                        ),
                        BadKind::TooLarge => Check::fail(
                            Gate::Parse,
                            format!(
                                "`{}` {}: every validate and run digests a bundle whole, so keep large inputs outside it (fetch them in the smoke script, or mount them)",
                                f.path, f.why
                            ),
                            None,
                        ),
                    })
                    .collect(),
                None => vec![Check::fail(Gate::Parse, format!("cannot digest the bundle directory: {e:#}"), None)],
            };
            // A gate that failed here did not pass: drop its pass, keep gate order.
            report.checks.retain(|c| c.status != Status::Pass || !fails.iter().any(|f| f.name == c.name));
            report.checks.extend(fails);
            report.checks.sort_by_key(|c| Gate::ALL.iter().position(|g| *g == c.name));
        }
    }
    cache.forget_under(&dir);
    report.valid = !report.checks.iter().any(|c| c.status == Status::Fail);
    if report.valid {
        // Schema-valid JSON that the types reject would be a bug in the
        // generated schema; report it rather than pass silently. (Deserialized
        // from a borrow: no copy of the document.)
        use serde::Deserialize as _;
        if let Err(e) = Bundle::deserialize(&value) {
            report.checks.push(Check::fail(
                Gate::Schema,
                format!("the bundle does not match agentplane's bundle types: {e}"),
                Some(""),
            ));
            report.valid = false;
        }
    }
    report.manifest_value = Some(value);
    report
}

impl Report {
    /// The governance context block, carried into the artifact.
    pub fn governance_context(&self) -> Option<&Value> {
        self.manifest_value.as_ref().and_then(|v| at(v, "/spec/governanceContext"))
    }

    /// The policy lane, when the manifest names a known one.
    pub fn lane(&self) -> Option<super::model::Lane> {
        let lane = self.manifest_value.as_ref().and_then(|v| at(v, "/spec/policy/lane"))?;
        super::model::Lane::deserialize(lane).ok()
    }

    /// The manifest's `metadata` block.
    pub fn metadata(&self) -> Option<&Value> {
        self.manifest_value.as_ref().and_then(|v| v.get("metadata"))
    }

    /// The bundle's extension blocks (every `spec` member beyond the core ones).
    pub fn extensions(&self) -> serde_json::Map<String, Value> {
        self.manifest_value.as_ref().map(crate::evidence::artifacts::bundle_extensions).unwrap_or_default()
    }

    /// This report holding only what an artifact takes of the manifest (moved
    /// out of it, not copied): what reports kept until their artifacts are
    /// written hold, so that many of them cost no more than those parts.
    pub fn slimmed(mut self) -> Report {
        let Some(Value::Object(mut whole)) = self.manifest_value.take() else { return self };
        let mut kept = serde_json::Map::new();
        if let Some(m) = whole.remove("metadata") {
            kept.insert("metadata".into(), m);
        }
        if let Some(Value::Object(spec)) = whole.remove("spec") {
            let mut s = serde_json::Map::new();
            for (k, v) in spec {
                match (k.as_str(), v) {
                    ("policy", Value::Object(mut p)) => {
                        if let Some(lane) = p.remove("lane") {
                            s.insert(k, Value::Object([("lane".to_string(), lane)].into_iter().collect()));
                        }
                    }
                    ("governanceContext", v) => {
                        s.insert(k, v);
                    }
                    (name, v) if crate::evidence::artifacts::is_extension(name) => {
                        s.insert(k, v);
                    }
                    _ => {}
                }
            }
            kept.insert("spec".into(), Value::Object(s));
        }
        self.manifest_value = Some(Value::Object(kept));
        self
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn license_policy(v: &Value) -> Check {
    const NAME: Gate = Gate::LicensePolicy;
    const PTR: &str = "/metadata/licensePolicy/allowAGPL";
    match at(v, PTR) {
        Some(Value::Bool(false)) => Check::pass(NAME),
        Some(Value::Bool(true)) => {
            Check::fail(NAME, "allowAGPL is true; bundles must not ship AGPL code".into(), Some(PTR))
        }
        Some(other) => Check::fail(NAME, format!("allowAGPL is {}, expected false", kind_of(other)), Some(PTR)),
        None => Check::warn(NAME, "no licensePolicy.allowAGPL declared".into(), Some("/metadata")),
    }
}

fn max_run_seconds(v: &Value) -> Check {
    const NAME: Gate = Gate::MaxRunSeconds;
    const PTR: &str = "/spec/policy/maxRunSeconds";
    match at(v, PTR) {
        None => Check::fail(
            NAME,
            "maxRunSeconds is not set; every bundle must say how long it may run".into(),
            Some("/spec/policy"),
        ),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(s) if (5..=3600).contains(&s) => Check::pass(NAME),
            Some(s) => Check::fail(NAME, format!("maxRunSeconds is {s}, outside 5–3600"), Some(PTR)),
            None => Check::fail(NAME, format!("maxRunSeconds is {n}, not a whole number in 5–3600"), Some(PTR)),
        },
        Some(other) => Check::fail(NAME, format!("maxRunSeconds is {}, not an integer", kind_of(other)), Some(PTR)),
    }
}

/// Resolves bundle paths, each distinct path once per bundle and each path
/// component's `lstat` once (bundles name several paths under the same
/// directories). Two rules, the same the loader and the runners use:
/// [`Resolver::resolve`] is root-relative (`spec.artifacts.outDir`);
/// [`Resolver::resolve_bundle`] is the bundle-path rule of
/// [`fsx::resolve_bundle_path`] (`spec.smoke.script`, `spec.vm.kernel`,
/// `spec.vm.modulePath`): `./x` and `../x` from the bundle directory, other
/// relative paths from the root and, when nothing is there, from the bundle
/// directory. Either way the result must stay inside the root.
/// A path as written and whether it is a bundle path (not root-relative).
type Key = (bool, String);

struct Resolver<'r> {
    root: &'r Path,
    dir: &'r Path,
    seen: std::cell::RefCell<Vec<(Key, (PathBuf, bool))>>,
    cache: &'r fsx::LstatCache,
}

impl<'r> Resolver<'r> {
    fn new(root: &'r Path, dir: &'r Path, cache: &'r fsx::LstatCache) -> Self {
        Resolver { root, dir, seen: Default::default(), cache }
    }

    /// A root-relative path.
    fn resolve(&self, rel: &str) -> (PathBuf, bool) {
        self.memo(false, rel)
    }

    /// A bundle path: see [`fsx::resolve_bundle_path`].
    fn resolve_bundle(&self, rel: &str) -> (PathBuf, bool) {
        self.memo(true, rel)
    }

    fn memo(&self, bundle: bool, rel: &str) -> (PathBuf, bool) {
        if let Some((_, r)) = self.seen.borrow().iter().find(|((b, k), _)| *b == bundle && k == rel) {
            return r.clone();
        }
        let r = match bundle {
            true => fsx::resolve_bundle_path(self.root, self.dir, rel, self.cache),
            false => fsx::resolve_in_root_cached(self.root, rel, self.cache),
        };
        self.seen.borrow_mut().push(((bundle, rel.to_string()), r.clone()));
        r
    }

    /// The directory of the nearest bundle other than this one that holds
    /// `resolved` (a `bundle.json` in an ancestor between it and the root),
    /// or `None` when the nearest is this bundle's own directory or there is none.
    fn other_bundle_holding(&self, resolved: &Path) -> Option<PathBuf> {
        // This bundle's own directory holds the manifest just read: no need to look.
        let nearest = resolved
            .ancestors()
            .skip(1)
            .take_while(|a| fsx::is_under(a, self.root) && *a != self.root)
            .find(|a| *a == self.dir || std::fs::symlink_metadata(a.join("bundle.json")).is_ok())?;
        (nearest != self.dir).then(|| nearest.to_path_buf())
    }
}

fn paths_inside_root(resolver: &Resolver, v: &Value) -> Vec<Check> {
    let root = resolver.root;
    const NAME: Gate = Gate::PathsInsideRoot;
    let mut paths: Vec<(String, &str)> = Vec::new();
    // Only outDir (and the mounts below) are root-relative; the rest are bundle paths.
    const BUNDLE_PATHS: [&str; 3] = ["/spec/smoke/script", "/spec/vm/modulePath", "/spec/vm/kernel"];
    for ptr in ["/spec/smoke/script", "/spec/vm/modulePath", "/spec/artifacts/outDir", "/spec/vm/kernel"] {
        if let Some(Value::String(s)) = at(v, ptr) {
            paths.push((ptr.to_string(), s));
        }
    }
    if let Some(Value::Array(mounts)) = at(v, "/spec/vm/mounts") {
        for (i, m) in mounts.iter().enumerate() {
            if let Some(Value::String(s)) = m.get("source") {
                paths.push((format!("/spec/vm/mounts/{i}/source"), s));
            }
        }
    }
    let mut out = Vec::new();
    for (ptr, p) in paths {
        if p.is_empty() {
            out.push(Check::fail(NAME, "the path is empty".into(), Some(&ptr)));
            continue;
        }
        if p.contains('\0') {
            out.push(Check::fail(NAME, "the path contains a NUL byte".into(), Some(&ptr)));
            continue;
        }
        // An absolute mount source is a path on the executor's host, not in
        // the bundle: not an escape, but worth seeing; placement admits it
        // only on an executor that allows it (`capabilities.hostPaths`).
        if ptr.starts_with("/spec/vm/mounts/") && p.starts_with('/') {
            out.push(Check::warn(
                NAME,
                format!("`{p}` is a host path on the executor: placement requires an executor whose capabilities.hostPaths allow it"),
                Some(&ptr),
            ));
            continue;
        }
        let (resolved, inside) = match BUNDLE_PATHS.contains(&ptr.as_str()) {
            true => resolver.resolve_bundle(p),
            false => resolver.resolve(p),
        };
        if !inside {
            out.push(Check::fail(
                NAME,
                format!("`{p}` resolves to `{}`, outside the root `{}`", resolved.display(), root.display()),
                Some(&ptr),
            ));
        }
    }
    if !out.iter().any(|c| c.status == Status::Fail) {
        out.insert(0, Check::pass(NAME));
    }
    out
}

/// The absolute host paths a bundle mounts (`spec.vm.mounts[].source`).
pub fn host_paths(v: &Value) -> Vec<String> {
    let Some(Value::Array(mounts)) = at(v, "/spec/vm/mounts") else { return Vec::new() };
    mounts
        .iter()
        .filter_map(|m| m.get("source").and_then(Value::as_str))
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .collect()
}

/// Top-level folders of a project that are never evidence directories: the
/// repository, agentplane's keys and state, the inventory, schemas and source.
pub const RESERVED_DIRS: [&str; 6] = [".git", ".agentplane", "state", "fleet", "schemas", "src"];

/// Why `resolved` (a canonical outDir inside `root`) can never be one,
/// whatever it holds: the root itself, the bundle's own directory or one
/// holding it, a bundle directory, or a reserved folder or anything inside one
/// (and any `.git` or `.agentplane` at any depth). `None` when none applies.
pub fn out_dir_misplaced(root: &Path, bundle_dir: &Path, resolved: &Path) -> Option<String> {
    misplaced_by_name(root, bundle_dir, resolved).or_else(|| {
        std::fs::symlink_metadata(resolved.join("bundle.json"))
            .is_ok()
            .then(|| "outDir is a bundle directory (it holds a bundle.json)".into())
    })
}

/// [`out_dir_misplaced`] without looking at the disk: the rules on the path alone.
fn misplaced_by_name(root: &Path, bundle_dir: &Path, resolved: &Path) -> Option<String> {
    if fsx::same_path(resolved, root) {
        return Some("outDir is the project root itself; use a folder under it".into());
    }
    if fsx::is_under(bundle_dir, resolved) {
        // Evidence is excluded from the bundle digest: an outDir holding the
        // bundle would leave the digest covering nothing.
        return Some("outDir is the bundle directory or contains it; use a folder beside it".into());
    }
    // The parts of the path below the root: split on bytes when it is in
    // normal form (walking `Components` three times was most of this check).
    let parts: Vec<&std::ffi::OsStr> = match fsx::rel_bytes(root, resolved) {
        Some(rest) => rest.split(|&b| b == b'/').map(std::ffi::OsStr::from_bytes).collect(),
        None => resolved.strip_prefix(root).unwrap_or(resolved).components().map(|c| c.as_os_str()).collect(),
    };
    if let Some(first) = parts.first().and_then(|c| c.to_str())
        && RESERVED_DIRS.contains(&first)
    {
        let is = if parts.len() == 1 { "is" } else { "is inside" };
        return Some(format!("outDir {is} `{first}/`, which holds the project's own files, never evidence"));
    }
    if let Some(c) = parts.iter().find(|c| **c == ".git" || **c == ".agentplane") {
        return Some(format!("outDir is in a `{}` folder, never evidence", c.to_string_lossy()));
    }
    None
}

fn out_dir_safe(resolver: &Resolver, v: &Value, bundle_dir: &Path) -> Check {
    const NAME: Gate = Gate::OutDirSafe;
    const PTR: &str = "/spec/artifacts/outDir";
    let p = match at(v, PTR) {
        Some(Value::String(p)) if !p.is_empty() && !p.contains('\0') => p,
        Some(Value::String(_)) => return Check::fail(NAME, "outDir is empty or holds a NUL byte".into(), Some(PTR)),
        Some(other) => return Check::fail(NAME, format!("outDir is {}, not a path", kind_of(other)), Some(PTR)),
        None => return Check::fail(NAME, "no outDir is named".into(), Some("/spec/artifacts")),
    };
    let (resolved, inside) = resolver.resolve(p);
    if !inside {
        return Check::fail(NAME, format!("`{p}` is outside the root; evidence is written only under it"), Some(PTR));
    }
    // A folder not there yet holds no bundle and nothing foreign.
    let missing = resolver.cache.known_missing(resolver.root, &resolved);
    let misplaced = match missing {
        true => misplaced_by_name(resolver.root, bundle_dir, &resolved),
        false => out_dir_misplaced(resolver.root, bundle_dir, &resolved),
    };
    if let Some(why) = misplaced {
        return Check::fail(NAME, format!("`{p}`: {why}"), Some(PTR));
    }
    if missing {
        return Check::pass(NAME);
    }
    match crate::evidence::chain::first_foreign(&resolved) {
        Ok(None) => Check::pass(NAME),
        Ok(Some(f)) => {
            let what = fsx::escape_bytes(f.path.strip_prefix(resolver.root).unwrap_or(&f.path).as_os_str().as_bytes());
            Check::fail(
                NAME,
                format!(
                    "`{p}` holds `{what}` ({}), which agentplane did not write; validate would move it aside, so it refuses",
                    f.what
                ),
                Some(PTR),
            )
        }
        Err(e) => Check::fail(NAME, format!("`{p}` cannot be inspected: {e:#}"), Some(PTR)),
    }
}

/// `listed_regular`: whether the bundle directory's listing saw a path as a
/// regular file (then it need not be opened to know it is one).
fn smoke_script_present(resolver: &Resolver, v: &Value, listed_regular: &dyn Fn(&Path) -> bool) -> Check {
    const NAME: Gate = Gate::SmokeScriptPresent;
    const PTR: &str = "/spec/smoke/script";
    let Some(Value::String(p)) = at(v, PTR) else {
        return Check::fail(NAME, "no smoke script is named".into(), Some("/spec/smoke"));
    };
    let (resolved, inside) = resolver.resolve_bundle(p);
    if !inside {
        return Check::fail(NAME, format!("`{p}` is outside the root"), Some(PTR));
    }
    // Looked at, never opened: a FIFO neither blocks nor passes, a device
    // is not woken.
    let opened = match listed_regular(&resolved) {
        true => Ok(()),
        false => fsx::readable_regular(&resolved),
    };
    match opened {
        // A copied bundle still naming the original's script would run it.
        Ok(_) => match resolver.other_bundle_holding(&resolved) {
            Some(other) => Check::warn(
                NAME,
                format!(
                    "`{p}` is `{}`, inside another bundle (`{}`); a copied bundle should name its own script, e.g. `./smoke.sh`",
                    fsx::rel_to(resolver.root, &resolved),
                    fsx::rel_to(resolver.root, &other)
                ),
                Some(PTR),
            ),
            None => Check::pass(NAME),
        },
        Err(e) if e.kind == Some(fsx::NotRegular::Missing) => {
            Check::fail(NAME, format!("`{p}` does not exist (looked for `{}`)", resolved.display()), Some(PTR))
        }
        Err(e) => match e.kind {
            Some(k) => Check::fail(NAME, format!("`{p}` {k}; the smoke script must be a regular file"), Some(PTR)),
            None => Check::fail(NAME, format!("`{p}`: {e}"), Some(PTR)),
        },
    }
}

fn backend_supported(v: &Value) -> Check {
    const NAME: Gate = Gate::BackendSupported;
    const PTR: &str = "/spec/vm/backendIntent";
    match at(v, PTR) {
        // agent-machine is upstream vocabulary that no agentplane runner runs.
        Some(Value::String(b)) if Backend::parse(b).is_some_and(|b| b != Backend::AgentMachine) => Check::pass(NAME),
        Some(Value::String(b)) => Check::fail(NAME, format!("backend `{b}` is not one agentplane can run"), Some(PTR)),
        Some(other) => Check::fail(NAME, format!("backendIntent is {}, not a string", kind_of(other)), Some(PTR)),
        None => Check::fail(NAME, "no backendIntent is declared".into(), Some("/spec/vm")),
    }
}

mod secrets;
#[cfg(test)]
mod tests;
