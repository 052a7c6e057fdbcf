//! `fleet/inventory.json`: the typed v0.1 shape and the older untyped shape
//! (`executors[].caps`), both normalised into [`Inventory`].

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use crate::error::Problem;
use crate::types::SshTarget;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(title = "Agentplane Fleet Inventory v0.1")]
pub struct TypedInventory {
    #[schemars(extend("const" = "agentplane.socioprophet.org/v0.1"))]
    pub api_version: String,
    #[schemars(extend("const" = "FleetInventory"))]
    pub kind: String,
    pub metadata: InventoryMetadata,
    #[serde(default)]
    pub builders: Vec<Node>,
    pub executors: Vec<Node>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_builder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_executor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_policy: Option<SelectionPolicy>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryMetadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelectionPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_enabled: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    #[schemars(extend("enum" = ["ready", "degraded", "drained", "offline"]))]
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// How to reach a node over SSH (paths only; agentplane never stores key contents).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SshBlock {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub name: String,
    /// `local`, `user@host[:port]`, or a host name.
    pub ssh_ref: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("items" = {"enum": ["qemu", "microvm", "lima-process", "fleet"]}))]
    pub supported_backends: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshBlock>,
}

fn yes() -> bool {
    true
}

/// The older, untyped shape: `{executors: [{name, sshRef, caps}], defaultExecutor}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyInventory {
    pub executors: Vec<LegacyNode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_executor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LegacyNode {
    pub name: String,
    pub ssh_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshBlock>,
}

pub use crate::runner::Reach;

/// One executor, whatever shape it came from.
#[derive(Debug, Clone)]
pub struct Executor {
    pub name: String,
    pub ssh_ref: String,
    pub enabled: bool,
    pub platform: Option<(String, String)>,
    /// `None`: the inventory does not say, so every backend is allowed.
    pub supported_backends: Option<Vec<String>>,
    pub kvm: bool,
    /// The node's capabilities as declared (`capabilities` or legacy `caps`).
    pub caps: Value,
    pub health: Option<String>,
    pub trust_zone: Option<String>,
    pub reach: Reach,
    /// The ssh_config file that resolved its host alias, when one did.
    pub ssh_config: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Inventory {
    /// The file it came from; `None` for the implicit local-only inventory.
    pub path: Option<PathBuf>,
    pub executors: Vec<Executor>,
    pub default_executor: Option<String>,
}

impl Inventory {
    /// No inventory file: one `local` executor that runs every backend.
    pub fn implicit_local() -> Inventory {
        Inventory {
            path: None,
            executors: vec![Executor {
                name: "local".into(),
                ssh_ref: "local".into(),
                enabled: true,
                platform: None,
                supported_backends: None,
                kvm: false,
                caps: Value::Object(Map::new()),
                health: None,
                trust_zone: None,
                reach: Reach::Local,
                ssh_config: None,
            }],
            default_executor: Some("local".into()),
        }
    }

