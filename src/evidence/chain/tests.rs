//! Tests of the parent module.

use super::*;

#[test]
fn only_agentplane_evidence_is_its_own() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("out");
    assert_eq!(first_foreign(&dir).unwrap(), None, "a missing directory holds nothing");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join(LOCK_FILE), "").unwrap();
    assert_eq!(first_foreign(&dir).unwrap(), None);
    // Without the chain marker an artifact name is just a file.
    fs::write(dir.join("run-artifact.json"), "{}").unwrap();
    assert_eq!(first_foreign(&dir).unwrap().unwrap().path, dir.join("run-artifact.json"));
    fs::write(dir.join(CHAIN_FILE), "").unwrap();
    for f in ["validation-artifact.json", "promotion-artifact-7.json", "run.stdout.log", "checkpoint", "tlog-index"] {
        fs::write(dir.join(f), "x").unwrap();
    }
    fs::create_dir_all(dir.join("products/any/thing")).unwrap();
    fs::create_dir_all(dir.join("runs/r1/products")).unwrap();
    fs::write(dir.join("runs/r1").join(CHAIN_FILE), "").unwrap();
    assert_eq!(first_foreign(&dir).unwrap(), None);
    for bad in ["README.md", "promotion-artifact-x.json", "runs/r1/notes.txt", "runs/r1/runs"] {
        let p = dir.join(bad);
        fs::write(&p, "x").unwrap();
        assert_eq!(first_foreign(&dir).unwrap().map(|f| f.path), Some(p.clone()), "{bad}");
        fs::remove_file(&p).unwrap();
    }
    std::os::unix::fs::symlink("/etc/passwd", dir.join("checkpoint2")).unwrap();
    assert_eq!(first_foreign(&dir).unwrap().unwrap().what, "a symbolic link");
}

#[test]
fn archive_never_moves_a_foreign_file() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    fs::write(dir.join(CHAIN_FILE), "torn").unwrap();
    fs::write(dir.join("HEAD"), "ref: refs/heads/main\n").unwrap();
    let err = archive(dir).unwrap_err();
    assert_eq!(crate::error::exit_of(&err), crate::exit::Exit::Error);
    assert!(format!("{err:#}").contains("HEAD"), "{err:#}");
    assert!(dir.join("HEAD").is_file() && !dir.join(RUNS_DIR).exists());
    fs::remove_file(dir.join("HEAD")).unwrap();
    archive(dir).unwrap();
    assert!(!dir.join(CHAIN_FILE).exists() && dir.join(RUNS_DIR).is_dir());
    let run = fs::read_dir(dir.join(RUNS_DIR)).unwrap().next().unwrap().unwrap().path();
    assert_eq!(fs::read(run.join(CHAIN_FILE)).unwrap(), b"torn", "the chain went with its run");
    assert_eq!(first_foreign(dir).unwrap(), None);
}

#[test]
fn a_torn_tail_is_named_as_an_interrupted_write() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join(CHAIN_FILE), "{\"payloadType\": \"x\"}\n{\"payl").unwrap();
    let err = Chain::read(d.path()).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("ends in a partial line (a write was interrupted)"), "{msg}");
    assert!(msg.contains("agentplane validate BUNDLE") && !msg.contains("DSSE"), "{msg}");
    // A new chain can still start there: the torn one is archived.
    archive(d.path()).unwrap();
    assert!(!d.path().join(CHAIN_FILE).exists());
}

#[test]
fn own_file_names_match_the_writers() {
    use crate::stages::run::{PRODUCTS_DIR, STDERR_LOG, STDOUT_LOG};
    assert!(OWN_FILES.contains(&STDOUT_LOG) && OWN_FILES.contains(&STDERR_LOG));
    assert!(
        OWN_FILES.contains(&crate::evidence::CHECKPOINT_FILE) && OWN_FILES.contains(&crate::evidence::TLOG_INDEX_FILE)
    );
    assert_eq!(PRODUCTS, PRODUCTS_DIR);
}
