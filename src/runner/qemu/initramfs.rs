//! Assembling the guest's initramfs: a static busybox, the guest `/init`
//! (`runners/qemu/init`, embedded at build time), a copy of the bundle, and
//! the job's settings and environment as small shell files.
//!
//! Guest layout:
//!
//! ```text
//! /init                    runners/qemu/init
//! /bin/busybox             the host's static busybox; applet links are made at boot
//! /agentplane/job          AP_* settings for /init (script, cwd, timeout, grace, network)
//! /agentplane/env          `export NAME='value'`: the governed environment
//! /agentplane/bundle/      the bundle directory (the script's working directory)
//! /agentplane/smoke-script the smoke script, when it lives outside the bundle
//! /agentplane/products/    the products directory, `$1`
//! /agentplane/modules/     kernel modules /init loads (the NIC driver, with a network)
//! ```

use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cpio::NewcWriter;
use crate::runner::Job;
use crate::runner::contract::{self, EnvFile, shell_quote};

/// The guest `/init`, compiled into the binary so the runner needs no asset files.
pub const INIT: &[u8] = include_bytes!("../../../runners/qemu/init");

/// The guest's run directory: the bundle and a script from outside it are
/// staged in it as every runner stages them.
const GUEST_RUN: &str = "/agentplane";
pub const GUEST_BUNDLE: &str = "/agentplane/bundle";
pub const GUEST_PRODUCTS: &str = "/agentplane/products";
/// What `PATH` is in the guest: where `busybox --install -s` puts the applets.
pub const GUEST_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// What the job's part of the image needs beyond the [`Job`] itself.
pub struct JobImage<'a> {
    pub job: &'a Job,
    /// Kernel modules to put under `/agentplane/modules/` (loaded in order).
    pub modules: &'a [PathBuf],
}

/// Write the initramfs to `dest`. Without a job it is the KVM probe's image,
/// whose `/init` only reports that userspace runs. Returns the names of
/// environment variables left out because the shell cannot name them.
pub fn write(dest: &Path, busybox: &Path, job: Option<JobImage<'_>>) -> Result<Vec<String>> {
    // 0600: it holds the governed environment and the run's secrets.
    let file = super::workdir::private_file(dest)?;
    let mut b = Builder { w: NewcWriter::new(BufWriter::new(file)), dirs: BTreeSet::new() };
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "root", "agentplane/products"] {
        b.dir(d.as_bytes(), 0o755)?;
    }
    // The kernel opens /dev/console for init's stdin/stdout/stderr before
    // devtmpfs is mounted; without the node init would start with no fds.
    b.w.char_device(b"dev/console", 0o600, 5, 1)?;
    b.add_host_file(b"bin/busybox", 0o755, busybox)?;
    b.w.file(b"init", 0o755, INIT)?;
    b.w.file(b"etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    b.w.file(b"etc/group", 0o644, b"root:x:0:\n")?;
    b.w.file(b"etc/hosts", 0o644, b"127.0.0.1 localhost agentplane-vm\n")?;
    let mut skipped = Vec::new();
    if let Some(JobImage { job, modules }) = job {
        // Never copy the run's own evidence when the outDir lies inside the bundle.
        b.add_tree(&job.bundle_dir, GUEST_BUNDLE, Some(contract::not_shipped(job)))?;
        let script = contract::stage_script(job, Path::new(GUEST_RUN), |host, guest| {
            b.add_host_file(&guest.as_os_str().as_bytes()[1..], 0o755, host)
        })?;
        for m in modules {
            let name = m.file_name().context("a kernel module path has no file name")?;
            let mut guest = b"agentplane/modules/".to_vec();
            guest.extend_from_slice(name.as_bytes());
            b.add_host_file(&guest, 0o644, m)?;
        }
        let interp = guest_interpreter(&contract::interpreter_of(&job.script));
        let settings = job_settings(&script, &interp, job.timeout, job.grace, job.vm.network);
        b.w.file(b"agentplane/job", 0o600, settings.as_bytes())?;
        let env = env_file(&job.env);
        skipped = env.skipped;
        b.w.file(b"agentplane/env", 0o600, env.text.as_bytes())?;
    }
    let mut out = b.w.finish().context("cannot write the initramfs")?;
    out.flush().context("cannot write the initramfs")?;
    Ok(skipped)
}

