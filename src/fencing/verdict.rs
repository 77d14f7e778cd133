//! The reconciler's verdict: its type, its text form, and its freshness.
//! Pure: reading and writing the file is [`crate::runtime_files`]'s job.
//!
//! The verdict is `key=value` lines, so `cat /run/pgsql-state/verdict`
//! explains itself. Freshness is judged on CLOCK_BOOTTIME of one boot
//! ([`crate::fencing::clock`]).

use std::fmt;

use crate::fencing::clock::Now;

/// What a `strict` verdict is bound to: one postmaster of one cluster on
/// one timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `pg_control_system().system_identifier`, its bits as u64.
    pub system_identifier: u64,
    /// The timeline the node is on.
    pub timeline: u32,
    /// `pg_postmaster_start_time()` in microseconds since the epoch.
    pub postmaster_start_us: i64,
}

/// What the reconciler decided for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    /// This node is the legitimate primary and may take writes.
    Production,
    /// A standby of the legitimate primary.
    Standby,
    /// A standby that must not serve reads (too far behind, or attached to
    /// the wrong upstream).
    Lagging,
    /// A primary that must not take writes.
    Fenced,
}

impl VerdictKind {
    /// Every kind.
    pub const ALL: [VerdictKind; 4] = [
        VerdictKind::Production,
        VerdictKind::Standby,
        VerdictKind::Lagging,
        VerdictKind::Fenced,
    ];

    /// The word in the file (and on the wire).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Production => "production",
            VerdictKind::Standby => "standby",
            VerdictKind::Lagging => "lagging",
            VerdictKind::Fenced => "fenced",
        }
    }

    fn parse(text: &str) -> Option<VerdictKind> {
        VerdictKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a verdict file's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerdictParseError {
    /// A line that is neither a comment nor `key=value`.
    #[error("line {0}: not key=value")]
    NotKeyValue(usize),
    /// A required key is absent.
    #[error("no {0}= line")]
    Missing(&'static str),
    /// `verdict=` names no known kind.
    #[error("unknown verdict {0:?}")]
    UnknownKind(String),
    /// A numeric key holds something else.
    #[error("{key}={text:?} is not a number")]
    NotANumber {
        /// The key.
        key: &'static str,
        /// Its text.
        text: String,
    },
    /// Only some of the identity keys are present.
    #[error("system_identifier, timeline and postmaster_start_us go together")]
    PartialIdentity,
}

/// One verdict, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What was decided.
    pub kind: VerdictKind,
    /// Why, in words for the operator.
    pub reason: String,
    /// When the run that wrote it started (t0), on CLOCK_BOOTTIME of that
    /// boot.
    pub written: Now,
    /// How long it stays fresh, in milliseconds (the lease in `strict`).
    pub valid_ms: u64,
    /// A new primary's wait: `production` is not said before this
    /// CLOCK_BOOTTIME instant (ms), on the same boot.
    pub wait_until_ms: Option<u64>,
    /// The postmaster it was decided for, which a `strict` lease is bound to.
    pub identity: Option<Identity>,
    /// What the wait sits out, in words ("node_a's lease", "HAProxy's term
    /// after node_a stopped"), carried from the run that set it.
    pub wait_for: Option<String>,
    /// Two primaries claim the highest timeline: no node is legitimate
    /// until an operator clears it (`tie=1` in the file; `/metrics`
    /// reports it for the alert rules).
    pub tie: bool,
}

impl Verdict {
    /// Whether a new primary's wait is over at `now` (no wait: over).
    pub fn wait_over(&self, now: &Now) -> bool {
        match self.wait_until_ms {
            None => true,
            Some(until) => {
                !now.boot_id.is_empty()
                    && self.written.boot_id == now.boot_id
                    && now.boottime_ms >= until
            }
        }
    }

