//! Placement: which executor may run a bundle, and why every other one may not.
//!
//! [`filter_static`] and [`choose`] are pure functions over data; [`probe_all`]
//! reaches out to executors (SSH in parallel: a few loops wait for every host
//! to speak, a thread each for those that do, every host bounded by its own
//! timeout) so that a fleet of ten thousand hosts takes about one timeout;
//! no more probes are in flight than there are file descriptors to spare
//! ([`super::slots`]): a larger fleet is probed in waves.

use std::time::Duration;

use super::banners::{self, Heard};
use super::inventory::{Executor, Inventory, Reach};
use super::slots::Slots;
use crate::runner;
use crate::runner::qemu::remote::host::{KvmDevice, VmHost, VmHostConfig};
use crate::types::{Backend, Isolation, RejectCode, SshTarget, norm_arch, norm_os};

/// What the bundle asks of an executor.
#[derive(Debug, Clone)]
pub struct Request {
    pub backend: Backend,
    pub requires_kvm: bool,
    /// `None`: any isolation is acceptable.
    pub acceptable: Option<Vec<Isolation>>,
    /// `--executor`, else `spec.executor.ref`.
    pub pinned: Option<String>,
    /// Absolute host paths the bundle mounts (`spec.vm.mounts[].source`).
    pub host_paths: Vec<String>,
}

/// Why an executor was not chosen: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub code: RejectCode,
    pub detail: String,
}

impl Reason {
    fn new(code: RejectCode, detail: impl Into<String>) -> Reason {
        Reason { code, detail: detail.into() }
    }
}

/// What a probe saw.
#[derive(Debug, Clone)]
pub struct Observed {
    pub os: String,
    pub arch: String,
    /// For a VM bundle on an SSH executor: its QEMU, kernel and KVM.
    pub vm: Option<VmHost>,
}

/// One executor's fate.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub executor: Executor,
    pub isolation: Isolation,
    pub observed: Option<Observed>,
    /// `None`: it qualifies.
    pub rejected: Option<Reason>,
}

/// The isolation an executor gives a backend.
pub fn isolation_for(e: &Executor, backend: Backend) -> Isolation {
    if backend.is_vm() { if e.kvm { Isolation::VmKvm } else { Isolation::VmTcg } } else { Isolation::Process }
}

fn backend_ok(e: &Executor, backend: Backend) -> bool {
    match &e.supported_backends {
        None => true,
        Some(list) => match backend {
            // `fleet` defers to whatever the executor runs.
            Backend::Fleet => !list.is_empty(),
            b => list.iter().any(|x| x == b.as_str()),
        },
    }
}

/// Whether the executor allows mounting `path` from its host: one of its
/// `capabilities.hostPaths` glob patterns (`/srv/sourceos/**`) matches it.
/// An executor that declares none allows none.
pub fn host_path_allowed(e: &Executor, path: &str) -> bool {
    let opts = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    e.caps
        .get("hostPaths")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(serde_json::Value::as_str)
        .filter_map(|g| glob::Pattern::new(g).ok())
        .any(|g| g.matches_with(path, opts))
}

