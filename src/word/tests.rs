//! Table tests for `choose_word`, and the substring rule for every text.

use super::*;
use crate::fencing::clock::Now;
use crate::fencing::verdict::{Identity, Verdict, VerdictKind, VerdictRead};

const BOOT: &str = "boot-a";

fn now(ms: u64) -> Now {
    Now {
        boot_id: BOOT.into(),
        boottime_ms: ms,
    }
}

fn identity(timeline: u32) -> Identity {
    Identity {
        system_identifier: 42,
        timeline,
        postmaster_start_us: 1_000,
    }
}

fn primary() -> RoleFacts {
    RoleFacts {
        in_recovery: false,
        identity: Some(identity(3)),
        ..RoleFacts::default()
    }
}

fn standby(streaming: bool, lag: u64) -> RoleFacts {
    RoleFacts {
        in_recovery: true,
        streaming: Some(streaming),
        lag_bytes: Some(lag),
        receiver_visible: Some(true),
        identity: None,
    }
}

/// A verdict written at 10_000 ms, valid for 5_000 ms, bound to timeline 3.
fn verdict(kind: VerdictKind) -> VerdictRead {
    VerdictRead::Present(Verdict {
        kind,
        reason: "test".into(),
        written: now(10_000),
        valid_ms: 5_000,
        wait_until_ms: None,
        identity: Some(identity(3)),
        wait_for: None,
        tie: false,
    })
}

/// A confirming verdict whose wait ends at `until` ms.
fn waiting(until: u64) -> VerdictRead {
    match verdict(VerdictKind::Production) {
        VerdictRead::Present(v) => VerdictRead::Present(Verdict {
            wait_until_ms: Some(until),
            ..v
        }),
        other => other,
    }
}

struct Case {
    name: &'static str,
    maintenance: bool,
    probe: Result<RoleFacts, DownReason>,
    verdict: VerdictRead,
    fencing: Fencing,
    max_lag: Option<u64>,
    at_ms: u64,
    want: Word,
}

fn case(
    name: &'static str,
    probe: Result<RoleFacts, DownReason>,
    verdict: VerdictRead,
    fencing: Fencing,
    want: Word,
) -> Case {
    Case {
        name,
        maintenance: false,
        probe,
        verdict,
        fencing,
        max_lag: None,
        at_ms: 11_000,
        want,
    }
}

