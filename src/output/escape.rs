//! Escaping text that comes from inputs (file names, messages from evidence,
//! a bundle's fields) before it reaches a terminal or a CI log, so nobody can
//! clear a screen, forge a "✓ verified" line or inject a workflow command.

/// `s` with control characters (C0, DEL, C1) shown as `\x1b`-style escapes
/// (`\n`, `\r`, `\t` as themselves escaped too). Printable text, including
/// non-ASCII letters, is kept.
pub fn untrusted(s: &str) -> String {
    if !s.chars().any(is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_control(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// How many characters [`untrusted`] shows of `s`, without making it.
pub fn untrusted_width(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => 2,
            c if is_control(c) => 2 + format!("{:02x}", c as u32).len(),
            _ => 1,
        })
        .sum()
}

fn is_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A GitHub Actions workflow-command *message* (after `::`): `%`, CR and LF escaped.
pub fn gh_message(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// A workflow-command *property* value (`file=…,title=…`): also `:` and `,`.
pub fn gh_property(s: &str) -> String {
    gh_message(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn the_width_is_that_of_what_is_shown(s in "\\PC*|[\\x00-\\x{9f}\u{200e}\u{202a}\u{2066}a✓]{0,40}") {
            proptest::prop_assert_eq!(untrusted_width(&s), untrusted(&s).chars().count());
        }
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(untrusted("plain ✓ text"), "plain ✓ text");
        assert_eq!(untrusted("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(untrusted("x\ny\r\u{7f}"), "x\\ny\\r\\x7f");
        assert_eq!(untrusted("\u{202e}evil"), "\\x202eevil");
    }

    #[test]
    fn github_properties_cannot_inject_commands() {
        let hostile = "gh\n::warning file=x::INJECTED";
        let p = gh_property(hostile);
        assert!(!p.contains('\n') && !p.contains("::") && !p.contains(','), "{p}");
        assert_eq!(gh_message("100%\n"), "100%25%0A");
    }
}