/// The filters that need no network, in the order their reasons are reported.
pub fn filter_static(inv: &Inventory, req: &Request) -> Vec<Candidate> {
    inv.executors
        .iter()
        .map(|e| {
            let isolation = isolation_for(e, req.backend);
            let rejected = if !e.enabled {
                Some(Reason::new(RejectCode::Disabled, "the inventory marks it disabled"))
            } else if let Some(h) = e.health.as_deref().filter(|h| *h != "ready") {
                Some(Reason::new(RejectCode::HealthNotReady, format!("health is `{h}`, not `ready`")))
            } else if !backend_ok(e, req.backend) {
                let list = e.supported_backends.clone().unwrap_or_default().join(", ");
                Some(Reason::new(
                    RejectCode::BackendUnsupported,
                    format!("backend `{}` not among [{list}]", req.backend.as_str()),
                ))
            } else if req.backend.is_vm() && req.requires_kvm && !e.kvm {
                Some(Reason::new(RejectCode::KvmRequired, "the bundle requires KVM and the executor has none"))
            } else if let Some(acc) = req.acceptable.as_ref().filter(|a| !a.contains(&isolation)) {
                let acc: Vec<&str> = acc.iter().map(|i| i.as_str()).collect();
                Some(Reason::new(
                    RejectCode::IsolationTooWeak,
                    format!("it would provide `{}`; the bundle accepts [{}]", isolation.as_str(), acc.join(", ")),
                ))
            } else if let Some(p) = req.host_paths.iter().find(|p| !host_path_allowed(e, p)) {
                Some(Reason::new(
                    RejectCode::HostPathNotAllowed,
                    format!("the bundle mounts the host path `{p}`, which capabilities.hostPaths does not allow here"),
                ))
            } else if !runner::supports(e.reach.transport(), req.backend) {
                // Never choose an executor the run could only pretend to use.
                Some(Reason::new(
                    RejectCode::RunnerUnsupported,
                    runner::unsupported_detail(e.reach.transport(), req.backend),
                ))
            } else {
                None
            };
            Candidate { executor: e.clone(), isolation, observed: None, rejected }
        })
        .collect()
}

/// At most this many loops wait for SSH hosts to speak ([`banners`]), one per
/// core, and one for every this many hosts.
const MAX_LOOPS: usize = 4;
const HOSTS_PER_LOOP: usize = 256;

/// A probe (or a loop of them) panicked: agentplane's failure, not the host's.
fn crashed() -> Reason {
    Reason::new(RejectCode::ProbeFailed, "the probe crashed")
}

/// How a probe that could not get a descriptor says so (`EMFILE`).
const EMFILE: &str = "(os error 24)";

