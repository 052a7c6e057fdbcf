//! The `secrets-are-refs` gate: required secrets are names or refs, and no
//! inline secret material anywhere in a bundle (private key blocks, values of
//! password/token/secret keys, well-known token shapes).

use serde_json::Value;

use super::{Check, Gate, kind_of};
use crate::json::at;

/// A secret name: an environment-variable-like identifier, or a reference URI.
pub(super) fn is_secret_ref(s: &str) -> bool {
    let ident = !s.is_empty()
        && s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    ident || looks_like_ref(s)
}

pub(super) fn looks_like_ref(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    s.contains("://")
        || ["env:", "file:", "vault:", "secret:", "secrets:", "ref:", "urn:"].iter().any(|p| lower.starts_with(p))
}

/// Endings of a key (its ASCII letters and digits, lowercased) that name a
/// reference to a secret: such keys are fine whatever else they say.
pub(super) const REF_ENDINGS: [&str; 12] =
    ["ref", "refs", "root", "path", "file", "name", "names", "id", "hash", "digest", "required", "env"];

/// Endings of a key (as above) whose literal values are secret material.
pub(super) const SECRET_ENDINGS: [&str; 11] = [
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "accesskey",
    "clientsecret",
    "credential",
    "credentials",
];

/// Key names whose values are secret material when they hold a literal.
///
/// This runs for every string in every bundle, so it reads the key once and
/// keeps no copy: the last 16 letters and digits, lowercased, are packed into
/// one `u128` (the last in the low byte), and each ending is one mask and one
/// comparison. Every ending is shorter than the window (checked as the
/// constants are built) and holds no zero byte, so a key shorter than an
/// ending (zeros above its first letter) never matches it. The test `secret_keys_match_the_plain_definition` holds this to
/// the plain reading: lowercase the whole key, then `ends_with`.
pub(super) fn is_secret_key(key: &str) -> bool {
    let window =
        key.bytes().filter(u8::is_ascii_alphanumeric).fold(0u128, |w, b| (w << 8) | u128::from(b.to_ascii_lowercase()));
    let ends = |(value, mask): &(u128, u128)| window & mask == *value;
    !REF_WINDOWS.iter().any(ends) && SECRET_WINDOWS.iter().any(ends)
}

const REF_WINDOWS: [(u128, u128); 12] = windows(REF_ENDINGS);
const SECRET_WINDOWS: [(u128, u128); 11] = windows(SECRET_ENDINGS);

/// Each ending as the low bytes of a `u128` and the mask that keeps them.
const fn windows<const N: usize>(endings: [&str; N]) -> [(u128, u128); N] {
    let mut out = [(0, 0); N];
    let mut i = 0;
    while i < N {
        let b = endings[i].as_bytes();
        assert!(!b.is_empty() && b.len() < 16, "an ending fits the 16-byte window");
        let mut value = 0u128;
        let mut j = 0;
        while j < b.len() {
            value = (value << 8) | b[j] as u128;
            j += 1;
        }
        out[i] = (value, (1u128 << (8 * b.len())) - 1);
        i += 1;
    }
    out
}

/// Well-known shapes of live credentials.
pub(super) fn token_shape(s: &str) -> Option<&'static str> {
    // Every shape below is at least 16 characters; most bundle strings are shorter.
    if s.len() < 16 {
        return None;
    }
    // One pass for every prefix below; most strings hold none of them.
    if !SHAPE_PREFIXES.get_or_init(shape_prefixes).as_ref().is_none_or(|ac| ac.is_match(s)) {
        return jwt(s);
    }
    let word = |prefix: &str, min: usize| {
        s.match_indices(prefix).any(|(i, _)| {
            let rest = &s[i + prefix.len()..];
            rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').count() >= min
        })
    };
    if s.contains("-----BEGIN") && s.contains("PRIVATE KEY") {
        return Some("a private key block");
    }
    if s.match_indices("AKIA").any(|(i, _)| {
        let r = &s[i + 4..];
        r.len() >= 16 && r.chars().take(16).all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }) {
        return Some("an AWS access key id");
    }
    for (prefix, min, what) in [
        ("ghp_", 30, "a GitHub token"),
        ("gho_", 30, "a GitHub token"),
        ("ghs_", 30, "a GitHub token"),
        ("github_pat_", 30, "a GitHub token"),
        ("glpat-", 20, "a GitLab token"),
        ("xoxb-", 10, "a Slack token"),
        ("xoxp-", 10, "a Slack token"),
        ("AIza", 35, "a Google API key"),
        ("sk-", 32, "an API secret key"),
        ("sk_live_", 20, "a Stripe secret key"),
    ] {
        if word(prefix, min) {
            return Some(what);
        }
    }
    jwt(s)
}

