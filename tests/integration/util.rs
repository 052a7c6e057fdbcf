//! Test helpers: a temporary project root and the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_agentplane");

/// The repository root (for the committed example bundles and fixtures).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/compat` (real upstream data), when the shared folder is beside
/// the repository. When it is absent the calling test is skipped with a
/// printed notice, unless `AGENTPLANE_REQUIRE_COMPAT=1` (set by `.ci/run`, so
/// CI never skips silently), which makes its absence a failure.
#[allow(clippy::print_stdout)] // the skip notice
pub fn compat(test: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/compat");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("AGENTPLANE_REQUIRE_COMPAT").is_ok_and(|v| v == "1") {
        panic!("{test}: ../shared/compat is absent and AGENTPLANE_REQUIRE_COMPAT=1 requires it");
    }
    println!("note: {test} skipped: ../shared/compat (the upstream corpus) is not beside the repository");
    None
}

/// A temporary project root.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root { dir: tempfile::Builder::new().prefix("agentplane-test-").tempdir().expect("tempdir") }
    }

    /// A root holding a copy of the repo's `bundles/example-agent` and a key.
    pub fn with_example() -> Root {
        let r = Root::new();
        r.copy_bundle("example-agent");
        r.keygen();
        r
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    pub fn json(&self, rel: &str) -> serde_json::Value {
        serde_json::from_str(&self.read(rel)).unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"))
    }

    /// Copy `bundles/<name>` from the repository.
    pub fn copy_bundle(&self, name: &str) {
        copy_dir(&repo().join("bundles").join(name), &self.join(&format!("bundles/{name}")));
    }

    /// Create the default signing key under the root.
    pub fn keygen(&self) {
        self.cmd(&["keygen"]).ok();
    }

    pub fn pubkey(&self) -> String {
        self.join(".agentplane/keys/signing.pub").display().to_string()
    }

    /// Run agentplane with `--root` set to this root.
    pub fn cmd(&self, args: &[&str]) -> Run {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.path()).args(args).current_dir(self.path());
        c.env_remove("AGENTPLANE_SIGNING_KEY").env("NO_COLOR", "1");
        Run::from(c.output().expect("run agentplane"))
    }

    /// Run with extra environment variables.
    pub fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = Command::new(BIN);
        c.arg("--root").arg(self.path()).args(args).current_dir(self.path());
        c.env_remove("AGENTPLANE_SIGNING_KEY").env("NO_COLOR", "1");
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.output().expect("run agentplane"))
    }

    /// validate, place, run and emit the bundle; panics on failure.
    pub fn up(&self, bundle: &str) -> Run {
        self.cmd(&["up", bundle]).ok()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

/// A finished run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        let run = Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        };
        assert!(!run.stderr.contains("panicked"), "agentplane panicked:\n{}", run.stderr);
        run
    }
}

