//! The schema check: the bundle schema generated from [`super::model::Bundle`].

use serde_json::Value;

/// One schema violation, located by JSON pointer.
#[derive(Debug, Clone)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

static SHARED: std::sync::OnceLock<Result<SchemaChecker, String>> = std::sync::OnceLock::new();

/// A compiled bundle-schema validator, built once and shared across threads.
pub struct SchemaChecker {
    validator: jsonschema::Validator,
}

/// The bundle schema as committed in `schemas/`: what
/// `schema_tools::input::<Bundle>()` generates (a test keeps them equal),
/// parsed instead of generated again at every start (~0.3 ms of the
/// serial start of `validate`).
const BUNDLE_SCHEMA: &str = include_str!("../../schemas/bundle.schema.json");

impl SchemaChecker {
    pub fn new() -> anyhow::Result<Self> {
        let schema: Value = serde_json::from_str(BUNDLE_SCHEMA)?;
        Ok(SchemaChecker { validator: crate::schema_tools::compile("bundle", &schema)? })
    }

    /// The one checker of this process, compiled on first use. Compiling
    /// (schemars, then jsonschema) takes a few milliseconds: [`warm_up`]
    /// starts it on its own thread while the caller looks for bundles, and
    /// a caller that needs it first waits for that compile, never starts another.
    ///
    /// [`warm_up`]: SchemaChecker::warm_up
    pub fn shared() -> anyhow::Result<&'static SchemaChecker> {
        SHARED
            .get_or_init(|| SchemaChecker::new().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Start compiling [`SchemaChecker::shared`] in the background.
    pub fn warm_up() {
        if SHARED.get().is_none() {
            // A thread that cannot start only means the first use compiles it.
            let _ = std::thread::Builder::new().name("schema".into()).spawn(|| {
                let _ = SchemaChecker::shared();
            });
        }
    }

    /// Every violation, not just the first, in a stable order.
    pub fn check(&self, instance: &Value) -> Vec<Violation> {
        let mut out: Vec<Violation> = self
            .validator
            .iter_errors(instance)
            .map(|e| Violation { pointer: e.instance_path().as_str().to_string(), message: short(&e.to_string()) })
            .collect();
        out.sort_by(|a, b| a.pointer.cmp(&b.pointer).then(a.message.cmp(&b.message)));
        out.dedup_by(|a, b| a.pointer == b.pointer && a.message == b.message);
        out
    }
}

/// Keep messages about huge values readable.
fn short(s: &str) -> String {
    const MAX: usize = 300;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_schema_is_the_generated_one() {
        let embedded: Value = serde_json::from_str(BUNDLE_SCHEMA).unwrap();
        assert_eq!(
            embedded,
            crate::schema_tools::input::<crate::bundle::model::Bundle>(),
            "schemas/bundle.schema.json is stale: run `cargo run -- schema --write schemas`"
        );
    }

    #[test]
    fn the_shared_checker_is_compiled_once_whoever_asks_first() {
        SchemaChecker::warm_up();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| SchemaChecker::shared().unwrap());
            (a.join().unwrap(), SchemaChecker::shared().unwrap())
        });
        assert!(std::ptr::eq(a, b), "one checker for the process");
        // It checks like a freshly compiled one.
        let bad = serde_json::json!({"apiVersion": 7});
        let fresh = SchemaChecker::new().unwrap().check(&bad);
        let shared = SchemaChecker::shared().unwrap().check(&bad);
        assert!(!fresh.is_empty());
        let pairs = |v: &[Violation]| v.iter().map(|x| (x.pointer.clone(), x.message.clone())).collect::<Vec<_>>();
        assert_eq!(pairs(&fresh), pairs(&shared));
    }
}
