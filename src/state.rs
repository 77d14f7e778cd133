//! The small files in `runtimeDir` that steer the responder: the
//! reconciler's verdict and the operator's maintenance flag.
//!
//! The verdict is `key=value` lines, so `cat /run/pgsql-state/verdict`
//! explains itself. It is written atomically ([`write_atomic`]) and read in
//! microseconds. Freshness is judged on the monotonic clock of one boot.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::word::{Identity, Now};

/// The verdict file's name inside `runtimeDir`.
pub const VERDICT_FILE: &str = "verdict";
/// The maintenance flag's name inside `runtimeDir`.
pub const MAINTENANCE_FILE: &str = "maintenance";

/// What the reconciler decided for this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    Production,
    Standby,
    Lagging,
    Fenced,
}

impl VerdictKind {
    fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Production => "production",
            VerdictKind::Standby => "standby",
            VerdictKind::Lagging => "lagging",
            VerdictKind::Fenced => "fenced",
        }
    }

    fn parse(text: &str) -> Option<VerdictKind> {
        [
            VerdictKind::Production,
            VerdictKind::Standby,
            VerdictKind::Lagging,
            VerdictKind::Fenced,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One verdict, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// Why, in words for the operator.
    pub reason: String,
    /// When it was written, on the monotonic clock of that boot.
    pub written: Now,
    /// How long it stays fresh, in milliseconds (the lease in `strict`).
    pub valid_ms: u64,
    /// The postmaster it was decided for, which a `strict` lease is bound to.
    pub identity: Option<Identity>,
}

impl Verdict {
    /// Fresh: written on this boot, not in the future, and within `valid_ms`.
    pub fn is_fresh(&self, now: &Now) -> bool {
        !now.boot_id.is_empty()
            && self.written.boot_id == now.boot_id
            && now.monotonic_ms >= self.written.monotonic_ms
            && now.monotonic_ms - self.written.monotonic_ms < self.valid_ms
    }

    /// The file's text.
    pub fn render(&self) -> String {
        let mut out = String::from("# pgsql-state verdict, written by `pgsql-state reconcile`\n");
        out.push_str(&format!("verdict={}\n", self.kind.as_str()));
        out.push_str(&format!("reason={}\n", self.reason.replace('\n', " ")));
        out.push_str(&format!("boot_id={}\n", self.written.boot_id));
        out.push_str(&format!("monotonic_ms={}\n", self.written.monotonic_ms));
        out.push_str(&format!("valid_ms={}\n", self.valid_ms));
        if let Some(id) = &self.identity {
            out.push_str(&format!("system_identifier={}\n", id.system_identifier));
            out.push_str(&format!("timeline={}\n", id.timeline));
            out.push_str(&format!("postmaster_start_us={}\n", id.postmaster_start_us));
        }
        out
    }

    /// Parses the file's text. Unknown keys are ignored, so newer writers
    /// can add facts; missing or malformed required keys are errors.
    pub fn parse(text: &str) -> Result<Verdict, String> {
        let mut get = Fields::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: not key=value", n + 1))?;
            get.set(key.trim(), value.trim());
        }
        let kind = get.verdict.as_deref().ok_or("no verdict= line")?;
        let kind = VerdictKind::parse(kind).ok_or_else(|| format!("unknown verdict {kind:?}"))?;
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
            _ => {
                return Err(
                    "system_identifier, timeline and postmaster_start_us go together".into(),
                )
            }
        };
        Ok(Verdict {
            kind,
            reason: get.reason.unwrap_or_default(),
            written: Now {
                boot_id: get.boot_id.ok_or("no boot_id= line")?,
                monotonic_ms: number(
                    get.monotonic_ms.as_deref().ok_or("no monotonic_ms= line")?,
                    "monotonic_ms",
                )?,
            },
            valid_ms: number(
                get.valid_ms.as_deref().ok_or("no valid_ms= line")?,
                "valid_ms",
            )?,
            identity,
        })
    }
}

#[derive(Default)]
struct Fields {
    verdict: Option<String>,
    reason: Option<String>,
    boot_id: Option<String>,
    monotonic_ms: Option<String>,
    valid_ms: Option<String>,
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
            "monotonic_ms" => &mut self.monotonic_ms,
            "valid_ms" => &mut self.valid_ms,
            "system_identifier" => &mut self.system_identifier,
            "timeline" => &mut self.timeline,
            "postmaster_start_us" => &mut self.postmaster_start_us,
            _ => return,
        };
        *slot = Some(value.to_string());
    }
}

