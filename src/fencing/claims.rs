//! Claim records: every voter's durable memory of the highest primary
//! claim it has seen, per system identifier. Pure: the type, how a record
//! is raised, and its text form. The file is [`crate::fencing::claims_store`]'s.
//!
//! A record only ever goes up. A claim on a higher timeline replaces it; a
//! second node claiming the same timeline makes a tie, which fences every
//! candidate until an operator re-initialises the record
//! (`pgsql-state claims init`). A voter whose record is missing or
//! unreadable casts no vote (see DESIGN.md, "Deciding").
//!
//! A record re-initialised on a voter that may have voted before (a
//! replaced disk, a cleared tie) is *catching up*: it casts no vote until
//! it has read the records of a majority of the other voters and risen to
//! the highest of them ([`caught_up`]). An empty record that voted at once
//! could hand a zombie's lower claim the majority its successor needed.
//! Only a new cluster's voters start voting at once
//! (`claims init --new-cluster`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One claim: `node` said it is the primary on `timeline` of the cluster
/// `system_identifier`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Claim {
    /// The cluster.
    pub system_identifier: u64,
    /// The timeline claimed.
    pub timeline: u32,
    /// The claimant's node name.
    pub node: String,
}

/// The highest claim seen for one cluster: its timeline, and every node
/// that claimed it (more than one is a tie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Highest {
    /// The highest timeline claimed.
    pub timeline: u32,
    /// Who claimed it; two or more is a tie.
    pub nodes: BTreeSet<String>,
}

impl Highest {
    /// Whether two nodes claimed the same highest timeline.
    pub fn is_tie(&self) -> bool {
        self.nodes.len() > 1
    }
}

/// A voter's record: the highest claim per system identifier.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClaimRecord {
    /// Per cluster, the highest claim.
    pub clusters: BTreeMap<u64, Highest>,
    /// Re-initialised, and not yet risen to what a majority of the other
    /// voters hold: it casts no vote.
    pub catching_up: bool,
}

/// The line that marks a record catching up.
pub const CATCHING_UP: &str = "catching-up";

/// Whether a record catching up has read enough: the records of more
/// than half of the `others` (the other configured voters), each counted
/// once. Any majority of all voters that held a claim keeps at least half
/// of its members among the others, and more than half of the others
/// always meets them. Returns the claims to rise to (every one those
/// records hold), or `None` while too few were read. Pure.
pub fn caught_up(others: usize, read: &[Vec<Claim>]) -> Option<Vec<Claim>> {
    // A lone voter (no other configured) is every majority by itself:
    // there is nothing to catch up from, and nothing it could miss.
    (others == 0 || read.len() * 2 > others).then(|| read.iter().flatten().cloned().collect())
}

/// Why a record's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimParseError {
    /// The first line is not the record's header.
    #[error("not a claim record (no `{HEADER}` line first)")]
    NoHeader,
    /// A line is not `claim <sysid> <timeline> <node>...`.
    #[error("line {0}: not `claim <system identifier> <timeline> <node>...`")]
    BadLine(usize),
    /// The same cluster appears twice.
    #[error("line {0}: system identifier {1} appears twice")]
    Duplicate(usize, u64),
}

/// The longest node name, in bytes: Postgres keeps 63 bytes of an
/// `application_name` (NAMEDATALEN − 1), which is how a primary lists its
/// standbys, and repmgr's `node_name` has the same bound.
pub const MAX_NODE_NAME_BYTES: usize = 63;

/// Why a text cannot be a node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NodeNameError {
    /// Nothing.
    #[error("it is empty")]
    Empty,
    /// Longer than [`MAX_NODE_NAME_BYTES`].
    #[error("it is longer than {MAX_NODE_NAME_BYTES} bytes")]
    TooLong,
    /// White space would split it in two in the claim record.
    #[error("it contains white space")]
    WhiteSpace,
    /// A control character (a newline, an escape) has no place in a name.
    #[error("it contains a control character")]
    Control,
}

/// Checks that `name` can be a node name: one word of at most
/// [`MAX_NODE_NAME_BYTES`] bytes, with no white space and no control
/// character. Every name the config accepts, and every name a claim record
/// holds, passes this, so the record's text form (names joined by spaces)
/// always reads back the same names.
pub fn check_node_name(name: &str) -> Result<(), NodeNameError> {
    if name.is_empty() {
        Err(NodeNameError::Empty)
    } else if name.len() > MAX_NODE_NAME_BYTES {
        Err(NodeNameError::TooLong)
    } else if name.chars().any(char::is_whitespace) {
        Err(NodeNameError::WhiteSpace)
    } else if name.chars().any(char::is_control) {
        Err(NodeNameError::Control)
    } else {
        Ok(())
    }
}

/// At most 64 characters of a name that came from elsewhere, for a log
/// line (print it with `{:?}`, which escapes control characters).
pub fn clip_name(name: &str) -> String {
    name.chars().take(64).collect()
}