    /// Fresh: written on this boot, not in the future, and within `valid_ms`.
    pub fn is_fresh(&self, now: &Now) -> bool {
        !now.boot_id.is_empty()
            && self.written.boot_id == now.boot_id
            && now.boottime_ms >= self.written.boottime_ms
            && now.boottime_ms - self.written.boottime_ms < self.valid_ms
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from("# pgsql-state verdict, written by `pgsql-state reconcile`\n");
        out.push_str(&format!("verdict={}\n", self.kind.as_str()));
        out.push_str(&format!("reason={}\n", self.reason.replace('\n', " ")));
        out.push_str(&format!("boot_id={}\n", self.written.boot_id));
        out.push_str(&format!("boottime_ms={}\n", self.written.boottime_ms));
        out.push_str(&format!("valid_ms={}\n", self.valid_ms));
        // For the reader: the instant the lease ends (boottime_ms +
        // valid_ms, on CLOCK_BOOTTIME of boot_id); parsing ignores it.
        out.push_str(&format!(
            "expires_ms={}\n",
            self.written.boottime_ms.saturating_add(self.valid_ms)
        ));
        if let Some(w) = self.wait_until_ms {
            out.push_str(&format!("wait_until_ms={w}\n"));
        }
        if let Some(why) = &self.wait_for {
            out.push_str(&format!("wait_for={}\n", why.replace('\n', " ")));
        }
        if self.tie {
            out.push_str("tie=1\n");
        }
        if let Some(id) = &self.identity {
            out.push_str(&format!("system_identifier={}\n", id.system_identifier));
            out.push_str(&format!("timeline={}\n", id.timeline));
            out.push_str(&format!("postmaster_start_us={}\n", id.postmaster_start_us));
        }
        out
    }

    /// Parses the file's text. Unknown keys are ignored, so newer writers
    /// can add facts; missing or malformed required keys are errors.
    pub fn parse(text: &str) -> Result<Verdict, VerdictParseError> {
        let mut get = Fields::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or(VerdictParseError::NotKeyValue(n + 1))?;
            get.set(key.trim(), value.trim());
        }
        let kind = get
            .verdict
            .as_deref()
            .ok_or(VerdictParseError::Missing("verdict"))?;
        let kind = VerdictKind::parse(kind)
            .ok_or_else(|| VerdictParseError::UnknownKind(kind.to_string()))?;
        let identity = match (
            &get.system_identifier,
            &get.timeline,
            &get.postmaster_start_us,
        ) {
            (None, None, None) => None,
            (Some(s), Some(t), Some(p)) => Some(Identity {
                system_identifier: number(s, "system_identifier")?,
                timeline: number(t, "timeline")?,
                postmaster_start_us: number(p, "postmaster_start_us")?,
            }),
            _ => return Err(VerdictParseError::PartialIdentity),
        };
        Ok(Verdict {
            kind,
            reason: get.reason.unwrap_or_default(),
            written: Now {
                boot_id: get.boot_id.ok_or(VerdictParseError::Missing("boot_id"))?,
                boottime_ms: number(
                    get.boottime_ms
                        .as_deref()
                        .ok_or(VerdictParseError::Missing("boottime_ms"))?,
                    "boottime_ms",
                )?,
            },
            valid_ms: number(
                get.valid_ms
                    .as_deref()
                    .ok_or(VerdictParseError::Missing("valid_ms"))?,
                "valid_ms",
            )?,
            wait_until_ms: get
                .wait_until_ms
                .as_deref()
                .map(|w| number(w, "wait_until_ms"))
                .transpose()?,
            identity,
            wait_for: get.wait_for,
            tie: get.tie.as_deref() == Some("1"),
        })
    }
}

#[derive(Default)]
struct Fields {
    verdict: Option<String>,
    reason: Option<String>,
    boot_id: Option<String>,
    boottime_ms: Option<String>,
    valid_ms: Option<String>,
    wait_until_ms: Option<String>,
    wait_for: Option<String>,
    tie: Option<String>,
    system_identifier: Option<String>,
    timeline: Option<String>,
    postmaster_start_us: Option<String>,
}