fn number<T: std::str::FromStr>(text: &str, key: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{key}={text:?} is not a number"))
}

/// The verdict as the responder found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictRead {
    /// No verdict file: the reconciler has not run (or is not used).
    Missing,
    /// A file that cannot be read or parsed; the responder fails closed.
    Unreadable(String),
    Present(Verdict),
}

/// The verdict file's path in `runtime_dir`.
pub fn verdict_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(VERDICT_FILE)
}

/// Reads the verdict in `runtime_dir`.
pub fn read_verdict(runtime_dir: &Path) -> VerdictRead {
    let path = verdict_path(runtime_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => match Verdict::parse(&text) {
            Ok(verdict) => VerdictRead::Present(verdict),
            Err(why) => VerdictRead::Unreadable(format!("{}: {why}", path.display())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => VerdictRead::Missing,
        Err(e) => VerdictRead::Unreadable(format!("{}: {e}", path.display())),
    }
}

/// Whether an operator drained this node. A flag that cannot be checked
/// (other than absent) counts as set: draining is the safe side.
pub fn maintenance_on(runtime_dir: &Path) -> bool {
    let path = runtime_dir.join(MAINTENANCE_FILE);
    match std::fs::symlink_metadata(&path) {
        Ok(_) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            log::warn!(
                "cannot tell whether {} exists ({e}); draining to be safe",
                path.display()
            );
            true
        }
    }
}

/// Turns the maintenance flag on (with a note of who and when) or off.
pub fn set_maintenance(runtime_dir: &Path, on: bool, note: &str) -> io::Result<()> {
    let path = runtime_dir.join(MAINTENANCE_FILE);
    if on {
        write_atomic(&path, note.as_bytes())
    } else {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Writes `path` so that a crash leaves the old file or the new one: a temp
/// file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Now, on this boot's monotonic clock.
pub fn now() -> io::Result<Now> {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let monotonic_ms = t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000;
    Ok(Now {
        boot_id: boot_id.trim().to_string(),
        monotonic_ms,
    })
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
                monotonic_ms: 1_000,
            },
            valid_ms: 500,
            identity: Some(Identity {
                system_identifier: 7,
                timeline: 3,
                postmaster_start_us: 99,
            }),
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        for kind in [
            VerdictKind::Production,
            VerdictKind::Standby,
            VerdictKind::Lagging,
            VerdictKind::Fenced,
        ] {
            let v = verdict(kind);
            assert_eq!(Verdict::parse(&v.render()), Ok(v));
        }
        let mut v = verdict(VerdictKind::Fenced);
        v.identity = None;
        assert_eq!(Verdict::parse(&v.render()), Ok(v));
    }

    #[test]
    fn malformed_verdicts_are_errors() {
        let good = verdict(VerdictKind::Fenced).render();
        let cases = [
            ("", "no verdict= line"),
            ("verdict=maybe\n", "unknown verdict \"maybe\""),
            ("garbage\n", "line 1: not key=value"),
            (
                &good.replace("valid_ms=500", "valid_ms=soon"),
                "valid_ms=\"soon\" is not a number",
            ),
            (
                &good.replace("timeline=3\n", ""),
                "system_identifier, timeline and postmaster_start_us go together",
            ),
            (&good.replace("boot_id=b1\n", ""), "no boot_id= line"),
        ];
        for (text, want) in cases {
            assert_eq!(Verdict::parse(text), Err(want.to_string()), "{text:?}");
        }
    }

    #[test]
    fn freshness() {
        let v = verdict(VerdictKind::Fenced);
        let at = |boot: &str, ms| Now {
            boot_id: boot.into(),
            monotonic_ms: ms,
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
        no_boot.written.monotonic_ms = 0;
        assert!(
            !no_boot.is_fresh(&Now::unknown()),
            "an unknown clock makes nothing fresh"
        );
        for (now, want) in cases {
            assert_eq!(v.is_fresh(&now), want, "{now:?}");
        }
    }
}
