//! Tests of the parent module.

use super::*;

fn job(bundle: &str, products: &str, script_in_bundle: Option<&str>) -> Job {
    Job {
        script: "/p/elsewhere/smoke.sh".into(),
        script_in_bundle: script_in_bundle.map(PathBuf::from),
        ..Job::for_test(bundle, products)
    }
}

#[test]
fn evidence_is_never_shipped_and_the_bundle_always_is() {
    // (bundle, products, path, shipped)
    let cases = [
        // outDir inside the bundle: all of it stays behind.
        ("/p/b", "/p/b/out/products", "/p/b/out/run-artifact.json", false),
        ("/p/b", "/p/b/out/products", "/p/b/out/products/x", false),
        ("/p/b", "/p/b/out/products", "/p/b/smoke.sh", true),
        // outDir is the bundle: only the products stay behind.
        ("/p/b", "/p/b/products", "/p/b/products/x", false),
        ("/p/b", "/p/b/products", "/p/b/smoke.sh", true),
        ("/p/b", "/p/b/products", "/p/b", true),
        // outDir elsewhere (or above the bundle): the whole bundle goes.
        ("/p/b", "/p/artifacts/b/products", "/p/b/out/x", true),
        ("/p/b", "/p/products", "/p/b", true),
        ("/p/b", "/tmp/replay/products", "/p/b/smoke.sh", true),
    ];
    for (bundle, products, path, want) in cases {
        assert_eq!(ships(&job(bundle, products, None), Path::new(path)), want, "{bundle} {products} {path}");
    }
}

/// A project root with bundle `b` (outDir `b/out` inside it, holding
/// evidence) and its smoke script at `script` (root-relative).
fn project(script: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().canonicalize().unwrap();
    let dir = root.join("b");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("bundle.json"), "{}").unwrap();
    std::fs::write(dir.join("lib/data.txt"), "data").unwrap();
    std::fs::write(out.join("run-artifact.json"), "evidence").unwrap();
    let script = root.join(script);
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::write(&script, "#!/bin/sh\necho good > \"$1/which\"\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (d, root, dir, out, script)
}

fn run_staged(staged: &StagedBundle) -> String {
    let products = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("/bin/sh")
        .arg(&staged.script)
        .arg(products.path())
        .current_dir(&staged.bundle_dir)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(products.path().join("which")).unwrap()
}

#[test]
fn the_staged_copy_digests_as_validated_and_is_what_runs() {
    for script in ["b/smoke.sh", "scripts/smoke.sh"] {
        let (_d, root, dir, out, script) = project(script);
        let validated = digest::compute(&root, &dir, Some(&out), std::slice::from_ref(&script)).unwrap();
        let staged = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap();
        assert_eq!(staged.digest.digest, validated.digest, "{}", script.display());
        assert_eq!(staged.digest.files, validated.files, "the same names, modes and contents");
        assert!(!staged.bundle_dir.join("out").exists(), "evidence is not staged");
        assert_eq!(staged.bundle_dir, staged.root.join("b"));
        // The original changes after staging: the copy does not.
        std::fs::write(&script, "#!/bin/sh\necho evil > \"$1/which\"\n").unwrap();
        std::fs::write(dir.join("lib/data.txt"), "evil").unwrap();
        let again = digest::compute(&staged.root, &staged.bundle_dir, None, std::slice::from_ref(&staged.script));
        assert_eq!(again.unwrap().digest, validated.digest);
        assert_eq!(run_staged(&staged), "good\n", "the staged bytes run");
        let scratch = staged.root.parent().unwrap().to_path_buf();
        assert_eq!(std::fs::metadata(&scratch).unwrap().permissions().mode() & 0o777, 0o700);
        staged.close().unwrap();
        assert!(!scratch.exists());
    }
}

