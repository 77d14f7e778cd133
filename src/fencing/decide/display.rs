//! A decision as the run's one log line:
//! `node_b: production (timeline 2, 3/3 voters)`.

use std::fmt;

use super::Decision;

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(kind) = self.kind else {
            return write!(f, "{}: no decision ({})", self.node, self.reason);
        };
        write!(
            f,
            "{}: {kind} (timeline {}, {}/{} voters",
            self.node, self.timeline, self.reached, self.voters
        )?;
        if !self.reason.is_empty() && kind != crate::fencing::verdict::VerdictKind::Production {
            write!(f, "; {}", self.reason)?;
        }
        f.write_str(")")
    }
}
