//! Secret hygiene of what a run leaves for the evidence (DESIGN §6): product
//! contents and product *names* redacted, and the leak gate — an exact-value
//! scan of everything about to be signed, which fails the run closed (exit 2,
//! nothing containing the value kept) if a secret slipped through anyway.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::fsx;
use crate::runner::redactor::Redactor;
use crate::types::SecretScan;

/// What redaction changed in the products.
#[derive(Debug, Default)]
pub struct Redacted {
    /// Files (relative to the evidence directory) whose contents held a secret.
    pub contents: Vec<String>,
    /// Products renamed because their path held a secret: the new names.
    pub renamed: Vec<String>,
}

/// Rename every product path (file or directory) whose name holds a secret,
/// deepest first, then redact secret values inside product files.
pub fn redact_products(products: &Path, base: &Path, r: &Redactor) -> Result<Redacted> {
    let mut done = Redacted::default();
    if r.is_empty() || !products.exists() {
        return Ok(done);
    }
    // Names first, deepest first, so a renamed directory never hides a child.
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(products)
        .min_depth(1)
        .contents_first(true)
        .into_iter()
        .filter_map(|e| e.ok().map(|e| e.into_path()))
        .collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in paths {
        let Some(name) = p.file_name() else { continue };
        let (clean, hit) = r.redact(name.as_encoded_bytes());
        if !hit {
            continue;
        }
        // Redaction marks are `[redacted:NAME]`: never a `/`, so still one name.
        let to = p.with_file_name(String::from_utf8_lossy(&clean).replace('/', "_"));
        std::fs::rename(&p, &to).with_context(|| "cannot rename a product whose name holds a secret")?;
        // Its final name: its parents may be renamed after it (deepest first).
        let rel = fsx::rel_to(base, &to);
        done.renamed.push(String::from_utf8_lossy(&r.redact(rel.as_bytes()).0).into_owned());
    }
    for e in walkdir::WalkDir::new(products) {
        let e = e?;
        if !e.file_type().is_file() {
            continue;
        }
        let data = std::fs::read(e.path())?;
        let (clean, hit) = r.redact(&data);
        if hit {
            fsx::write_atomic(e.path(), &clean)?;
            done.contents.push(fsx::rel_to(base, e.path()));
        }
    }
    Ok(done)
}

/// The leak gate: scan every file and name about to be signed, and the
/// artifact's own bytes, for an exact secret value. A find removes the files
/// that hold it and fails closed (exit 2) before anything is signed.
pub fn leak_gate(
    r: &Redactor,
    secrets: usize,
    artifact: &[u8],
    files: &[PathBuf],
    names: &[String],
) -> Result<SecretScan> {
    let mut scan = SecretScan { secrets: secrets as u32, files: 0, found: 0 };
    if r.is_empty() {
        return Ok(scan);
    }
    let mut leaked: Vec<String> = Vec::new();
    if r.finds_in(artifact) {
        leaked.push("the RunArtifact".into());
    }
    for n in names {
        if r.finds_in(n.as_bytes()) {
            leaked.push(format!("a file name ({})", String::from_utf8_lossy(&r.redact(n.as_bytes()).0)));
        }
    }
    for f in files {
        scan.files += 1;
        let data = std::fs::read(f).with_context(|| format!("the leak gate cannot read `{}`", f.display()))?;
        if r.finds_in(&data) {
            let _ = std::fs::remove_file(f);
            leaked.push(format!("`{}` (removed)", f.display()));
        }
    }
    scan.files += 1; // the artifact
    if leaked.is_empty() {
        return Ok(scan);
    }
    Err(Problem::error(format!(
        "a secret value was about to be signed into the evidence: {}; nothing holding it was kept",
        leaked.join(", ")
    ))
    .hint("this is a bug in agentplane's redaction: report it; then `agentplane validate` the bundle to start a new chain")
    .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red() -> Redactor {
        Redactor::new([("TOK", b"s3cret-value".as_slice())])
    }

    #[test]
    fn product_names_and_contents_lose_the_secret() {
        let d = tempfile::tempdir().unwrap();
        let products = d.path().join("products");
        std::fs::create_dir_all(products.join("dir-s3cret-value")).unwrap();
        std::fs::write(products.join("dir-s3cret-value/s3cret-value.txt"), "x s3cret-value y").unwrap();
        std::fs::write(products.join("plain.txt"), "nothing").unwrap();
        let done = redact_products(&products, d.path(), &red()).unwrap();
        assert_eq!(
            done.renamed,
            vec![
                "products/dir-[redacted:TOK]/[redacted:TOK].txt".to_string(),
                "products/dir-[redacted:TOK]".to_string()
            ]
        );
        let f = products.join("dir-[redacted:TOK]/[redacted:TOK].txt");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "x [redacted:TOK] y");
        assert_eq!(done.contents, vec!["products/dir-[redacted:TOK]/[redacted:TOK].txt".to_string()]);
        let listing: Vec<String> =
            walkdir::WalkDir::new(&products).into_iter().map(|e| e.unwrap().path().display().to_string()).collect();
        assert!(listing.iter().all(|p| !p.contains("s3cret-value")), "{listing:?}");
    }

    #[test]
    fn the_leak_gate_fails_closed_and_removes_what_holds_the_value() {
        let d = tempfile::tempdir().unwrap();
        let clean = d.path().join("clean.log");
        let dirty = d.path().join("dirty.log");
        std::fs::write(&clean, "fine").unwrap();
        std::fs::write(&dirty, "oops s3cret-value").unwrap();
        let ok = leak_gate(&red(), 1, b"{}", std::slice::from_ref(&clean), &[]).unwrap();
        assert_eq!((ok.files, ok.found), (2, 0));
        let err = leak_gate(&red(), 1, b"{}", &[clean.clone(), dirty.clone()], &[]).unwrap_err();
        assert_eq!(crate::error::exit_of(&err), crate::exit::Exit::Error);
        assert!(!format!("{err:#}").contains("s3cret-value"), "the message itself must not leak");
        assert!(!dirty.exists() && clean.exists());
        assert!(leak_gate(&red(), 1, b"{\"x\": \"s3cret-value\"}", &[], &[]).is_err());
        assert!(leak_gate(&red(), 1, b"{}", &[], &["products/s3cret-value".into()]).is_err());
    }
}