impl Run {
    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
    pub fn ok(self) -> Run {
        self.expect(0)
    }
    pub fn failed(self) -> Run {
        self.expect(1)
    }
    pub fn error(self) -> Run {
        self.expect(2)
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
    pub fn stderr_has(self, s: &str) -> Run {
        assert!(self.stderr.contains(s), "stderr lacks {s:?}:\n{}", self.stderr);
        self
    }
    pub fn stdout_has(self, s: &str) -> Run {
        assert!(self.stdout.contains(s), "stdout lacks {s:?}:\n{}", self.stdout);
        self
    }
}

/// Replace run-specific values so snapshots are stable.
pub fn redact(s: &str, root: &Path) -> String {
    let mut out = s.replace(&root.display().to_string(), "[ROOT]");
    for (pat, with) in [
        (r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]"),
        (r"[0-9a-f]{64}", "[HEX]"),
        (r"sha256:[0-9a-f]{12}…", "sha256:[SHORT]…"),
        (r"\b[0-9a-f]{16}\b", "[KEYID]"),
        (r"\d+ ms", "[N] ms"),
        (r"\d{4}-\d\d-\d\dT[0-9:.]+Z", "[TIME]"),
        (r"\d{8}t\d{6}z-[0-9a-f]{12}", "[RUNID]"),
    ] {
        out = regex_lite_replace(&out, pat, with);
    }
    out
}

/// Minimal regex replacement via the `regex` crate that insta brings in.
fn regex_lite_replace(s: &str, pat: &str, with: &str) -> String {
    regex::Regex::new(pat).unwrap().replace_all(s, with).into_owned()
}

impl Root {
    /// Write a bundle `bundles/<name>` with the given smoke script; `edit`
    /// adjusts the manifest (JSON) before it is written.
    pub fn bundle(&self, name: &str, smoke: &str, edit: impl FnOnce(&mut serde_json::Value)) {
        let mut v = serde_json::json!({
            "apiVersion": "agentplane.socioprophet.org/v0.1",
            "kind": "Bundle",
            "metadata": {"name": name, "version": "0.1.0", "createdAt": "2026-11-22T00:00:00Z",
                         "licensePolicy": {"allowAGPL": false}},
            "spec": {
                "vm": {"backendIntent": "lima-process", "modulePath": format!("bundles/{name}/vm.nix")},
                "secrets": {"required": []},
                "policy": {"lane": "staging", "maxRunSeconds": 20, "failOnTimeout": true},
                "artifacts": {"outDir": format!("artifacts/{name}")},
                "smoke": {"script": format!("bundles/{name}/smoke.sh")}
            }
        });
        edit(&mut v);
        self.write(&format!("bundles/{name}/bundle.json"), serde_json::to_vec_pretty(&v).unwrap());
        self.write(&format!("bundles/{name}/smoke.sh"), smoke);
    }
}

impl Root {
    /// Write a typed v0.1 inventory with `executors` to `inv.json`; returns its root-relative path.
    pub fn inventory(&self, executors: &[serde_json::Value], default: &str) -> String {
        let inv = serde_json::json!({
            "apiVersion": "agentplane.socioprophet.org/v0.1",
            "kind": "FleetInventory",
            "metadata": {"name": "test", "version": "0.1.0", "createdAt": "2026-11-22T00:00:00Z"},
            "builders": [],
            "executors": executors,
            "defaultExecutor": default,
            "selectionPolicy": {"preferHealthy": true, "requireEnabled": true}
        });
        self.write("inv.json", serde_json::to_vec_pretty(&inv).unwrap());
        "inv.json".into()
    }
}

/// A JSON document with run-specific values (times, durations, ids, digests,
/// host facts, absolute paths) replaced, so snapshots are stable.
pub fn redact_json(v: &serde_json::Value, root: &Path) -> serde_json::Value {
    use serde_json::Value;
    const VARYING: &[&str] = &[
        "capturedAt",
        "startedAt",
        "endedAt",
        "durationMs",
        "environment",
        "runId",
        "sessionRef",
        "reviewSessionRef",
        "promotionReceiptRef",
        "sourcePromotionReceiptRef",
        "reversalHandle",
        "keyId",
        "keyid",
        "signer",
        "bundleRev",
        "hostname",
        "observedPlatform",
    ];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = if VARYING.contains(&k.as_str()) && !x.is_null() {
                        Value::String(format!("[{k}]"))
                    } else {
                        redact_json(x, root)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| redact_json(x, root)).collect()),
        Value::String(s) => Value::String(redact(s, root)),
        other => other.clone(),
    }
}

impl Run {
    /// `exit N`, stdout, then stderr when there is any, redacted: what a snapshot records.
    pub fn snap(&self, root: &Path) -> String {
        let mut s = format!("exit {}\n{}", self.code, redact(&self.stdout, root));
        if !self.stderr.is_empty() {
            s.push_str(&format!("--- stderr\n{}", redact(&self.stderr, root)));
        }
        s
    }

    /// `exit N` then the one JSON document on stdout, redacted.
    pub fn snap_json(&self, root: &Path) -> String {
        let v = redact_json(&self.json(), root);
        format!("exit {}\n{}", self.code, serde_json::to_string_pretty(&v).unwrap())
    }
}