/// Probe every candidate still standing: this host for `local`, SSH for the
/// rest (in parallel), then compare the declared platform with what was seen
/// and, for a VM bundle on an SSH executor, check that the VM can boot there
/// (QEMU, kernel, KVM when required) and record the isolation it would get.
///
/// SSH hosts are connected to and waited for in a few loops, one per core
/// ([`super::banners`]); each host that speaks gets a thread for the rest of
/// its probe (handshake, host key, login, `uname`) within what is left of its
/// own deadline.
pub fn probe_all(cands: &mut [Candidate], req: &Request, timeout: Duration) {
    let vm = req.backend.is_vm();
    raise_fd_limit();
    // Each probe thread gets its own allocator heap: with transparent huge
    // pages the kernel zeroes 2 MiB for each heap's first page. When a thread
    // per host was the rule, 10,000 silent hosts took 6–8 s without them
    // instead of 10–14 s (docs/performance.md §3); a fleet of hosts that
    // speak still costs a thread each. Nothing else in `place` gains from them.
    let _ = nix::sys::prctl::set_thp_disable(true);
    let slots = Slots::new(super::slots::fd_budget());
    let mut results: Vec<(usize, Result<Observed, Reason>)> = Vec::new();
    let mut ssh: Vec<(usize, &SshTarget)> = Vec::new();
    for (i, c) in cands.iter().enumerate().filter(|(_, c)| c.rejected.is_none()) {
        match &c.executor.reach {
            Reach::Local => results.push((
                i,
                Ok(Observed { os: std::env::consts::OS.into(), arch: std::env::consts::ARCH.into(), vm: None }),
            )),
            Reach::Ssh(t) => ssh.push((i, t)),
        }
    }
    let all: &[Candidate] = cands;
    // A few loops, one per core: opening 10,000 loopback connections is
    // kernel work (~0.1 ms each here), and each host's deadline starts when
    // its connect does.
    let loops = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_LOOPS)
        .min(ssh.len().div_ceil(HOSTS_PER_LOOP))
        .max(1);
    let groups: Vec<Vec<(usize, &SshTarget)>> =
        (0..loops).map(|k| ssh.iter().skip(k).step_by(loops).copied().collect()).collect();
    std::thread::scope(|s| {
        let slots = &slots;
        let helpers: Vec<_> = groups[1..]
            .iter()
            .map(|g| {
                (g, std::thread::Builder::new().spawn_scoped(s, move || listen_group(s, g, all, slots, timeout, vm)))
            })
            .collect();
        results.extend(listen_group(s, &groups[0], all, slots, timeout, vm));
        for (group, h) in helpers {
            match h {
                Ok(h) => match h.join() {
                    Ok(done) => results.extend(done),
                    Err(_) => results.extend(group.iter().map(|&(i, _)| (i, Err(crashed())))),
                },
                // No thread for this loop: run it here.
                Err(_) => results.extend(listen_group(s, group, all, slots, timeout, vm)),
            }
        }
    });
    for (i, result) in results {
        match result {
            Ok(obs) => cands[i].observed = Some(obs),
            // Running out of file descriptors is agentplane's failure, not
            // the host's: never record it as the host being unreachable.
            Err(r) if r.detail.contains(EMFILE) => {
                cands[i].rejected = Some(Reason::new(RejectCode::ProbeFailed, format!("not probed: {}", r.detail)))
            }
            Err(r) => cands[i].rejected = Some(r),
        }
    }
    for c in cands.iter_mut().filter(|c| c.rejected.is_none()) {
        if let (Some((os, arch)), Some(obs)) = (&c.executor.platform, &c.observed)
            // `any` (agentplane's reading): the executor runs wherever this is.
            && ((os != "any" && norm_os(os) != norm_os(&obs.os)) || (arch != "any" && norm_arch(arch) != norm_arch(&obs.arch)))
        {
            c.rejected = Some(Reason::new(
                RejectCode::PlatformMismatch,
                format!("declared {os}/{arch}, observed {}/{}", obs.os, obs.arch),
            ));
        }
    }
    check_vm_hosts(cands, req);
}

/// Listen to one group of SSH hosts ([`banners::listen`]) and give each one
/// that speaks a thread for the rest of its probe; what became of each.
fn listen_group<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    group: &[(usize, &SshTarget)],
    all: &'env [Candidate],
    slots: &'env Slots,
    timeout: Duration,
    vm: bool,
) -> Vec<(usize, Result<Observed, Reason>)> {
    let mut done = Vec::with_capacity(group.len());
    let mut probes = Vec::new();
    banners::listen(group, timeout, slots, |i, heard| match heard {
        Heard::Failed(f) => done.push((i, Err(Reason { code: f.code, detail: f.detail }))),
        Heard::Spoke { stream, deadline, slot } => {
            let c = &all[i];
            let Reach::Ssh(target) = &c.executor.reach else { return };
            let vm_cfg = vm.then(|| VmHostConfig::from_caps(&c.executor.caps));
            let h = std::thread::Builder::new().stack_size(256 * 1024).spawn_scoped(s, move || {
                let mut seen = super::probe_ssh::probe_over(stream, target, deadline, vm_cfg.as_ref());
                // Out of descriptors after all (known_hosts, the
                // identity: something else took them): wait for other
                // probes to give theirs back and probe again from the
                // start, a few times; never blame the host.
                let mut tries = 0;
                while let Err(f) = &seen
                    && f.detail.contains(EMFILE)
                    && tries < 20
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                    seen = super::probe_ssh::probe(target, timeout, vm_cfg.as_ref());
                }
                drop(slot);
                seen.map(|(p, vm)| Observed { os: p.os, arch: p.arch, vm })
                    .map_err(|f| Reason { code: f.code, detail: f.detail })
            });
            probes.push((i, h));
        }
    });
    for (i, h) in probes {
        let result = match h {
            Ok(h) => h.join().unwrap_or_else(|_| Err(crashed())),
            Err(e) => Err(Reason::new(RejectCode::ProbeFailed, format!("cannot start a probe thread: {e}"))),
        };
        done.push((i, result));
    }
    done
}