/// How the guest runs the script: the interpreter its `#!` line names (as
/// [`contract::interpreter`] reads it), and that line's one argument (may be
/// empty). `#!/usr/bin/env NAME` becomes the bare `NAME`, which `/init` looks
/// up in the guest's `PATH`; a path the guest lacks is looked up by its
/// base name there too (so `#!/usr/bin/awk -f` finds busybox's `awk` wherever
/// it is), and when that fails too the run ends with 127 and a line naming
/// the missing interpreter (`runners/qemu/init`). Busybox's `sh` serves
/// `/bin/sh`, `/bin/ash`, `/usr/bin/env sh` and scripts without a `#!`.
pub fn guest_interpreter(host: &[String]) -> (String, String) {
    let prog = host.first().map(String::as_str).unwrap_or("/bin/sh");
    let arg = host.get(1).cloned().unwrap_or_default();
    let is_env = Path::new(prog).file_name().is_some_and(|n| n == "env");
    let simple = |a: &str| !a.is_empty() && !a.starts_with('-') && !a.contains(['=', ' ', '\t']);
    if is_env && simple(&arg) {
        return (arg, String::new());
    }
    (prog.to_string(), arg)
}

/// `/agentplane/job`: the settings `/init` sources.
fn job_settings(
    script: &Path,
    (interp, interp_arg): &(String, String),
    timeout: Duration,
    grace: Duration,
    network: bool,
) -> String {
    let secs = |d: Duration| format!("{}.{:03}", d.as_secs(), d.subsec_millis());
    let mut s = String::new();
    for (k, v) in [
        ("AP_SCRIPT", script.to_string_lossy().into_owned()),
        ("AP_INTERP", interp.clone()),
        ("AP_INTERP_ARG", interp_arg.clone()),
        ("AP_CWD", GUEST_BUNDLE.to_string()),
        ("AP_PRODUCTS", GUEST_PRODUCTS.to_string()),
        ("AP_TIMEOUT", secs(timeout)),
        ("AP_GRACE", secs(grace)),
        ("AP_NET", if network { "1" } else { "0" }.to_string()),
    ] {
        s.push_str(&format!("{k}={}\n", shell_quote(&v)));
    }
    s
}

/// `/agentplane/env`: the governed environment with host paths replaced by
/// their guest counterparts (`PATH`, `HOME`, `AGENTPLANE_PRODUCTS_DIR`).
pub fn env_file(env: &[(String, String)]) -> EnvFile {
    let guest = [("PATH", GUEST_PATH), ("HOME", "/root"), ("AGENTPLANE_PRODUCTS_DIR", GUEST_PRODUCTS)];
    contract::env_file("", env, &guest, |_, v| shell_quote(v))
}

/// Keeps track of the directories written, since the kernel will not create
/// a missing parent.
struct Builder<W: Write> {
    w: NewcWriter<W>,
    dirs: BTreeSet<Vec<u8>>,
}

impl<W: Write> Builder<W> {
    fn dir(&mut self, path: &[u8], perm: u32) -> Result<()> {
        if self.dirs.contains(path) {
            return Ok(());
        }
        if let Some(i) = path.iter().rposition(|&c| c == b'/') {
            self.dir(&path[..i], 0o755)?;
        }
        self.w.dir(path, perm)?;
        self.dirs.insert(path.to_vec());
        Ok(())
    }

    fn parent(&mut self, path: &[u8]) -> Result<()> {
        match path.iter().rposition(|&c| c == b'/') {
            Some(i) => self.dir(&path[..i], 0o755),
            None => Ok(()),
        }
    }

    fn add_host_file(&mut self, guest: &[u8], perm: u32, host: &Path) -> Result<()> {
        self.parent(guest)?;
        let mut f = File::open(host).with_context(|| format!("cannot read `{}`", host.display()))?;
        let size = f.metadata().with_context(|| format!("cannot read `{}`", host.display()))?.len();
        self.w
            .file_from(guest, perm, size, &mut f)
            .with_context(|| format!("cannot add `{}` to the initramfs", host.display()))
    }

