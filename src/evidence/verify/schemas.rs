//! Step 7's schemas: each artifact kind's file schema and, where the kind
//! has them, the schema of its entry's `predicate.details`, as committed in
//! `schemas/` (tests keep those equal to the types) and compiled to code by
//! jsonschema's generator when agentplane is built. A verification neither
//! generates nor compiles them at its start (~6 ms of CPU on the calling
//! thread before any artifact could be checked).

use serde_json::Value;

use crate::types::ArtifactKind;

/// One compiled schema: its first error for an instance, if any.
#[derive(Clone, Copy)]
pub struct Check(for<'a> fn(&'a Value) -> jsonschema::ErrorIterator<'a>);

impl Check {
    /// The first way `instance` breaks the schema (`None`: it matches).
    pub fn first_error<'a>(&self, instance: &'a Value) -> Option<jsonschema::ValidationError<'a>> {
        (self.0)(instance).next()
    }
}

macro_rules! compiled {
    ($($name:ident => $path:literal),* $(,)?) => {$(
        #[jsonschema::validator(path = $path, draft = Draft202012, methods = { is_valid = false, validate = false })]
        struct $name;
    )*};
}

compiled! {
    ValidationFile => "schemas/validation-artifact.schema.json",
    PlacementFile => "schemas/placement-decision.schema.json",
    RunFile => "schemas/run-artifact.schema.json",
    ReplayFile => "schemas/replay-artifact.schema.json",
    SessionFile => "schemas/session-artifact.schema.json",
    PromotionFile => "schemas/promotion-artifact.schema.json",
    ReversalFile => "schemas/reversal-artifact.schema.json",
    ValidationDetails => "schemas/validation-artifact-details.schema.json",
    PlacementDetails => "schemas/placement-decision-details.schema.json",
    SessionDetails => "schemas/session-artifact-details.schema.json",
    PromotionDetails => "schemas/promotion-artifact-details.schema.json",
    ReversalDetails => "schemas/reversal-artifact-details.schema.json",
}

/// The schema of a kind's artifact file (`None` for the seal, which has none).
pub fn file(kind: ArtifactKind) -> Option<Check> {
    Some(Check(match kind {
        ArtifactKind::ValidationArtifact => ValidationFile::iter_errors,
        ArtifactKind::PlacementDecision => PlacementFile::iter_errors,
        ArtifactKind::RunArtifact => RunFile::iter_errors,
        ArtifactKind::ReplayArtifact => ReplayFile::iter_errors,
        ArtifactKind::SessionArtifact => SessionFile::iter_errors,
        ArtifactKind::PromotionArtifact => PromotionFile::iter_errors,
        ArtifactKind::ReversalArtifact => ReversalFile::iter_errors,
        ArtifactKind::Seal => return None,
    }))
}

/// The schema of a kind's `predicate.details` (`None`: the kind has no
/// details; its file holds everything).
pub fn details(kind: ArtifactKind) -> Option<Check> {
    Some(Check(match kind {
        ArtifactKind::ValidationArtifact => ValidationDetails::iter_errors,
        ArtifactKind::PlacementDecision => PlacementDetails::iter_errors,
        ArtifactKind::SessionArtifact => SessionDetails::iter_errors,
        ArtifactKind::PromotionArtifact => PromotionDetails::iter_errors,
        ArtifactKind::ReversalArtifact => ReversalDetails::iter_errors,
        ArtifactKind::RunArtifact | ArtifactKind::ReplayArtifact | ArtifactKind::Seal => return None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::artifacts::{details_schema_of, schema_of};
    use serde_json::json;

    /// What the build compiled judges as the types' schemas do, kind by
    /// kind, on broken instances (the committed files are held equal to the
    /// types by the `committed_schemas_match_the_types` integration test;
    /// real artifacts of every kind pass step 7 in the `up`, `demo` and
    /// upstream-compat tests, and in verify's own unit tests).
    #[test]
    fn the_compiled_schemas_are_the_types_and_judge_as_a_run_time_compile() {
        let instances = |kind: ArtifactKind| {
            vec![
                json!({}),
                json!([]),
                json!(null),
                json!({"kind": kind.as_str(), "bundle": 7}),
                json!({"kind": kind.as_str(), "bundle": "b", "bundleDigest": "sha256:ab", "status": "pass", "extra": {}}),
                json!({"checks": [{"name": 1}], "probes": "none", "hostKey": false}),
            ]
        };
        for kind in ArtifactKind::FILES {
            let pairs = [(file(kind), Some(schema_of(kind))), (details(kind), details_schema_of(kind))];
            for (compiled, generated) in pairs {
                assert_eq!(compiled.is_some(), generated.is_some(), "{kind}");
                let (Some(compiled), Some(generated)) = (compiled, generated) else { continue };
                let runtime = crate::schema_tools::compile(kind.schema_name(), &generated).unwrap();
                for i in instances(kind) {
                    let ours = compiled.first_error(&i);
                    assert_eq!(ours.is_none(), runtime.is_valid(&i), "{kind} on {i}");
                    // The first error, which a finding shows, is the one a
                    // run-time compile would give.
                    let shown = |e: jsonschema::ValidationError| (e.instance_path().to_string(), e.to_string());
                    assert_eq!(ours.map(shown), runtime.iter_errors(&i).next().map(shown), "{kind} on {i}");
                }
            }
        }
        assert!(file(ArtifactKind::Seal).is_none() && details(ArtifactKind::Seal).is_none());
    }
}