/// The first line of the file, which also says what it is.
pub const HEADER: &str = "# pgsql-state claim record v1";

impl ClaimRecord {
    /// The highest claim for `system_identifier`, if any was seen.
    pub fn highest(&self, system_identifier: u64) -> Option<&Highest> {
        self.clusters.get(&system_identifier)
    }

    /// Raises the record with `claim`; returns whether it changed. A lower
    /// timeline changes nothing; the same timeline from another node adds
    /// it (a tie); a higher one replaces the cluster's entry. A claim whose
    /// node name fails [`check_node_name`] changes nothing either: it could
    /// not be read back (the caller says so).
    pub fn raise(&mut self, claim: &Claim) -> bool {
        if check_node_name(&claim.node).is_err() {
            return false;
        }
        match self.clusters.get_mut(&claim.system_identifier) {
            None => {
                self.clusters.insert(
                    claim.system_identifier,
                    Highest {
                        timeline: claim.timeline,
                        nodes: BTreeSet::from([claim.node.clone()]),
                    },
                );
                true
            }
            Some(h) if claim.timeline > h.timeline => {
                *h = Highest {
                    timeline: claim.timeline,
                    nodes: BTreeSet::from([claim.node.clone()]),
                };
                true
            }
            Some(h) if claim.timeline == h.timeline => h.nodes.insert(claim.node.clone()),
            Some(_) => false,
        }
    }