/// For a VM bundle on an SSH executor: reject the executor when the VM
/// cannot boot there (QEMU, kernel, KVM when required), and record the
/// isolation it would really get.
fn check_vm_hosts(cands: &mut [Candidate], req: &Request) {
    for c in cands.iter_mut().filter(|c| c.rejected.is_none()) {
        let Some(host) = c.observed.as_ref().and_then(|o| o.vm.as_ref()) else { continue };
        if let Some((code, detail)) = host.rejection(req.requires_kvm) {
            c.rejected = Some(Reason::new(code, detail));
            continue;
        }
        // KVM is promised only where the inventory says so and the login can
        // open /dev/kvm (the run still proves it with a test boot).
        if host.kvm != KvmDevice::Usable {
            c.isolation = Isolation::VmTcg;
        }
        if let Some(acc) = req.acceptable.as_ref().filter(|a| !a.contains(&c.isolation)) {
            let acc: Vec<&str> = acc.iter().map(|i| i.as_str()).collect();
            c.rejected = Some(Reason::new(
                RejectCode::IsolationTooWeak,
                format!(
                    "it would provide `{}` (no usable /dev/kvm there); the bundle accepts [{}]",
                    c.isolation.as_str(),
                    acc.join(", ")
                ),
            ));
        }
    }
}

