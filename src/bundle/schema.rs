//! The schema check: the bundle schema generated from [`super::model::Bundle`],
//! compiled to code when agentplane is built.

use serde_json::Value;

/// One schema violation, located by JSON pointer.
#[derive(Debug, Clone)]
pub struct Violation {
    pub pointer: String,
    pub message: String,
}

/// The bundle schema as committed in `schemas/` (what
/// `schema_tools::input::<Bundle>()` generates; a test keeps them equal),
/// compiled into the binary by jsonschema's own code generator when
/// agentplane is built. A run pays neither for compiling it nor for checking
/// it against the draft 2020-12 meta-schema: those were ~4–5 ms of the
/// serial start of `validate`, before any bundle could be checked.
#[jsonschema::validator(path = "schemas/bundle.schema.json", draft = Draft202012)]
struct Compiled;

/// The bundle-schema check. It holds nothing: the validator is code.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchemaChecker;

impl SchemaChecker {
    /// The checker. Infallible: a schema that did not compile would not
    /// have built the binary.
    pub fn new() -> Self {
        SchemaChecker
    }

    /// Every violation, not just the first, in a stable order.
    pub fn check(&self, instance: &Value) -> Vec<Violation> {
        let mut out: Vec<Violation> = Compiled::iter_errors(instance)
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

    const BUNDLE_SCHEMA: &str = include_str!("../../schemas/bundle.schema.json");

    #[test]
    fn the_compiled_schema_is_the_generated_one() {
        let committed: Value = serde_json::from_str(BUNDLE_SCHEMA).unwrap();
        assert_eq!(
            committed,
            crate::schema_tools::input::<crate::bundle::model::Bundle>(),
            "schemas/bundle.schema.json is stale: run `cargo run -- schema --write schemas`"
        );
    }

    /// The code generator and jsonschema's run-time compiler must give the
    /// same verdicts at the same places, on bundles good and bad. The
    /// generated code may leave out a message another one implies (a value
    /// outside a string `enum` is not also reported as "not of type
    /// string"), never add one.
    #[test]
    fn the_compiled_checker_agrees_with_a_run_time_compile() {
        let schema: Value = serde_json::from_str(BUNDLE_SCHEMA).unwrap();
        let runtime = crate::schema_tools::compile("bundle", &schema).unwrap();
        // The shipped example bundles are valid; each mutation of one breaks it.
        let agent: Value = serde_json::from_str(include_str!("../../bundles/example-agent/bundle.json")).unwrap();
        let vm: Value = serde_json::from_str(include_str!("../../bundles/example-vm/bundle.json")).unwrap();
        let mutated = |pointer: &str, to: Value| {
            let mut v = agent.clone();
            *v.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = to;
            v
        };
        let cases = [
            agent.clone(),
            vm,
            mutated("/metadata/name", serde_json::json!("Not A Name")),
            mutated("/metadata/createdAt", serde_json::json!(7)),
            mutated("/spec/policy/maxRunSeconds", serde_json::json!("twenty")),
            mutated("/kind", serde_json::json!("Bundles")),
            serde_json::json!({"apiVersion": 7}),
            serde_json::json!([]),
            serde_json::json!(null),
            serde_json::json!({"metadata": {"name": ["a"], "version": 1}, "spec": {"policy": {"maxRunSeconds": -1}}}),
            serde_json::json!({"kind": "Bundle", "unexpected": true, "spec": {"vm": {"cpus": "two"}}}),
        ];
        assert!(SchemaChecker::new().check(&cases[0]).is_empty() && SchemaChecker::new().check(&cases[1]).is_empty());
        assert!(cases[2..].iter().all(|c| !SchemaChecker::new().check(c).is_empty()));
        for case in cases {
            let theirs: Vec<(String, String)> = runtime
                .iter_errors(&case)
                .map(|e| (e.instance_path().as_str().to_string(), short(&e.to_string())))
                .collect();
            let ours: Vec<(String, String)> =
                SchemaChecker::new().check(&case).into_iter().map(|v| (v.pointer, v.message)).collect();
            assert_eq!(ours.is_empty(), theirs.is_empty(), "verdict on {case}");
            assert_eq!(Compiled::is_valid(&case), runtime.is_valid(&case), "on {case}");
            let places =
                |v: &[(String, String)]| v.iter().map(|x| x.0.clone()).collect::<std::collections::BTreeSet<_>>();
            assert_eq!(places(&ours), places(&theirs), "places on {case}");
            for message in &ours {
                assert!(theirs.contains(message), "{message:?} on {case}, not in {theirs:?}");
            }
        }
    }
}