impl Fields {
    fn set(&mut self, key: &str, value: &str) {
        let slot = match key {
            "verdict" => &mut self.verdict,
            "reason" => &mut self.reason,
            "boot_id" => &mut self.boot_id,
            "boottime_ms" => &mut self.boottime_ms,
            "valid_ms" => &mut self.valid_ms,
            "wait_until_ms" => &mut self.wait_until_ms,
            "wait_for" => &mut self.wait_for,
            "tie" => &mut self.tie,
            "system_identifier" => &mut self.system_identifier,
            "timeline" => &mut self.timeline,
            "postmaster_start_us" => &mut self.postmaster_start_us,
            _ => return,
        };
        *slot = Some(value.to_string());
    }
}

fn number<T: std::str::FromStr>(text: &str, key: &'static str) -> Result<T, VerdictParseError> {
    text.parse().map_err(|_| VerdictParseError::NotANumber {
        key,
        text: text.to_string(),
    })
}

/// The verdict as the responder found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictRead {
    /// No verdict file: the reconciler has not run (or is not used).
    Missing,
    /// A file that cannot be read or parsed (why); the responder fails closed.
    Unreadable(String),
    /// A verdict.
    Present(Verdict),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(kind: VerdictKind) -> Verdict {
        Verdict {
            kind,
            reason: "node_2 holds timeline 4".into(),
            written: Now {
                boot_id: "b1".into(),
                boottime_ms: 1_000,
            },
            valid_ms: 500,
            wait_until_ms: None,
            identity: Some(Identity {
                system_identifier: 7,
                timeline: 3,
                postmaster_start_us: 99,
            }),
            wait_for: Some("node_2's lease".into()),
            tie: false,
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        for kind in VerdictKind::ALL {
            let v = verdict(kind);
            assert_eq!(Verdict::parse(&v.render()), Ok(v));
        }
        let mut v = verdict(VerdictKind::Fenced);
        v.identity = None;
        assert_eq!(Verdict::parse(&v.render()), Ok(v.clone()));
        assert!(v.render().contains("\nexpires_ms=1500\n"), "{}", v.render());
        v.wait_until_ms = Some(41_700);
        assert_eq!(Verdict::parse(&v.render()), Ok(v.clone()));
        assert!(!v.render().contains("tie="), "{}", v.render());
        v.tie = true;
        assert!(v.render().contains("\ntie=1\n"), "{}", v.render());
        assert_eq!(Verdict::parse(&v.render()), Ok(v));
    }

    #[test]
    fn malformed_verdicts_are_errors() {
        let good = verdict(VerdictKind::Fenced).render();
        let cases = [
            ("", VerdictParseError::Missing("verdict")),
            (
                "verdict=maybe\n",
                VerdictParseError::UnknownKind("maybe".into()),
            ),
            ("garbage\n", VerdictParseError::NotKeyValue(1)),
            (
                &good.replace("valid_ms=500", "valid_ms=soon"),
                VerdictParseError::NotANumber {
                    key: "valid_ms",
                    text: "soon".into(),
                },
            ),
            (
                &good.replace("timeline=3\n", ""),
                VerdictParseError::PartialIdentity,
            ),
            (
                &good.replace("boot_id=b1\n", ""),
                VerdictParseError::Missing("boot_id"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Verdict::parse(text), Err(want), "{text:?}");
        }
        assert_eq!(
            VerdictParseError::UnknownKind("maybe".into()).to_string(),
            "unknown verdict \"maybe\""
        );
    }

    #[test]
    fn freshness() {
        let v = verdict(VerdictKind::Fenced);
        let at = |boot: &str, ms| Now {
            boot_id: boot.into(),
            boottime_ms: ms,
        };
        let cases = [
            (at("b1", 1_000), true),
            (at("b1", 1_499), true),
            (at("b1", 1_500), false),
            (at("b1", 999), false),
            (at("b2", 1_100), false),
        ];
        let mut no_boot = v.clone();
        no_boot.written.boot_id = String::new();
        no_boot.written.boottime_ms = 0;
        assert!(
            !no_boot.is_fresh(&Now::unknown()),
            "an unknown clock makes nothing fresh"
        );
        for (now, want) in cases {
            assert_eq!(v.is_fresh(&now), want, "{now:?}");
        }
    }
}
