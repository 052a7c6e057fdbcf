//! `place`: choose the executor for a validated bundle and record why.

use crate::types::ArtifactKind;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bundle::load_for_stage;
use crate::error::{Problem, Refusal, RefusalCode};
use crate::evidence::artifacts::{PlacementDecision, PlacementDetails, Rejection, RejectionCode, Transport};
use crate::evidence::chain::ChainWriter;
use crate::evidence::keys::Signer;
use crate::fleet::Inventory;
use crate::fleet::inventory::Reach;
use crate::fleet::placement::{self, Candidate, Request};
use crate::fsx;

#[derive(Debug, Clone)]
pub struct Options {
    /// `--inventory`; `None` means `fleet/inventory.json` under the root, or
    /// the implicit local executor when that does not exist.
    pub inventory: Option<PathBuf>,
    pub executor: Option<String>,
    pub probe_timeout: Duration,
}

#[derive(Debug)]
pub struct Placed {
    pub bundle: String,
    pub candidates: Vec<Candidate>,
    pub chosen: Option<usize>,
    pub decision: Option<PlacementDecision>,
    pub details: Option<PlacementDetails>,
    pub file: Option<String>,
    pub out_dir: PathBuf,
}

pub fn load_inventory(root: &Path, flag: Option<&Path>) -> Result<Inventory> {
    match flag {
        Some(p) => Inventory::load(&if p.is_absolute() { p.to_path_buf() } else { root.join(p) }, true),
        None => Inventory::load(&root.join("fleet/inventory.json"), false),
    }
}

/// Place the bundle at `arg`. `Ok` with `chosen: None` when nothing qualifies.
pub fn place(root: &Path, arg: &Path, signer: &Signer, opts: &Options) -> Result<Placed> {
    let b = load_for_stage(root, arg)?;
    let inv = load_inventory(root, opts.inventory.as_deref())?;
    let (mut writer, chain) = ChainWriter::open(&b.out_dir, signer)?;
    super::ensure_validated(&b, &chain)?;
    let digest = super::ensure_unchanged(&b, &chain)?;
    super::ensure_not_done(&chain, ArtifactKind::PlacementDecision, "place", &b)?;

    let pinned = opts.executor.clone().or_else(|| b.bundle.spec.executor.as_ref().and_then(|e| e.reference.clone()));
    if let Some(p) = &pinned
        && !inv.executors.iter().any(|e| &e.name == p)
    {
        let names: Vec<&str> = inv.executors.iter().map(|e| e.name.as_str()).collect();
        return Err(Refusal::new(RefusalCode::UnknownExecutor, format!("executor `{p}` is not in the inventory"))
            .hint(format!("known executors: {}", names.join(", ")))
            .into());
    }
    let req = Request {
        host_paths: crate::bundle::gates::host_paths(&b.value),
        backend: b.bundle.spec.vm.backend_intent,
        requires_kvm: b.bundle.spec.vm.requires_kvm.unwrap_or(false),
        acceptable: b.bundle.spec.policy.acceptable_isolation.clone(),
        pinned: pinned.clone(),
    };
    let mut cands = placement::filter_static(&inv, &req);
    placement::probe_all(&mut cands, &req, opts.probe_timeout);
    let unprobed = cands
        .iter()
        .filter(|c| c.rejected.as_ref().is_some_and(|r| r.code == crate::types::RejectCode::ProbeFailed))
        .count();
    if unprobed > 0 {
        // A decision that blamed hosts agentplane never reached would be false evidence.
        return Err(Problem::error(format!(
            "{unprobed} of {} executors could not be probed: agentplane ran out of resources (open files or threads)",
            cands.len()
        ))
        .hint("raise the open-file limit (`ulimit -n`) and place again")
        .into());
    }
    let chosen = placement::choose(&mut cands, inv.default_executor.as_deref(), pinned.as_deref());

    let mut placed = Placed {
        bundle: b.identity(),
        candidates: cands,
        chosen,
        decision: None,
        details: None,
        file: None,
        out_dir: b.out_dir.clone(),
    };
    let Some(i) = chosen else { return Ok(placed) };
    let c = &placed.candidates[i];
    let (transport, ssh) = match &c.executor.reach {
        Reach::Local => (Transport::Local, None),
        Reach::Ssh(t) => (Transport::Ssh, Some(t.clone())),
    };
    let rejected: Vec<(&Candidate, &placement::Reason)> =
        placed.candidates.iter().filter_map(|c| c.rejected.as_ref().map(|r| (c, r))).collect();
    let details = PlacementDetails {
        bundle: b.identity(),
        bundle_digest: digest.digest,
        transport,
        ssh,
        ssh_config: c.executor.ssh_config.clone(),
        isolation: c.isolation,
        inventory: inv.path.as_ref().map(|p| fsx::rel_to(root, p)).unwrap_or_else(|| "implicit".into()),
        observed_platform: c.observed.as_ref().map(|o| format!("{}/{}", o.os, o.arch)),
        vm_host: c.observed.as_ref().and_then(|o| o.vm.clone()),
        rejected: rejected.iter().map(|(c, r)| RejectionCode { name: c.executor.name.clone(), code: r.code }).collect(),
    };
    let decision = PlacementDecision {
        kind: ArtifactKind::PlacementDecision,
        captured_at: fsx::now_rfc3339(),
        backend_intent: req.backend,
        requires_kvm: req.requires_kvm,
        chosen_executor: c.executor.name.clone(),
        ssh_ref: c.executor.ssh_ref.clone(),
        caps: c.executor.caps.clone(),
        rejected: rejected
            .iter()
            .map(|(c, r)| Rejection {
                name: c.executor.name.clone(),
                ssh_ref: c.executor.ssh_ref.clone(),
                reason: format!("{}: {}", r.code, r.detail),
            })
            .collect(),
    };
    placed.file = Some(writer.write_entry(&decision, &details, &[])?);
    placed.decision = Some(decision);
    placed.details = Some(details);
    Ok(placed)
}
