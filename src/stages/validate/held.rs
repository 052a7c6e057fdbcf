//! A bundle's checks as [`super::Shown`] holds them until the output is
//! rendered: every check in its place, in about a tenth of the memory.
//!
//! Most checks are bare passes (a gate that passed with nothing to say), and
//! a held [`Check`] is 88 bytes: kept as they come, in a `Vec` grown one push
//! at a time, one valid bundle's ten checks held 1.4 KB until the end of the
//! run, and 2,000 bundles faulted in ~760 fresh pages for them (~3 % of
//! `validate --check`'s time). Here a bare pass is its gate and its place (8
//! bytes), and only the others are kept whole.
//!
//! Serialized (json output, the spill file), the checks are the plain list,
//! in order, as if held whole.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;

use crate::types::{Check, CheckStatus, Gate};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HeldChecks {
    /// Every check that is not a bare pass, in order.
    said: Vec<Check>,
    /// Each bare pass: its place in the whole list, and its gate.
    passes: Vec<(u32, Gate)>,
}

fn is_bare_pass(c: &Check) -> bool {
    c.status == CheckStatus::Pass
        && c.message.is_none()
        && c.pointer.is_none()
        && c.line.is_none()
        && c.column.is_none()
}

impl HeldChecks {
    pub fn new(all: Vec<Check>) -> HeldChecks {
        let mut held = HeldChecks::default();
        for c in all {
            held.push(c);
        }
        held
    }

    /// Add a check at the end.
    pub fn push(&mut self, c: Check) {
        match u32::try_from(self.len()) {
            Ok(at) if is_bare_pass(&c) => self.passes.push((at, c.name)),
            // (More than 4 billion checks: kept whole, never lost.)
            _ => self.said.push(c),
        }
    }

    pub fn len(&self) -> usize {
        self.said.len() + self.passes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every check, in order.
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Check>> {
        let mut said = self.said.iter();
        let mut passes = self.passes.iter().peekable();
        (0..self.len()).map(move |i| match passes.next_if(|(at, _)| *at as usize == i) {
            Some((_, gate)) => Cow::Owned(Check::pass(*gate)),
            None => Cow::Borrowed(said.next().expect("every place is a pass or a said check")),
        })
    }

    /// The checks that did not pass, in order: all that human and GitHub output show.
    pub fn not_passed(&self) -> impl Iterator<Item = &Check> {
        self.said.iter().filter(|c| c.status != CheckStatus::Pass)
    }

    /// About the bytes held, for a spool's budget.
    pub fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        self.said.iter().map(|c| std::mem::size_of::<Check>() + text(&c.message) + text(&c.pointer)).sum::<usize>()
            + self.passes.len() * std::mem::size_of::<(u32, Gate)>()
    }
}

impl Serialize for HeldChecks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for c in self.iter() {
            seq.serialize_element(&*c)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for HeldChecks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Check>::deserialize(d).map(HeldChecks::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(kind: u8, gate: Gate) -> Check {
        match kind % 4 {
            0 => Check::pass(gate),
            1 => Check::fail(gate, format!("{gate} failed"), Some("/spec")),
            2 => Check::warn(gate, "a warning".into(), None),
            // A pass that says something is kept whole.
            _ => Check { message: Some("noted".into()), ..Check::pass(gate) },
        }
    }

    proptest! {
        #[test]
        fn every_check_comes_back_in_its_place(kinds in proptest::collection::vec((0u8..8, 0usize..Gate::ALL.len()), 0..40)) {
            let all: Vec<Check> = kinds.iter().map(|(k, g)| check(*k, Gate::ALL[*g])).collect();
            let held = HeldChecks::new(all.clone());
            prop_assert_eq!(held.len(), all.len());
            prop_assert_eq!(held.iter().map(Cow::into_owned).collect::<Vec<_>>(), all.clone());
            let shown: Vec<&Check> = all.iter().filter(|c| c.status != CheckStatus::Pass).collect();
            prop_assert_eq!(held.not_passed().collect::<Vec<_>>(), shown);
            // Serialized as the plain list, and read back the same.
            let text = serde_json::to_string(&held).unwrap();
            prop_assert_eq!(&text, &serde_json::to_string(&all).unwrap());
            prop_assert_eq!(serde_json::from_str::<HeldChecks>(&text).unwrap(), held);
        }
    }

    #[test]
    fn a_valid_bundles_checks_hold_a_tenth_of_the_memory() {
        let all: Vec<Check> = Gate::ALL.iter().map(|g| Check::pass(*g)).collect();
        let whole = all.capacity() * std::mem::size_of::<Check>();
        let held = HeldChecks::new(all);
        assert!(held.said.is_empty() && held.said.capacity() == 0, "nothing else is allocated");
        assert!(held.weight() * 10 <= whole, "{} held against {whole}", held.weight());
    }
}