    /// Load `path`, or the implicit inventory when `path` is the default and absent.
    pub fn load(path: &Path, explicit: bool) -> Result<Inventory> {
        if !path.exists() && !explicit {
            return Ok(Inventory::implicit_local());
        }
        let bad = |msg: String| -> anyhow::Error {
            Problem::error(format!("inventory `{}`: {msg}", path.display()))
                .hint("see `agentplane schema fleet-inventory` for the typed shape; the older `executors[].caps` shape is accepted too")
                .into()
        };
        let bytes = crate::fsx::read_regular(path, crate::fsx::caps::DOCUMENT)
            .map_err(|e| bad(e.kind.map_or_else(|| format!("cannot be read: {e}"), |k| k.to_string())))?;
        let value: Value = crate::json::parse_strict(&bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let typed = value.get("apiVersion").is_some() || value.get("kind").is_some();
        let kind = if typed { "fleet-inventory" } else { "legacy" };
        let validator = if typed {
            crate::schema_tools::compile("fleet-inventory", &crate::schema_tools::input::<TypedInventory>())?
        } else {
            crate::schema_tools::compile("legacy inventory", &crate::schema_tools::generate::<LegacyInventory>())?
        };
        if let Some(e) = validator.iter_errors(&value).next() {
            let ptr = e.instance_path().as_str().to_string();
            return Err(bad(format!("at `{}`: {e} ({kind} shape)", if ptr.is_empty() { "/" } else { &ptr })));
        }
        let (nodes, default_executor) = if typed {
            let inv: TypedInventory = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
            (inv.executors, inv.default_executor)
        } else {
            let inv: LegacyInventory = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
            let nodes = inv.executors.into_iter().map(legacy_to_node).collect();
            (nodes, inv.default_executor)
        };
        let mut executors = Vec::with_capacity(nodes.len());
        // A set, not a scan of those before: linear in the fleet's size.
        let mut names = std::collections::HashSet::with_capacity(nodes.len());
        for (i, n) in nodes.into_iter().enumerate() {
            if !names.insert(n.name.clone()) {
                return Err(bad(format!("at `/executors/{i}/name`: duplicate executor name `{}`", n.name)));
            }
            let (reach, ssh_config) = reach_of(&n).map_err(|e| match e {
                ReachError::Node(m) => bad(format!("at `/executors/{i}`: {m}")),
                // Not the inventory's shape: the file its alias resolves through.
                ReachError::SshConfig(m) => anyhow::Error::from(
                    Problem::error(format!("inventory `{}`: at `/executors/{i}`: {m}", path.display())).hint(
                        "the sshRef is resolved through ~/.ssh/config (or Lima's ssh.config) as OpenSSH would: fix the file named, or give user@host:port",
                    ),
                ),
            })?;
            let caps = n.capabilities.clone().map(Value::Object).unwrap_or(Value::Object(Map::new()));
            executors.push(Executor {
                kvm: caps.get("kvm").and_then(Value::as_bool).unwrap_or(false),
                name: n.name,
                ssh_ref: n.ssh_ref,
                enabled: n.enabled,
                platform: n.platform.map(|p| (p.os, p.arch)),
                supported_backends: n.supported_backends,
                caps,
                health: n.health.map(|h| h.state),
                trust_zone: n.trust_zone,
                reach,
                ssh_config,
            });
        }
        if let Some(d) = &default_executor
            && !names.contains(d)
        {
            return Err(bad(format!("at `/defaultExecutor`: `{d}` is not an executor in this inventory")));
        }
        Ok(Inventory { path: Some(path.to_path_buf()), executors, default_executor })
    }
}

/// Legacy `caps {os, arch, kvm, notes}` become a platform plus capabilities.
fn legacy_to_node(l: LegacyNode) -> Node {
    let caps = l.caps.unwrap_or_default();
    let s = |k: &str| caps.get(k).and_then(Value::as_str).map(str::to_string);
    let platform = match (s("os"), s("arch")) {
        (Some(os), Some(arch)) => Some(Platform { os, arch }),
        _ => None,
    };
    Node {
        name: l.name,
        ssh_ref: l.ssh_ref,
        enabled: true,
        platform,
        supported_backends: None,
        capabilities: Some(caps),
        health: None,
        trust_zone: None,
        ssh: l.ssh,
    }
}

fn home() -> String {
    std::env::var("HOME").unwrap_or_else(|_| "/root".into())
}

/// Why an executor's reach could not be worked out.
#[derive(Debug)]
enum ReachError {
    /// The node itself: its sshRef, ssh block or capabilities.
    Node(String),
    /// The ssh config file its alias resolves through.
    SshConfig(String),
}

/// Work out how to reach a node: `local`, its `ssh` block, or `user@host[:port]`.
///
/// `capabilities.lima: "<instance>"` names a Lima instance: it is reached as
/// the alias `lima-<instance>`, through `$LIMA_HOME/<instance>/ssh.config`
/// (an `ssh` block still wins for what it states).
fn reach_of(n: &Node) -> Result<(Reach, Option<String>), ReachError> {
    let lima = match n.capabilities.as_ref().and_then(|c| c.get("lima")) {
        None => None,
        Some(Value::String(i)) if crate::ssh::config::is_lima_instance(i) => Some(format!("lima-{i}")),
        Some(other) => {
            return Err(ReachError::Node(format!(
                "capabilities.lima must be a Lima instance name (letters, digits, `-`, `_`, `.`), not {other}"
            )));
        }
    };
    if n.ssh_ref == "local" && n.ssh.is_none() && lima.is_none() {
        return Ok((Reach::Local, None));
    }
    let default_user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let (mut user, mut host, mut port) = (default_user, String::new(), 22u16);
    if n.ssh_ref != "local" {
        let (u, rest) = match n.ssh_ref.split_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, n.ssh_ref.as_str()),
        };
        if let Some(u) = u {
            user = u;
        }
        host = rest.to_string();
        if let Some((h, p)) = rest.rsplit_once(':')
            && !h.contains(':')
        {
            port = p.parse().map_err(|_| ReachError::Node(format!("sshRef `{}` has a bad port", n.ssh_ref)))?;
            host = h.to_string();
        }
    }
    if let Some(alias) = lima {
        host = alias;
    }
    let b = n.ssh.as_ref();
    if let Some(b) = b {
        host = b.host.clone();
        port = b.port.unwrap_or(port);
        if let Some(u) = &b.user {
            user = u.clone();
        }
    }
    if host.is_empty() {
        return Err(ReachError::Node(format!("sshRef `{}` names no host", n.ssh_ref)));
    }
    let h = home();
    // `~/` means the invoking user's home, as in ssh_config.
    let expand = |p: &str| match p.strip_prefix("~/") {
        Some(rest) => format!("{h}/{rest}"),
        None => p.to_string(),
    };
    // The host may be an alias of ~/.ssh/config or a Lima instance
    // (`lima-<name>`): resolved as OpenSSH would, what the inventory states
    // explicitly (user@, :port, the ssh block) winning over the config file.
    let home = std::path::PathBuf::from(&h);
    let explicit_port =
        n.ssh_ref.rsplit_once(':').is_some_and(|(a, _)| !a.contains(':')) || b.is_some_and(|b| b.port.is_some());
    let explicit_user = n.ssh_ref.contains('@') || b.is_some_and(|b| b.user.is_some());
    let resolved = crate::ssh::config::resolve(&host, &home, &crate::ssh::config::lima_home(&home), &user)
        .map_err(|e| ReachError::SshConfig(format!("{e:#}")))?;
    let mut target = SshTarget {
        host: host.clone(),
        port,
        user: user.clone(),
        identity_file: expand("~/.ssh/id_ed25519"),
        known_hosts_file: expand("~/.ssh/known_hosts"),
    };
    let mut via = None;
    if let Some(r) = resolved {
        target.host = r.target.host;
        target.port = if explicit_port { port } else { r.target.port };
        target.user = if explicit_user { user } else { r.target.user };
        target.identity_file = r.target.identity_file;
        target.known_hosts_file = r.target.known_hosts_file;
        via = Some(r.file.display().to_string());
    }
    if let Some(id) = b.and_then(|b| b.identity_file.as_deref()) {
        target.identity_file = expand(id);
    }
    if let Some(kh) = b.and_then(|b| b.known_hosts_file.as_deref()) {
        target.known_hosts_file = expand(kh);
    }
    Ok((Reach::Ssh(target), via))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, executors: &[&str], default: &str) -> PathBuf {
        let nodes: Vec<Value> = executors
            .iter()
            .map(|name| {
                serde_json::json!({
                    "name": name, "sshRef": "local", "enabled": true,
                    "supportedBackends": ["lima-process"], "capabilities": {"kvm": false},
                    "health": {"state": "ready"}, "trustZone": "test"
                })
            })
            .collect();
        let inv = serde_json::json!({
            "apiVersion": "agentplane.socioprophet.org/v0.1",
            "kind": "FleetInventory",
            "metadata": {"name": "test", "version": "0.1.0", "createdAt": "2026-11-22T00:00:00Z"},
            "builders": [],
            "executors": nodes,
            "defaultExecutor": default,
            "selectionPolicy": {"preferHealthy": true, "requireEnabled": true}
        });
        let p = dir.join("inv.json");
        std::fs::write(&p, inv.to_string()).unwrap();
        p
    }

    #[test]
    fn a_name_given_twice_is_refused_at_its_second_place() {
        let dir = tempfile::tempdir().unwrap();
        let err = Inventory::load(&write(dir.path(), &["a", "b", "c", "b"], "a"), true).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("at `/executors/3/name`: duplicate executor name `b`"), "{msg}");
    }

    #[test]
    fn the_default_must_be_one_of_the_executors() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::load(&write(dir.path(), &["a", "b"], "b"), true).unwrap();
        assert_eq!(inv.executors.len(), 2);
        let err = Inventory::load(&write(dir.path(), &["a", "b"], "zzz"), true).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("at `/defaultExecutor`: `zzz` is not an executor in this inventory"), "{msg}");
    }
}