#[test]
fn choose_word_table() {
    use Fencing::{Off, Strict, Verdict as ByVerdict};
    use VerdictKind as K;
    use Word::*;
    let unreadable = || VerdictRead::Unreadable("bad".into());
    let mut cases = vec![
        // Plain roles, no verdict.
        case(
            "primary, no verdict",
            Ok(primary()),
            VerdictRead::Missing,
            ByVerdict,
            Production,
        ),
        case(
            "standby, no bound",
            Ok(standby(false, 1 << 40)),
            VerdictRead::Missing,
            ByVerdict,
            Standby,
        ),
        case(
            "down wins over verdict",
            Err(DownReason::Timeout),
            verdict(K::Production),
            Strict,
            Down(DownReason::Timeout),
        ),
        // fencing: off ignores everything.
        case(
            "off ignores a fence",
            Ok(primary()),
            verdict(K::Fenced),
            Off,
            Production,
        ),
        case(
            "off ignores unreadable",
            Ok(primary()),
            unreadable(),
            Off,
            Production,
        ),
        case(
            "off ignores lagging verdict",
            Ok(standby(true, 0)),
            verdict(K::Lagging),
            Off,
            Standby,
        ),
        // fencing: verdict.
        case(
            "fresh fence",
            Ok(primary()),
            verdict(K::Fenced),
            ByVerdict,
            Fenced,
        ),
        Case {
            at_ms: 99_000,
            ..case(
                "stale fence still holds",
                Ok(primary()),
                verdict(K::Fenced),
                ByVerdict,
                Fenced,
            )
        },
        case(
            "unreadable verdict fails closed",
            Ok(primary()),
            unreadable(),
            ByVerdict,
            Fenced,
        ),
        case(
            "production verdict",
            Ok(primary()),
            verdict(K::Production),
            ByVerdict,
            Production,
        ),
        Case {
            at_ms: 99_000,
            ..case(
                "stale production verdict is fine",
                Ok(primary()),
                verdict(K::Production),
                ByVerdict,
                Production,
            )
        },
        case(
            "standby verdict on a promoted node",
            Ok(primary()),
            verdict(K::Standby),
            ByVerdict,
            Production,
        ),
        case(
            "fresh lagging verdict",
            Ok(standby(true, 0)),
            verdict(K::Lagging),
            ByVerdict,
            Lagging,
        ),
        Case {
            at_ms: 99_000,
            ..case(
                "stale lagging verdict",
                Ok(standby(true, 0)),
                verdict(K::Lagging),
                ByVerdict,
                Standby,
            )
        },
        case(
            "fence verdict on a standby",
            Ok(standby(true, 0)),
            verdict(K::Fenced),
            ByVerdict,
            Standby,
        ),
        case(
            "unreadable verdict on a standby",
            Ok(standby(true, 0)),
            unreadable(),
            ByVerdict,
            Standby,
        ),
        // fencing: strict (a lease).
        case(
            "strict, no verdict",
            Ok(primary()),
            VerdictRead::Missing,
            Strict,
            Fenced,
        ),
        case(
            "strict, confirming lease",
            Ok(primary()),
            verdict(K::Production),
            Strict,
            Production,
        ),
        case(
            "strict, confirming lease but the new primary's wait is not over",
            Ok(primary()),
            waiting(11_001),
            Strict,
            Fenced,
        ),
        case(
            "strict, confirming lease and the wait just over",
            Ok(primary()),
            waiting(11_000),
            Strict,
            Production,
        ),
        Case {
            at_ms: 15_000,
            ..case(
                "strict, lease expired",
                Ok(primary()),
                verdict(K::Production),
                Strict,
                Fenced,
            )
        },
        Case {
            at_ms: 9_000,
            ..case(
                "strict, lease from the future",
                Ok(primary()),
                verdict(K::Production),
                Strict,
                Fenced,
            )
        },
        case(
            "strict, other timeline",
            Ok(RoleFacts {
                identity: Some(identity(4)),
                ..primary()
            }),
            verdict(K::Production),
            Strict,
            Fenced,
        ),
        case(
            "strict, other postmaster",
            Ok(RoleFacts {
                identity: Some(Identity {
                    postmaster_start_us: 2_000,
                    ..identity(3)
                }),
                ..primary()
            }),
            verdict(K::Production),
            Strict,
            Fenced,
        ),
        case(
            "strict, identity not asked",
            Ok(RoleFacts {
                identity: None,
                ..primary()
            }),
            verdict(K::Production),
            Strict,
            Fenced,
        ),
        case(
            "strict, fenced verdict",
            Ok(primary()),
            verdict(K::Fenced),
            Strict,
            Fenced,
        ),
        case(
            "strict, unreadable",
            Ok(primary()),
            unreadable(),
            Strict,
            Fenced,
        ),
        case(
            "strict, standby needs no lease",
            Ok(standby(true, 0)),
            VerdictRead::Missing,
            Strict,
            Standby,
        ),
        // maxLagBytes.
        Case {
            max_lag: Some(100),
            ..case(
                "within bound",
                Ok(standby(true, 100)),
                VerdictRead::Missing,
                ByVerdict,
                Standby,
            )
        },
        Case {
            max_lag: Some(100),
            ..case(
                "over bound",
                Ok(standby(true, 101)),
                VerdictRead::Missing,
                ByVerdict,
                Lagging,
            )
        },
        Case {
            max_lag: Some(100),
            ..case(
                "not streaming",
                Ok(standby(false, 0)),
                VerdictRead::Missing,
                ByVerdict,
                Lagging,
            )
        },
        Case {
            max_lag: Some(100),
            ..case(
                "streaming unknown",
                Ok(RoleFacts {
                    in_recovery: true,
                    ..RoleFacts::default()
                }),
                VerdictRead::Missing,
                ByVerdict,
                Lagging,
            )
        },
        Case {
            max_lag: Some(100),
            ..case(
                "bound ignores primaries",
                Ok(primary()),
                VerdictRead::Missing,
                ByVerdict,
                Production,
            )
        },
    ];
    // Maintenance wins over every other input.
    for (name, probe) in [
        ("maintenance on a primary", Ok(primary())),
        ("maintenance when down", Err(DownReason::ConnectionRefused)),
    ] {
        cases.push(Case {
            maintenance: true,
            ..case(name, probe, verdict(K::Fenced), Strict, Maintenance)
        });
    }
    for c in &cases {
        let now = Now {
            boot_id: BOOT.into(),
            boottime_ms: c.at_ms,
        };
        let got = choose_word(&Inputs {
            maintenance: c.maintenance,
            probe: c.probe.clone(),
            verdict: &c.verdict,
            fencing: c.fencing,
            max_lag_bytes: c.max_lag,
            now: &now,
        });
        assert_eq!(got, c.want, "{}", c.name);
    }
    // A verdict from another boot is never fresh.
    let other_boot = Now {
        boot_id: "boot-b".into(),
        boottime_ms: 11_000,
    };
    let got = choose_word(&Inputs {
        maintenance: false,
        probe: Ok(primary()),
        verdict: &verdict(K::Production),
        fencing: Strict,
        max_lag_bytes: None,
        now: &other_boot,
    });
    assert_eq!(got, Fenced);
}

#[test]
fn no_word_contains_another_and_no_reason_names_a_pool() {
    let mut texts: Vec<String> = [
        Word::Production,
        Word::Standby,
        Word::Lagging,
        Word::Fenced,
        Word::Maintenance,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    texts.extend(DownReason::ALL.iter().map(|r| Word::Down(*r).to_string()));
    for (i, a) in texts.iter().enumerate() {
        for (j, b) in texts.iter().enumerate() {
            if i != j {
                assert!(!a.contains(b.as_str()), "{a:?} contains {b:?}");
            }
        }
        if a.starts_with("down: ") {
            assert!(!a.contains("production") && !a.contains("standby"), "{a:?}");
        }
    }
}

#[test]
fn only_a_postmaster_that_is_not_running_counts_as_stopped() {
    for reason in DownReason::ALL {
        let stopped = matches!(
            reason,
            DownReason::ConnectionRefused | DownReason::NoServerSocket
        );
        assert_eq!(reason.means_stopped(), stopped, "{reason}");
    }
    // A hung postmaster may resume on its lease; one shutting down may
    // still run sessions.
    assert!(!DownReason::Timeout.means_stopped());
    assert!(!DownReason::ShuttingDown.means_stopped());
}