/// Each SSH probe holds a socket: raise the soft open-file limit to the hard
/// limit so a large fleet is not cut short by the default 1,024.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Pick the executor: the pinned one, else the default when it qualifies,
/// else the first that qualifies in inventory order. Every other candidate
/// that qualified is marked `not-preferred`. Returns the chosen index.
pub fn choose(cands: &mut [Candidate], default: Option<&str>, pinned: Option<&str>) -> Option<usize> {
    let qualifies = |c: &Candidate| c.rejected.is_none();
    let chosen = if let Some(p) = pinned {
        cands.iter().position(|c| c.executor.name == p && qualifies(c))
    } else {
        default
            .and_then(|d| cands.iter().position(|c| c.executor.name == d && qualifies(c)))
            .or_else(|| cands.iter().position(qualifies))
    }?;
    let why = match (pinned, default) {
        (Some(p), _) => format!("`{p}` was pinned"),
        (None, Some(d)) if cands[chosen].executor.name == d => {
            format!("`{d}` is the default executor")
        }
        _ => format!("`{}` comes first in the inventory", cands[chosen].executor.name),
    };
    for (i, c) in cands.iter_mut().enumerate() {
        if i != chosen && c.rejected.is_none() {
            c.rejected = Some(Reason::new(RejectCode::NotPreferred, format!("qualified, but {why}")));
        }
    }
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::SshTarget;
    use serde_json::json;

    fn exec(name: &str) -> Executor {
        Executor {
            name: name.into(),
            ssh_ref: "local".into(),
            enabled: true,
            platform: None,
            supported_backends: Some(vec!["lima-process".into()]),
            kvm: false,
            caps: json!({}),
            health: Some("ready".into()),
            trust_zone: None,
            reach: Reach::Local,
            ssh_config: None,
        }
    }

    fn req(backend: Backend) -> Request {
        Request { backend, requires_kvm: false, acceptable: None, pinned: None, host_paths: Vec::new() }
    }

    #[test]
    fn host_paths_need_an_executor_that_allows_them() {
        let mut allowed = exec("allowed");
        allowed.caps = serde_json::json!({"hostPaths": ["/srv/sourceos/**"]});
        let inv = Inventory { path: None, executors: vec![exec("plain"), allowed], default_executor: None };
        let mut r = req(Backend::LimaProcess);
        r.host_paths = vec!["/srv/sourceos/cache/x".into()];
        let c = filter_static(&inv, &r);
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::HostPathNotAllowed);
        assert!(c[1].rejected.is_none());
        r.host_paths = vec!["/etc/shadow".into()];
        assert_eq!(filter_static(&inv, &r)[1].rejected.as_ref().unwrap().code, RejectCode::HostPathNotAllowed);
    }

    #[test]
    fn first_failing_reason_is_recorded() {
        let mut off = exec("off");
        off.enabled = false;
        off.health = Some("drained".into());
        let mut drained = exec("drained");
        drained.health = Some("drained".into());
        let inv = Inventory { path: None, executors: vec![off, drained, exec("ok")], default_executor: None };
        let c = filter_static(&inv, &req(Backend::LimaProcess));
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::Disabled);
        assert_eq!(c[1].rejected.as_ref().unwrap().code, RejectCode::HealthNotReady);
        assert!(c[2].rejected.is_none());
    }

    #[test]
    fn backend_kvm_and_isolation_filters() {
        let inv = Inventory { path: None, executors: vec![exec("a")], default_executor: None };
        let c = filter_static(&inv, &req(Backend::Qemu));
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::BackendUnsupported);

        let mut vm = exec("vm");
        vm.supported_backends = Some(vec!["qemu".into()]);
        let inv = Inventory { path: None, executors: vec![vm], default_executor: None };
        let mut r = req(Backend::Qemu);
        r.requires_kvm = true;
        assert_eq!(filter_static(&inv, &r)[0].rejected.as_ref().unwrap().code, RejectCode::KvmRequired);
        let mut r = req(Backend::Qemu);
        r.acceptable = Some(vec![Isolation::VmKvm]);
        assert_eq!(filter_static(&inv, &r)[0].rejected.as_ref().unwrap().code, RejectCode::IsolationTooWeak);
        assert!(filter_static(&inv, &req(Backend::Qemu))[0].rejected.is_none());
    }

    fn ssh(name: &str, backends: &[&str]) -> Executor {
        let mut e = exec(name);
        e.supported_backends = Some(backends.iter().map(|b| b.to_string()).collect());
        e.reach = Reach::Ssh(SshTarget {
            host: format!("{name}.example"),
            port: 22,
            user: "u".into(),
            identity_file: "/k".into(),
            known_hosts_file: "/kh".into(),
        });
        e
    }

    #[test]
    fn vm_backends_on_ssh_executors_are_left_to_the_probe() {
        let local_vm = {
            let mut e = exec("local-vm");
            e.supported_backends = Some(vec!["qemu".into(), "microvm".into()]);
            e
        };
        // An inventory that lists no backends allows every one.
        let mut ssh_any = ssh("ssh-any", &[]);
        ssh_any.supported_backends = None;
        let inv = Inventory {
            path: None,
            executors: vec![ssh("ssh-vm", &["qemu", "microvm", "lima-process"]), local_vm, ssh_any],
            default_executor: None,
        };
        // (backend, [ssh-vm, local-vm, ssh-any]): the reason code, or None when it qualifies so far.
        let backend_unsupported = Some(RejectCode::BackendUnsupported);
        let table = [
            (Backend::Qemu, [None, None, None]),
            (Backend::Microvm, [None, None, None]),
            (Backend::LimaProcess, [None, backend_unsupported, None]),
        ];
        for (backend, want) in table {
            let got: Vec<_> = filter_static(&inv, &req(backend)).iter().map(|c| c.rejected.clone()).collect();
            for (i, w) in want.iter().enumerate() {
                assert_eq!(got[i].as_ref().map(|r| r.code), *w, "{} for {}", inv.executors[i].name, backend.as_str());
            }
        }
    }

    #[test]
    fn what_the_vm_probe_found_decides_after_the_probe() {
        use crate::types::VmHost;
        let host = |qemu: Option<&str>, kernel: Option<&str>, kvm: KvmDevice| VmHost {
            qemu: qemu.map(String::from),
            kernel: kernel.map(String::from),
            kvm,
            arch: "x86_64".into(),
            problems: vec!["why".into()],
        };
        let cand = |h: VmHost| {
            let mut e = ssh("vm", &["qemu"]);
            e.kvm = true;
            Candidate {
                executor: e,
                isolation: Isolation::VmKvm,
                observed: Some(Observed { os: "linux".into(), arch: "x86_64".into(), vm: Some(h) }),
                rejected: None,
            }
        };
        let ok = host(Some("/q"), Some("/k"), KvmDevice::Usable);
        let table = [
            (host(None, Some("/k"), KvmDevice::Usable), false, None, Some(RejectCode::QemuMissing)),
            (host(Some("/q"), None, KvmDevice::Usable), false, None, Some(RejectCode::KernelMissing)),
            (host(Some("/q"), Some("/k"), KvmDevice::Denied), true, None, Some(RejectCode::KvmRequired)),
            (
                host(Some("/q"), Some("/k"), KvmDevice::Absent),
                false,
                Some(vec![Isolation::VmKvm]),
                Some(RejectCode::IsolationTooWeak),
            ),
            (ok.clone(), true, Some(vec![Isolation::VmKvm]), None),
        ];
        for (h, requires_kvm, acceptable, want) in table {
            let mut c = [cand(h.clone())];
            let mut r = req(Backend::Qemu);
            r.requires_kvm = requires_kvm;
            r.acceptable = acceptable;
            check_vm_hosts(&mut c, &r);
            assert_eq!(c[0].rejected.as_ref().map(|r| r.code), want, "{h:?}");
        }
        let mut c = [cand(host(Some("/q"), Some("/k"), KvmDevice::Absent))];
        check_vm_hosts(&mut c, &req(Backend::Qemu));
        assert_eq!(c[0].isolation, Isolation::VmTcg, "KVM is not promised without a usable /dev/kvm");
    }

    #[test]
    fn the_runner_check_comes_after_the_policy_checks() {
        let mut off = ssh("off", &["qemu"]);
        off.enabled = false;
        let inv = Inventory { path: None, executors: vec![off, ssh("weak", &["qemu"])], default_executor: None };
        let mut r = req(Backend::Qemu);
        r.acceptable = Some(vec![Isolation::VmKvm]);
        let c = filter_static(&inv, &r);
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::Disabled);
        assert_eq!(c[1].rejected.as_ref().unwrap().code, RejectCode::IsolationTooWeak);
    }

    #[test]
    fn choice_prefers_pin_then_default_then_order() {
        let inv = Inventory { path: None, executors: vec![exec("a"), exec("b"), exec("c")], default_executor: None };
        let mut c = filter_static(&inv, &req(Backend::LimaProcess));
        assert_eq!(choose(&mut c, Some("b"), None), Some(1));
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::NotPreferred);
        let mut c = filter_static(&inv, &req(Backend::LimaProcess));
        assert_eq!(choose(&mut c, Some("b"), Some("c")), Some(2));
        let mut c = filter_static(&inv, &req(Backend::LimaProcess));
        assert_eq!(choose(&mut c, None, None), Some(0));
        let mut c = filter_static(&inv, &req(Backend::LimaProcess));
        assert_eq!(choose(&mut c, None, Some("zzz")), None);
    }

    #[test]
    fn platform_mismatch_after_probe() {
        let mut e = exec("a");
        e.platform = Some(("linux".into(), "riscv64".into()));
        let inv = Inventory { path: None, executors: vec![e], default_executor: None };
        let mut c = filter_static(&inv, &req(Backend::LimaProcess));
        probe_all(&mut c, &req(Backend::LimaProcess), Duration::from_secs(1));
        assert_eq!(c[0].rejected.as_ref().unwrap().code, RejectCode::PlatformMismatch);
    }
}