    /// Copy `from` as `to` (an absolute guest path): directories, files and
    /// symlinks with their permission bits; other kinds are left out.
    /// `exclude` is the run's own directory when it lies inside the bundle.
    fn add_tree(&mut self, from: &Path, to: &str, exclude: Option<&Path>) -> Result<()> {
        let base = &to.as_bytes()[1..];
        for entry in walkdir::WalkDir::new(from).follow_links(false).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot read the bundle `{}`", from.display()))?;
            let p = entry.path();
            if exclude.is_some_and(|x| p.starts_with(x)) {
                continue;
            }
            let rel = p.strip_prefix(from).context("walkdir left the bundle directory")?;
            let mut guest = base.to_vec();
            if !rel.as_os_str().is_empty() {
                guest.push(b'/');
                guest.extend_from_slice(rel.as_os_str().as_bytes());
            }
            let meta = entry.metadata().with_context(|| format!("cannot read `{}`", p.display()))?;
            let perm = meta.permissions().mode() & 0o777;
            let ft = entry.file_type();
            if ft.is_dir() {
                self.dir(&guest, perm | 0o700)?;
            } else if ft.is_symlink() {
                let target =
                    std::fs::read_link(p).with_context(|| format!("cannot read the link `{}`", p.display()))?;
                self.parent(&guest)?;
                self.w.symlink(&guest, target.as_os_str().as_bytes())?;
            } else if ft.is_file() {
                self.add_host_file(&guest, perm, p)?;
            }
        }
        if !self.dirs.contains(base) {
            bail!("the bundle directory `{}` is not a directory", from.display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_maps_host_paths_and_skips_unnameable_variables() {
        let env = vec![
            ("PATH".into(), "/host/bin".into()),
            ("AGENTPLANE_PRODUCTS_DIR".into(), "/host/products".into()),
            ("TOKEN".into(), "a'b\nc".into()),
            ("BAD-NAME".into(), "x".into()),
            ("1X".into(), "x".into()),
        ];
        let EnvFile { text: s, skipped } = env_file(&env);
        assert_eq!(skipped, ["BAD-NAME", "1X"]);
        assert!(s.contains("export TOKEN='a'\\''b\nc'\n"), "{s}");
        assert!(s.contains(&format!("export PATH='{GUEST_PATH}'")));
        assert!(s.contains("export AGENTPLANE_PRODUCTS_DIR='/agentplane/products'"));
        assert!(!s.contains("/host/"));
    }

    /// The names in an archive, via the host's `cpio` when it is installed.
    fn listing(archive: &Path) -> Option<Vec<String>> {
        let out = std::process::Command::new("cpio").args(["-t", "--quiet", "-F"]).arg(archive).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
    }

    #[test]
    fn holds_the_bundle_and_leaves_out_the_run_directory() {
        let t = tempfile::tempdir().unwrap();
        let bundle = t.path().join("bundle");
        std::fs::create_dir_all(bundle.join("lib")).unwrap();
        std::fs::write(bundle.join("smoke.sh"), "echo hi\n").unwrap();
        std::fs::write(bundle.join("lib/data"), "x").unwrap();
        std::os::unix::fs::symlink("data", bundle.join("lib/link")).unwrap();
        let products = bundle.join("out/runs/r1/products");
        std::fs::create_dir_all(&products).unwrap();
        std::fs::write(products.parent().unwrap().join("run-artifact.json"), "{}").unwrap();
        let busybox = t.path().join("busybox");
        std::fs::write(&busybox, "not really busybox").unwrap();
        let job = Job {
            env: vec![("A".into(), "1".into())],
            timeout: Duration::from_millis(2500),
            grace: Duration::from_secs(5),
            ..Job::for_test(&bundle, products)
        };
        let img = t.path().join("initramfs.cpio");
        write(&img, &busybox, Some(JobImage { job: &job, modules: &[] })).unwrap();
        let Some(names) = listing(&img) else { return };
        for want in [
            "init",
            "bin/busybox",
            "dev/console",
            "agentplane/job",
            "agentplane/env",
            "agentplane/bundle/smoke.sh",
            "agentplane/bundle/lib/link",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("runs/r1")), "{names:?}");
        let interp = ("/bin/sh".to_string(), String::new());
        let settings = job_settings(Path::new("/agentplane/bundle/smoke.sh"), &interp, job.timeout, job.grace, false);
        assert!(settings.contains("AP_TIMEOUT='2.500'\n") && settings.contains("AP_NET='0'\n"), "{settings}");
        assert!(settings.contains("AP_INTERP='/bin/sh'\nAP_INTERP_ARG=''\n"), "{settings}");
        let mode = std::fs::metadata(&img).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the initramfs holds secrets");
    }

    #[test]
    fn the_guest_runs_what_the_shebang_names() {
        let g = |head: &str| {
            let (a, b) = guest_interpreter(&contract::interpreter(head.as_bytes()));
            format!("{a}|{b}")
        };
        assert_eq!(g("echo no shebang\n"), "/bin/sh|");
        assert_eq!(g("#!/bin/sh\n"), "/bin/sh|");
        assert_eq!(g("#!/bin/sh -eu\n"), "/bin/sh|-eu");
        assert_eq!(g("#!/bin/ash\n"), "/bin/ash|");
        assert_eq!(g("#!/usr/bin/env sh\n"), "sh|");
        assert_eq!(g("#!/usr/bin/env bash\nset -euo pipefail\n"), "bash|");
        assert_eq!(g("#!/bin/bash\n"), "/bin/bash|");
        assert_eq!(g("#!/usr/bin/awk -f\n"), "/usr/bin/awk|-f");
        assert_eq!(g("#!/usr/bin/env -S bash -e\n"), "/usr/bin/env|-S bash -e");
    }
}