    /// Every claim the record holds for `system_identifier` (one per node
    /// of its highest timeline).
    pub fn claims(&self, system_identifier: u64) -> Vec<Claim> {
        self.highest(system_identifier)
            .map(|h| {
                h.nodes
                    .iter()
                    .map(|node| Claim {
                        system_identifier,
                        timeline: h.timeline,
                        node: node.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = format!("{HEADER}\n");
        if self.catching_up {
            out.push_str(CATCHING_UP);
            out.push('\n');
        }
        for (sysid, h) in &self.clusters {
            let nodes: Vec<&str> = h.nodes.iter().map(String::as_str).collect();
            out.push_str(&format!(
                "claim {sysid} {} {}\n",
                h.timeline,
                nodes.join(" ")
            ));
        }
        out
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<ClaimRecord, ClaimParseError> {
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, first)) if first.trim() == HEADER => {}
            _ => return Err(ClaimParseError::NoHeader),
        }
        let mut record = ClaimRecord::default();
        for (index, line) in lines {
            let number = index + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == CATCHING_UP {
                record.catching_up = true;
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some("claim"), Some(sysid), Some(timeline)) =
                (words.next(), words.next(), words.next())
            else {
                return Err(ClaimParseError::BadLine(number));
            };
            let (Ok(sysid), Ok(timeline)) = (sysid.parse::<u64>(), timeline.parse::<u32>()) else {
                return Err(ClaimParseError::BadLine(number));
            };
            let nodes: BTreeSet<String> = words.map(str::to_string).collect();
            if nodes.is_empty() {
                return Err(ClaimParseError::BadLine(number));
            }
            if record
                .clusters
                .insert(sysid, Highest { timeline, nodes })
                .is_some()
            {
                return Err(ClaimParseError::Duplicate(number, sysid));
            }
        }
        Ok(record)
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on timeline {}", self.node, self.timeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(timeline: u32, node: &str) -> Claim {
        Claim {
            system_identifier: 7,
            timeline,
            node: node.into(),
        }
    }

    #[test]
    fn a_record_only_goes_up_and_remembers_ties() {
        let mut r = ClaimRecord::default();
        // (claim, changed, highest timeline, nodes)
        let steps: &[(Claim, bool, u32, &[&str])] = &[
            (claim(1, "a"), true, 1, &["a"]),
            (claim(1, "a"), false, 1, &["a"]),
            (claim(2, "b"), true, 2, &["b"]),
            (claim(1, "a"), false, 2, &["b"]),
            (claim(2, "a"), true, 2, &["a", "b"]),
            (claim(3, "a"), true, 3, &["a"]),
        ];
        for (c, changed, timeline, nodes) in steps {
            assert_eq!(r.raise(c), *changed, "{c}");
            let h = r.highest(7).expect("a record");
            assert_eq!(h.timeline, *timeline, "{c}");
            let got: Vec<&str> = h.nodes.iter().map(String::as_str).collect();
            assert_eq!(got, *nodes, "{c}");
        }
        assert!(r.highest(8).is_none(), "another cluster has its own entry");
    }

    #[test]
    fn node_names_are_one_word_without_control_characters() {
        let long = "n".repeat(MAX_NODE_NAME_BYTES + 1);
        let cases: &[(&str, Result<(), NodeNameError>)] = &[
            ("node_1", Ok(())),
            ("pg-01.example.com", Ok(())),
            ("nœud#1'\"", Ok(())),
            (&long[1..], Ok(())),
            ("", Err(NodeNameError::Empty)),
            (&long, Err(NodeNameError::TooLong)),
            ("node a", Err(NodeNameError::WhiteSpace)),
            ("node\ta", Err(NodeNameError::WhiteSpace)),
            ("node\u{a0}a", Err(NodeNameError::WhiteSpace)),
            ("node\n", Err(NodeNameError::WhiteSpace)),
            ("node\u{1b}[2J", Err(NodeNameError::Control)),
        ];
        for (name, want) in cases {
            assert_eq!(check_node_name(name), *want, "{name:?}");
        }
        // A name that is not one is never recorded: it would read back as
        // two names, a permanent tie.
        let mut r = ClaimRecord::default();
        assert!(!r.raise(&claim(1, "db 1")));
        assert!(!r.raise(&claim(1, "")));
        assert_eq!(r, ClaimRecord::default());
    }

    proptest::proptest! {
        /// Every name the config accepts reads back from the record's text
        /// as itself, alone or beside others on one timeline.
        #[test]
        fn every_accepted_name_round_trips(
            names in proptest::collection::vec(
                proptest::prop_oneof!["[^\\s\\p{Cc}]{1,40}", ".{1,70}"],
                1..4,
            ),
            timeline in 1u32..,
            sysid: u64,
        ) {
            let accepted: Vec<&String> =
                names.iter().filter(|n| check_node_name(n).is_ok()).collect();
            proptest::prop_assume!(!accepted.is_empty());
            let mut r = ClaimRecord::default();
            for node in &accepted {
                r.raise(&Claim { system_identifier: sysid, timeline, node: node.to_string() });
            }
            let back = ClaimRecord::parse(&r.render());
            proptest::prop_assert_eq!(back.as_ref(), Ok(&r));
            let h = r.highest(sysid).expect("raised");
            let want: BTreeSet<String> = accepted.iter().map(|n| n.to_string()).collect();
            proptest::prop_assert_eq!(&h.nodes, &want);
        }
    }

    #[test]
    fn a_record_catching_up_votes_after_reading_more_than_half_of_the_others() {
        let a1 = vec![claim(1, "node_a")];
        let b2 = vec![claim(2, "node_b")];
        let none: Vec<Claim> = vec![];
        // (other voters, records read, rises to)
        type Case = (usize, Vec<Vec<Claim>>, Option<Vec<Claim>>);
        let cases: Vec<Case> = vec![
            // Three voters: both others; one is not enough (it may be the
            // zombie, and the successor's holders are the other and us).
            (2, vec![a1.clone()], None),
            (
                2,
                vec![a1.clone(), b2.clone()],
                Some(vec![claim(1, "node_a"), claim(2, "node_b")]),
            ),
            // Four voters: two of the three others.
            (3, vec![a1.clone()], None),
            (
                3,
                vec![none.clone(), b2.clone()],
                Some(vec![claim(2, "node_b")]),
            ),
            // Five voters: three of the four others.
            (4, vec![a1.clone(), b2.clone()], None),
            (
                4,
                vec![a1.clone(), none.clone(), b2.clone()],
                Some(vec![claim(1, "node_a"), claim(2, "node_b")]),
            ),
            // An empty record read still counts as read.
            (2, vec![none.clone(), none.clone()], Some(vec![])),
            // A lone voter has nobody to read: it votes at once.
            (0, vec![], Some(vec![])),
        ];
        for (others, read, want) in cases {
            assert_eq!(caught_up(others, &read), want, "{others} {read:?}");
        }
    }

    #[test]
    fn text_round_trips_and_garbage_is_an_error() {
        let mut r = ClaimRecord::default();
        r.raise(&claim(4, "node_2"));
        r.raise(&claim(4, "node_1"));
        r.raise(&Claim {
            system_identifier: u64::MAX,
            timeline: 1,
            node: "x".into(),
        });
        assert_eq!(ClaimRecord::parse(&r.render()), Ok(r.clone()));
        let catching = ClaimRecord {
            catching_up: true,
            ..r.clone()
        };
        assert_eq!(ClaimRecord::parse(&catching.render()), Ok(catching));
        assert_eq!(
            ClaimRecord::parse(&format!("{HEADER}\n")),
            Ok(ClaimRecord::default())
        );
        let cases = [
            ("", ClaimParseError::NoHeader),
            ("claim 7 1 a\n", ClaimParseError::NoHeader),
            (
                &*format!("{HEADER}\nclaim 7 one a\n"),
                ClaimParseError::BadLine(2),
            ),
            (
                &*format!("{HEADER}\nclaim 7 1\n"),
                ClaimParseError::BadLine(2),
            ),
            (
                &*format!("{HEADER}\nclaim 7 1 a\nclaim 7 2 b\n"),
                ClaimParseError::Duplicate(3, 7),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(ClaimRecord::parse(text), Err(want), "{text:?}");
        }
    }
}