#[test]
fn a_bundle_changed_before_it_was_staged_is_refused_naming_the_file() {
    let (_d, root, dir, out, script) = project("b/smoke.sh");
    let validated = digest::compute(&root, &dir, Some(&out), std::slice::from_ref(&script)).unwrap();
    std::fs::write(&script, "#!/bin/sh\ntouch \"$1/marker\"\n").unwrap();
    std::fs::write(dir.join("new.txt"), "x").unwrap();
    let err = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap_err();
    let refusal = crate::error::refusal_of(&err).expect("a refusal");
    assert_eq!(refusal.code, RefusalCode::BundleChanged);
    assert_eq!(refusal.changed_files, ["b/smoke.sh (changed)", "b/new.txt (added)"]);
    assert!(refusal.message.contains("b/smoke.sh (changed)"), "{}", refusal.message);
    // A mode change is a change too.
    std::fs::write(&script, "#!/bin/sh\necho good > \"$1/which\"\n").unwrap();
    std::fs::remove_file(dir.join("new.txt")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap_err();
    assert_eq!(crate::error::refusal_of(&err).unwrap().changed_files, ["b/smoke.sh (changed)"]);
}

#[test]
fn non_utf8_names_and_inner_links_stage_and_digest_identically() {
    let (_d, root, dir, out, script) = project("b/smoke.sh");
    std::fs::write(dir.join(OsStr::from_bytes(b"f\xff")), "one").unwrap();
    std::fs::create_dir(dir.join(OsStr::from_bytes(b"d\xfe"))).unwrap();
    std::fs::write(dir.join(OsStr::from_bytes(b"d\xfe/g")), "two").unwrap();
    std::os::unix::fs::symlink("lib/data.txt", dir.join("link")).unwrap();
    let validated = digest::compute(&root, &dir, Some(&out), std::slice::from_ref(&script)).unwrap();
    assert!(validated.files.iter().any(|f| f.path == "b/f\\xff"));
    let staged = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap();
    assert_eq!(staged.digest.files, validated.files);
    assert_eq!(staged.digest.digest, validated.digest);
    assert_eq!(std::fs::read(staged.bundle_dir.join(OsStr::from_bytes(b"d\xfe/g"))).unwrap(), b"two");
    assert_eq!(std::fs::read_link(staged.bundle_dir.join("link")).unwrap(), Path::new("lib/data.txt"));
}

#[test]
fn specials_and_absolute_links_are_not_staged() {
    let (_d, root, dir, out, script) = project("b/smoke.sh");
    let validated = digest::compute(&root, &dir, Some(&out), std::slice::from_ref(&script)).unwrap();
    // An absolute link, even one inside the bundle, would read the original.
    std::os::unix::fs::symlink(dir.join("lib/data.txt"), dir.join("abs")).unwrap();
    let err = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap_err();
    assert!(format!("{err:#}").contains("`b/abs` is a symbolic link to the absolute path"), "{err:#}");
    std::fs::remove_file(dir.join("abs")).unwrap();
    nix::unistd::mkfifo(&dir.join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    let err = stage_bundle(&root, &dir, Some(&out), &script, &validated).unwrap_err();
    assert!(err.downcast_ref::<digest::BundleFilesError>().is_some(), "{err:#}");
}

#[test]
fn a_script_outside_the_bundle_is_staged_beside_it() {
    let inside = job("/p/b", "/o/products", Some("t/smoke.sh"));
    let staged = stage_script(&inside, Path::new("/run"), |_, _| panic!("nothing to copy")).unwrap();
    assert_eq!(staged, Path::new("/run/bundle/t/smoke.sh"));
    let outside = job("/p/b", "/o/products", None);
    let mut copied = None;
    let staged = stage_script(&outside, Path::new("/run"), |from, to| {
        copied = Some((from.to_path_buf(), to.to_path_buf()));
        Ok(())
    })
    .unwrap();
    assert_eq!(staged, Path::new("/run/smoke-script"));
    assert_eq!(copied, Some((PathBuf::from("/p/elsewhere/smoke.sh"), staged)));
}

#[test]
fn env_names_are_shell_names() {
    for ok in ["A", "_", "_X1", "AGENTPLANE_RUN_ID", "lower_case", "a1"] {
        assert!(is_env_name(ok), "{ok}");
    }
    for bad in ["", "1X", "BAD-NAME", "A B", "vault:x", "Ä", "X=1", "A\0"] {
        assert!(!is_env_name(bad), "{bad:?}");
    }
}

#[test]
fn env_file_fixes_values_and_skips_what_a_shell_cannot_carry() {
    let env = vec![
        ("PATH".to_string(), "/host/bin".to_string()),
        ("TOKEN".to_string(), "a'b\nc".to_string()),
        ("BAD-NAME".to_string(), "x".to_string()),
        ("NUL".to_string(), "a\0b".to_string()),
        ("HOME".to_string(), "/h".to_string()),
    ];
    let f = env_file("# env\n", &env, &[("PATH", "/guest/bin")], |k, v| {
        if k == "HOME" { format!("${{R_HOME-{}}}", shell_quote(v)) } else { shell_quote(v) }
    });
    assert_eq!(f.skipped, ["BAD-NAME", "NUL"]);
    assert_eq!(f.text, "# env\nexport TOKEN='a'\\''b\nc'\nexport HOME=${R_HOME-'/h'}\nexport PATH='/guest/bin'\n");
}

#[test]
fn env_file_round_trips_through_sh() {
    let nasty = "it's \"q\" $HOME `id` \\ \n end";
    let env = vec![("V".to_string(), nasty.to_string())];
    let f = env_file("", &env, &[], |_, v| shell_quote(v));
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{}printf %s \"$V\"", f.text))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
}

