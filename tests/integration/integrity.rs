//! What ran, ran alone, and kept its secrets: containment and secret hygiene
//! on the local runner, through the real binary with real escaping processes.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{BIN, Root};

/// Processes whose command line holds `tag` (zombies excluded).
fn alive(tag: &str) -> Vec<String> {
    let out = Command::new("pgrep").args(["-af", tag]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.contains("pgrep")).map(str::to_string).collect()
}

/// A smoke script that leaves escapers behind: a `setsid` child, a
/// double-forked `setsid` daemon, a TERM-ignoring loop, a python daemon that
/// forks and `setsid`s; all tagged with `tag`. Then it does `then`.
fn escaper_script(tag: &str, then: &str) -> String {
    format!(
        "#!/bin/sh\n\
         setsid sh -c 'sleep 600; : {tag}' &\n\
         sh -c '(setsid sh -c \"sleep 601; : {tag}\" &); exit 0'\n\
         setsid sh -c 'trap \"\" TERM; while :; do sleep 1; done; : {tag}' &\n\
         python3 -c 'import os, time, sys\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(602)\n' {tag} &\n\
         i=0; while [ \"$(pgrep -fc {tag})\" -lt 4 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n\
         sleep 1\n\
         {then}\n"
    )
}

fn wait_gone(tag: &str) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let left = alive(tag);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn escapers_die_when_the_script_exits_and_the_receipt_says_how() {
    let r = Root::new();
    r.keygen();
    let tag = format!("ap-esc-exit-{}", std::process::id());
    r.bundle("esc", &escaper_script(&tag, "exit 0"), |_| {});
    r.up("bundles/esc");
    assert_eq!(wait_gone(&tag), Vec::<String>::new(), "an escaper outlived the run");
    let run = r.json("artifacts/esc/run-artifact.json");
    let c = &run["containment"];
    assert_eq!(c["survivors"], 0, "{c}");
    assert_eq!(c["checked"], true);
    assert!(["pid-namespace", "process-group+sweep"].contains(&c["mechanism"].as_str().unwrap()), "{c}");
    assert!(c["killedAtEnd"].as_u64().unwrap() >= 1, "the escapers left at the end were counted: {c}");
    r.cmd(&["verify", "artifacts/esc", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn escapers_die_at_the_deadline_too() {
    let r = Root::new();
    r.keygen();
    let tag = format!("ap-esc-deadline-{}", std::process::id());
    r.bundle("slow", &escaper_script(&tag, &format!("sleep 300; : {tag}")), |v| {
        v["spec"]["policy"]["maxRunSeconds"] = 5.into()
    });
    r.cmd(&["up", "bundles/slow"]).failed();
    assert_eq!(wait_gone(&tag), Vec::<String>::new(), "an escaper outlived the deadline");
    let run = r.json("artifacts/slow/run-artifact.json");
    assert_eq!(run["timedOut"], true);
    assert_eq!(run["containment"]["survivors"], 0);
}

#[test]
fn the_forced_fallback_is_recorded_honestly_and_still_leaves_no_survivor() {
    let r = Root::new();
    r.keygen();
    let tag = format!("ap-esc-sweep-{}", std::process::id());
    r.bundle("sweep", &escaper_script(&tag, "exit 0"), |_| {});
    r.cmd_env(&["up", "bundles/sweep"], &[("AGENTPLANE_CONTAINMENT", "sweep")]).ok();
    assert_eq!(wait_gone(&tag), Vec::<String>::new(), "an escaper outlived the sweep");
    let c = r.json("artifacts/sweep/run-artifact.json")["containment"].clone();
    assert_eq!(c["mechanism"], "process-group+sweep", "{c}");
    assert!(c["note"].as_str().unwrap().contains("AGENTPLANE_CONTAINMENT"), "{c}");
    assert_eq!(c["survivors"], 0);
}

#[test]
fn killing_agentplane_mid_run_kills_the_run() {
    let r = Root::new();
    r.keygen();
    let tag = format!("ap-kill9-{}", std::process::id());
    let started = r.join("started");
    r.bundle("victim", &escaper_script(&tag, &format!("touch {}; sleep 300; : {tag}", started.display())), |v| {
        v["spec"]["policy"]["maxRunSeconds"] = 600.into()
    });
    let mut child = Command::new(BIN)
        .arg("--root")
        .arg(r.path())
        .args(["up", "bundles/victim"])
        .env_remove("AGENTPLANE_SIGNING_KEY")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    while !started.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(started.exists(), "the smoke script never started");
    assert!(!alive(&tag).is_empty(), "the run's processes should be alive before the kill");
    child.kill().unwrap(); // SIGKILL: no handler, no cleanup code runs
    child.wait().unwrap();
    assert_eq!(wait_gone(&tag), Vec::<String>::new(), "the run outlived a killed agentplane");
}

#[test]
fn a_secret_never_reaches_a_name_a_log_a_statement_or_the_terminal() {
    let r = Root::new();
    r.keygen();
    let short = "pfx-7c1e";
    let long = "pfx-7c1e-and-the-rest-9a";
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ8xq1\n-----END PRIVATE KEY-----";
    r.write("pem.txt", pem);
    let script = "#!/bin/sh\n\
        echo \"long $LONG_TOKEN short $SHORT_TOKEN\"\n\
        printf '%s\\n' \"$PEM_KEY\" | sed -n 2p\n\
        s=\"$LONG_TOKEN\"; while [ -n \"$s\" ]; do printf '%s' \"${s%\"${s#?}\"}\"; s=\"${s#?}\"; sleep 0.01; done; echo\n\
        mkdir -p \"$1/dir-$SHORT_TOKEN\"\n\
        echo ok > \"$1/dir-$SHORT_TOKEN/$LONG_TOKEN.txt\"\n";
    r.bundle("leaky", script, |v| {
        v["spec"]["secrets"]["required"] = serde_json::json!(["SHORT_TOKEN", "LONG_TOKEN", "PEM_KEY_FILE"])
    });
    let pem_file = r.join("pem.txt").display().to_string();
    let out = r.cmd_env(
        &["up", "bundles/leaky", "--watch"],
        &[("SHORT_TOKEN", short), ("LONG_TOKEN", long), ("PEM_KEY_FILE", &pem_file)],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for (what, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(!text.contains(short) && !text.contains("MC4CAQAwBQYDK2VwBCIEIJ8xq1"), "secret on {what}:\n{text}");
        assert!(!text.contains("and-the-rest"), "the rest of the longer secret on {what}:\n{text}");
    }
    for e in walkdir::WalkDir::new(r.join("artifacts/leaky")) {
        let e = e.unwrap();
        let name = e.path().display().to_string();
        assert!(!name.contains(short), "a secret in a file name: {name}");
        if e.file_type().is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
            assert!(!text.contains(short) && !text.contains("MC4CAQAwBQYDK2VwBCIEIJ8xq1"), "secret in {name}");
        }
    }
    let log = r.read("artifacts/leaky/run.stdout.log");
    assert!(log.contains("long [redacted:LONG_TOKEN] short [redacted:SHORT_TOKEN]"), "{log}");
    let run = r.json("artifacts/leaky/run-artifact.json");
    assert_eq!(run["renamedProducts"].as_array().unwrap().len(), 2, "{run}");
    assert_eq!(run["secretScan"]["found"], 0);
    assert_eq!(run["secretScan"]["secrets"], 3);
    r.cmd(&["verify", "artifacts/leaky", "--trusted-key", &r.pubkey()]).ok();
}

#[test]
fn a_deterministic_bundle_with_a_secret_in_its_product_replays_as_match() {
    let r = Root::new();
    r.keygen();
    r.bundle("det", "#!/bin/sh\necho \"token=$DET_TOKEN\" > \"$1/out.txt\"\n", |v| {
        v["spec"]["secrets"]["required"] = serde_json::json!(["DET_TOKEN"]);
        v["spec"]["determinism"] = serde_json::json!({"required": true});
    });
    let env = [("DET_TOKEN", "det-secret-0042")];
    r.cmd_env(&["up", "bundles/det"], &env).ok();
    let out = r.cmd_env(&["--format", "json", "replay", "artifacts/det", "--trusted-key", &r.pubkey()], &env).ok();
    assert_eq!(out.json()["verdict"], "match", "{}", out.stdout);
}

/// A `PATH` with a relative entry (`bin`) would find a bundle's own
/// `bin/setpriv` once the script starts in its (staged) bundle directory:
/// the containment wrapper is started by the absolute path probed instead.
#[test]
fn a_relative_path_entry_never_starts_the_bundles_own_wrapper() {
    use std::os::unix::fs::PermissionsExt as _;
    let r = Root::new();
    r.keygen();
    r.bundle("rel", "#!/bin/sh\necho hi > \"$1/out.txt\"\n", |_| {});
    let marker = r.join("the-bundles-wrapper-ran");
    for tool in ["setpriv", "unshare"] {
        let fake = r.write(
            &format!("bundles/rel/bin/{tool}"),
            format!("#!/bin/sh\necho {tool} >> '{}'\nexit 0\n", marker.display()),
        );
        std::fs::set_permissions(fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("bin:{}", std::env::var("PATH").unwrap_or_default());
    r.cmd_env(&["up", "bundles/rel"], &[("PATH", &path)]).ok();
    assert!(!marker.exists(), "the bundle's own wrapper ran: {}", r.read("the-bundles-wrapper-ran"));
    assert_eq!(r.read("artifacts/rel/products/out.txt"), "hi\n", "the script itself ran");
    let c = &r.json("artifacts/rel/run-artifact.json")["containment"];
    assert_eq!(c["survivors"], 0, "{c}");
}