/// JSON Web Tokens: three base64url parts, the first two starting with `eyJ`.
fn jwt(s: &str) -> Option<&'static str> {
    if !s.starts_with("eyJ") {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 3 && parts[0].starts_with("eyJ") && parts[1].starts_with("eyJ") && parts[2].len() >= 16 {
        return Some("a JSON Web Token");
    }
    None
}

/// Every literal [`token_shape`] looks for before its own rules: a string
/// holding none of them can only be a JSON Web Token.
const SHAPES: [&str; 12] = [
    "-----BEGIN",
    "AKIA",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "AIza",
    "sk-",
    "sk_live_",
];

static SHAPE_PREFIXES: std::sync::OnceLock<Option<aho_corasick::AhoCorasick>> = std::sync::OnceLock::new();

/// `None` if the automaton cannot be built: every string then takes the full checks.
fn shape_prefixes() -> Option<aho_corasick::AhoCorasick> {
    aho_corasick::AhoCorasick::new(SHAPES).ok()
}

pub(super) fn secrets_are_refs(v: &Value) -> Vec<Check> {
    const NAME: Gate = Gate::SecretsAreRefs;
    let mut out = Vec::new();
    if let Some(Value::Array(items)) = at(v, "/spec/secrets/required") {
        for (i, item) in items.iter().enumerate() {
            let ptr = format!("/spec/secrets/required/{i}");
            match item {
                Value::String(s) if is_secret_ref(s) => {}
                Value::String(_) => out.push(Check::fail(
                    NAME,
                    "a required secret must be a name or a ref, not a value".into(),
                    Some(&ptr),
                )),
                other => out.push(Check::fail(
                    NAME,
                    format!("a required secret is {}, not a name", kind_of(other)),
                    Some(&ptr),
                )),
            }
        }
    }
    walk(v, None, &mut Vec::new(), &mut out);
    if out.is_empty() {
        out.push(Check::pass(NAME));
    }
    out
}

/// One step of the way to a node: an object key or an array index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The JSON pointer of a path (RFC 6901 escaping), made only for a finding.
fn pointer(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        out.push('/');
        match step {
            Step::Key(k) => out.push_str(&k.replace('~', "~0").replace('/', "~1")),
            Step::Index(i) => out.push_str(&i.to_string()),
        }
    }
    out
}

/// Every string in document order, with the key it is the value of (array
/// items take their array's key).
fn walk<'a>(node: &'a Value, key: Option<&'a str>, path: &mut Vec<Step<'a>>, out: &mut Vec<Check>) {
    const NAME: Gate = Gate::SecretsAreRefs;
    match node {
        Value::Object(map) => {
            for (k, child) in map {
                path.push(Step::Key(k));
                walk(child, Some(k), path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push(Step::Index(i));
                walk(child, key, path, out);
                path.pop();
            }
        }
        Value::String(s) => {
            if let Some(what) = token_shape(s) {
                out.push(Check::fail(NAME, format!("inline secret material: {what}"), Some(&pointer(path))));
            } else if let Some(k) = key
                && !s.is_empty()
                && s != "UNSET"
                && is_secret_key(k)
                && !looks_like_ref(s)
            {
                out.push(Check::fail(
                    NAME,
                    format!("`{k}` holds a literal value; secrets must be refs"),
                    Some(&pointer(path)),
                ));
            }
        }
        _ => {}
    }
}