#[test]
fn shell_quote_survives_sh() {
    assert_eq!(shell_quote("plain"), "'plain'");
    assert_eq!(shell_quote("it's $HOME `x`"), r"'it'\''s $HOME `x`'");
    assert_eq!(shell_quote(""), "''");
    let nasty = "it's \"quoted\" $HOME `id` \\ \n end";
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("printf %s {}", shell_quote(nasty)))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
}

fn secret(name: &str, value: &str) -> Secret {
    Secret { name: name.into(), env_name: name.into(), value: value.into() }
}

#[test]
fn redaction_replaces_every_occurrence() {
    let s = vec![secret("TOK", "s3cret")];
    let (out, hit) = redactor(&s).redact(b"a s3cret b s3crets3cret");
    assert!(hit);
    assert_eq!(out, b"a [redacted:TOK] b [redacted:TOK][redacted:TOK]".to_vec());
    let (out, hit) = redactor(&s).redact(b"nothing here");
    assert!(!hit);
    assert_eq!(out, b"nothing here".to_vec());
}

#[test]
fn redaction_leaves_short_values_and_status_events_alone() {
    let s = vec![secret("PIN", "42"), secret("TOK", "s3cret")];
    let (out, hit) = redactor(&s).redact(b"42 s3cret");
    assert!(hit);
    assert_eq!(out, b"42 [redacted:TOK]".to_vec());
    let r = redactor(&s);
    let mut live = LiveRedactor::new(&r);
    let Event::Stderr(mut d) = live.event(Event::Stderr(b"x s3cret".to_vec())) else { panic!() };
    let [_, Event::Stderr(rest)] = live.finish() else { panic!() };
    d.extend(rest);
    assert_eq!(d, b"x [redacted:TOK]".to_vec());
    let Event::Status(m) = live.event(Event::Status("s3cret".into())) else { panic!() };
    assert_eq!(m, "s3cret", "status lines are agentplane's own");
    assert_eq!(interpreter(b"#!/usr/bin/env bash\nset -euo pipefail\n"), ["/usr/bin/env", "bash"]);
    assert_eq!(interpreter(b"#! /bin/bash -e  \n"), ["/bin/bash", "-e"]);
    assert_eq!(interpreter(b"echo no shebang\n"), ["/bin/sh"]);
    assert_eq!(interpreter(b"#!\n"), ["/bin/sh"]);
    assert_eq!(format!("{:?}", s[1]), "Secret(TOK)", "Debug never shows a value");
}

#[test]
fn stop_sequence_is_term_grace_kill() {
    let mut seq = StopSequence::new(Duration::from_millis(50));
    let t0 = Instant::now();
    assert_eq!(seq.due(false, t0), None);
    assert_eq!(seq.due(true, t0), Some(Stop::Term));
    seq.sent(Stop::Term);
    assert!(seq.begun());
    assert_eq!(seq.due(true, Instant::now()), None, "grace first");
    let later = Instant::now() + Duration::from_millis(60);
    assert_eq!(seq.due(true, later), Some(Stop::Kill));
    seq.sent(Stop::Kill);
    assert!(seq.killed_at().is_some());
    assert_eq!(seq.due(true, later + Duration::from_secs(9)), None);
    assert_eq!((Stop::Term.name(), Stop::Kill.signal().as_str()), ("TERM", "SIGKILL"));
    assert_eq!(signal_name(15), "SIGTERM");
    assert_eq!(signal_name(200), "signal 200");
}

#[test]
fn blocking_stop_returns_early_or_kills_after_the_grace() {
    let mut sent = Vec::new();
    let mut polls = 0;
    let r = stop(
        Duration::from_secs(5),
        Duration::from_millis(1),
        |s| sent.push(s),
        || {
            polls += 1;
            Ok((polls == 3).then_some("ended"))
        },
    );
    assert_eq!((r.unwrap(), sent.as_slice()), (Some("ended"), [Stop::Term].as_slice()));

    let mut sent = Vec::new();
    let t0 = Instant::now();
    let r = stop(Duration::from_millis(30), Duration::from_millis(5), |s| sent.push(s), || Ok(None::<()>));
    assert_eq!((r.unwrap(), sent.as_slice()), (None, [Stop::Term, Stop::Kill].as_slice()));
    assert!(t0.elapsed() >= Duration::from_millis(30));
}

#[test]
fn which_searches_path_for_bare_names_only() {
    assert!(which("sh").is_some_and(|p| p.is_absolute() && p.ends_with("sh")));
    assert_eq!(which("/no/such/tool"), Some(PathBuf::from("/no/such/tool")));
    assert_eq!(which("agentplane-no-such-tool-xyz"), None);
}
