//! The outcome of a stage that refused its subject (exit 1): rendered as data.

use serde_json::{Value, json};

use crate::error::{Problem, Refusal, RefusalCode};
use crate::exit::Exit;
use crate::output::escape::untrusted;
use crate::output::render::{Lines, Render, Style};

/// `{"command": …, "outcome": "refused", "code": …, "message": …, "hint": …}`
#[derive(Debug)]
pub struct Refused {
    pub command: &'static str,
    pub refusal: Refusal,
}

/// Turn a refusal in `err`'s chain into an outcome; anything else stays an error.
pub fn from_error(command: &'static str, err: anyhow::Error) -> anyhow::Result<Box<dyn Render>> {
    if let Some(r) = crate::error::refusal_of(&err) {
        return Ok(Box::new(Refused { command, refusal: r.clone() }));
    }
    // The bundle loader's exit-1 problems: an invalid bundle given to a stage.
    if let Some(p) = err.chain().find_map(|e| e.downcast_ref::<Problem>()).filter(|p| p.exit == Exit::Failed) {
        let mut r = Refusal::new(RefusalCode::BundleInvalid, p.message.clone());
        r.hint = p.hint.clone();
        return Ok(Box::new(Refused { command, refusal: r }));
    }
    Err(err)
}

impl Render for Refused {
    fn exit(&self) -> Exit {
        Exit::Failed
    }

    fn human_is_diagnostic(&self) -> bool {
        true
    }

    fn human(&self, style: Style) -> String {
        let mut out = Lines::default();
        out.line(format!("{} {}", style.bad(), untrusted(&self.refusal.message)));
        if let Some(h) = &self.refusal.hint {
            out.line(format!("{} {h}", style.paint("hint:", "1;36")));
        }
        out.into_string()
    }

    fn json(&self) -> Value {
        let mut v = serde_json::to_value(&self.refusal).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("command".into(), json!(self.command));
            m.insert("outcome".into(), json!("refused"));
        }
        v
    }
}
