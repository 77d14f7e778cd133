//! The Debian package, built as the README says (`scripts/build-deb.sh`,
//! cargo-deb), installed with `dpkg --root` into a throwaway root, and
//! checked there: the files in place, the config a conffile, no maintainer
//! script (it starts and enables nothing), the units verified by
//! `systemd-analyze`, every man page rendered by `man -l`, the binary
//! running, and `lintian` finding no error.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn command(program: &str) -> Command {
    Command::new(require_tool(program))
}

/// `dpkg --root=ROOT ACTION WHAT`. The maintainer scripts run on this
/// machine with DPKG_ROOT set (a throwaway root has no /bin/sh to chroot
/// into).
fn dpkg_in(root: &Path, action: &str, what: &std::ffi::OsStr) {
    ok(
        &command("dpkg")
            .arg(format!("--root={}", root.display()))
            .args([
                "--force-depends",
                "--force-not-root",
                "--force-script-chrootless",
                action,
            ])
            .arg(what)
            .output()
            .unwrap_or_else(|e| panic!("dpkg {action}: {e}")),
        &format!("dpkg --root {action}"),
    );
}

/// The `postgres` user's uid in the throwaway root (its /etc/passwd).
const POSTGRES_UID: u32 = 4242;

/// A fresh root with an empty dpkg database, and a `postgres` user in its
/// /etc/passwd (systemd-tmpfiles --root resolves owners there).
fn throwaway_root() -> PathBuf {
    let root = runtime_dir("deb-root");
    std::fs::create_dir_all(root.join("etc")).expect("create etc");
    std::fs::write(
        root.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/bin/sh\npostgres:x:{POSTGRES_UID}:{POSTGRES_UID}::/var/lib/postgresql:/bin/sh\n"),
    )
    .expect("write passwd");
    std::fs::write(
        root.join("etc/group"),
        format!("root:x:0:\npostgres:x:{POSTGRES_UID}:\n"),
    )
    .expect("write group");
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("create the dpkg database");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("an empty status file");
    root
}

#[test]
fn the_package_installs_into_a_throwaway_root_and_checks_there() {
    let deb = debian_package(&runtime_dir("deb"));

    // What the package is made of: control files, a postinst that makes
    // the tmpfiles directories and a postrm that removes the runtime one
    // on purge; nothing that enables or starts a unit.
    let info = ok(
        &command("dpkg-deb")
            .arg("--info")
            .arg(&deb)
            .output()
            .expect("dpkg-deb"),
        "dpkg-deb --info",
    );
    assert!(
        !info.contains("preinst"),
        "the package has a preinst\n{info}"
    );
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "the package has no {script}\n{info}");
    }
    // The control archive, uncompressed: the scripts' text.
    let control = ok(
        &command("dpkg-deb")
            .arg("--ctrl-tarfile")
            .arg(&deb)
            .output()
            .expect("dpkg-deb --ctrl-tarfile"),
        "dpkg-deb --ctrl-tarfile",
    );
    assert!(
        control.contains("systemd-tmpfiles"),
        "the postinst makes no directories"
    );
    assert!(
        !control.contains("deb-systemd-helper"),
        "a maintainer script enables a unit: installing must start nothing"
    );
    // deb-systemd-invoke only as dh_installsystemd uses it: `stop` when
    // the package is removed (prerm) and `try-restart` of what already
    // runs at an upgrade (postinst); never `start` or `restart`.
    let mut invoked: Vec<&str> = control
        .lines()
        .filter_map(|l| l.split("deb-systemd-invoke ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or(""))
        .collect();
    invoked.sort_unstable();
    assert_eq!(invoked, ["stop", "try-restart"], "{control}");
    // systemctl only to make systemd forget removed units (the postrm's
    // daemon-reload, as dh_installsystemd writes it): never enable or start.
    for line in control.lines().filter(|l| l.contains("systemctl ")) {
        assert!(
            line.trim_start()
                .starts_with("systemctl --system daemon-reload"),
            "a maintainer script runs `{}`: installing must start nothing",
            line.trim()
        );
    }
    let package = ok(
        &command("dpkg-deb")
            .args(["--field"])
            .arg(&deb)
            .arg("Package")
            .output()
            .expect("dpkg-deb"),
        "dpkg-deb --field",
    );
    assert_eq!(package.trim(), "pgsql-state");

    let root = throwaway_root();
    dpkg_in(&root, "--install", deb.as_os_str());
    let status = ok(
        &command("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--status", "pgsql-state"])
            .output()
            .expect("dpkg --status"),
        "dpkg --status",
    );
    assert!(status.contains("Status: install ok installed"), "{status}");
    assert!(
        status.contains("/etc/pgsql-state/pgsql-state.yml"),
        "the config is not a conffile:\n{status}"
    );
    // The postinst made the tmpfiles directories, owned by postgres (as
    // the root's own /etc/passwd names it), so the reconciler's unit can
    // start before the next boot.
    for (dir, mode) in [("run/pgsql-state", 0o755), ("var/lib/pgsql-state", 0o750)] {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(root.join(dir))
            .unwrap_or_else(|e| panic!("the postinst did not make /{dir}: {e}"));
        assert!(meta.is_dir(), "/{dir}");
        assert_eq!(meta.mode() & 0o7777, mode, "/{dir}'s mode");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(meta.uid(), POSTGRES_UID, "/{dir}'s owner");
        }
    }

    let units = [
        "pgsql-state.socket",
        "pgsql-state@.service",
        "pgsql-state-responder.socket",
        "pgsql-state-responder.service",
        "pgsql-state-peer.socket",
        "pgsql-state-peer.service",
        "pgsql-state-reconcile.service",
        "pgsql-state-reconcile.timer",
        "pgsql-state-reconcile.path",
    ];
    let subcommands = [
        "respond",
        "check-config",
        "maintenance",
        "peer",
        "status",
        "reconcile",
        "promote-check",
        "claims",
        "haproxy-state",
        "systemd-generator",
        "doctor",
    ];
    let mut files: Vec<String> = vec![
        "usr/bin/pgsql-state".into(),
        "usr/lib/tmpfiles.d/pgsql-state.conf".into(),
        "usr/lib/systemd/system-generators/pgsql-state".into(),
        "etc/pgsql-state/pgsql-state.yml".into(),
        "usr/share/doc/pgsql-state/copyright".into(),
        "usr/share/doc/pgsql-state/changelog.Debian.gz".into(),
        "usr/share/doc/pgsql-state/examples/haproxy.cfg".into(),
        "usr/share/doc/pgsql-state/examples/haproxy-httpchk.cfg".into(),
        "usr/share/doc/pgsql-state/examples/haproxy-pgsql-check.cfg".into(),
        "usr/share/doc/pgsql-state/examples/haproxy-patroni.cfg".into(),
        "usr/share/doc/pgsql-state/examples/haproxy-agent.cfg".into(),
        "usr/share/doc/pgsql-state/examples/haproxy.service.d/pgsql-state.conf".into(),
        "usr/share/doc/pgsql-state/examples/pgsql-state.socket.d/allow-haproxy.conf".into(),
        "usr/share/doc/pgsql-state/examples/repmgr.conf.example".into(),
        "usr/share/doc/pgsql-state/examples/prometheus/pgsql-state.rules.yml".into(),
        "usr/share/doc/pgsql-state/examples/prometheus/pgsql-state.rules.test.yml".into(),
        "usr/share/doc/pgsql-state/examples/grafana/pgsql-state.dashboard.json".into(),
        "usr/share/man/man1/pgsql-state.1.gz".into(),
        "usr/share/bash-completion/completions/pgsql-state".into(),
        "usr/share/zsh/vendor-completions/_pgsql-state".into(),
        "usr/share/fish/vendor_completions.d/pgsql-state.fish".into(),
    ];
    files.extend(units.iter().map(|u| format!("lib/systemd/system/{u}")));
    files.extend(
        subcommands
            .iter()
            .map(|s| format!("usr/share/man/man1/pgsql-state-{s}.1.gz")),
    );
    for f in &files {
        assert!(root.join(f).is_file(), "{f} is not installed");
    }
    // The conffile is the shipped example, and it checks.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/pgsql-state/pgsql-state.yml")).expect("read"),
        std::fs::read_to_string(repo().join("conf/pgsql-state.yml")).expect("read")
    );

    // The installed binary runs, and says its version.
    let bin = root.join("usr/bin/pgsql-state");
    let version = ok(
        &Command::new(&bin)
            .arg("--version")
            .output()
            .expect("run it"),
        "pgsql-state --version",
    );
    assert_eq!(
        version.trim(),
        format!("pgsql-state {}", env!("CARGO_PKG_VERSION"))
    );
    let checked = Command::new(&bin)
        .arg("-f")
        .arg(root.join("etc/pgsql-state/pgsql-state.yml"))
        .arg("check-config")
        .output()
        .expect("run check-config");
    ok(&checked, "check-config on the installed conffile");

    // The installed units verify, with the installed binary.
    verify_units(&root, &units);

    // Every man page renders.
    for page in std::iter::once("pgsql-state".to_string())
        .chain(subcommands.iter().map(|s| format!("pgsql-state-{s}")))
    {
        let path = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let out = command("man")
            .arg("-l")
            .arg(&path)
            .env("MANWIDTH", "80")
            .output()
            .expect("run man -l");
        // man overstrikes bold (`N\x08N`) when it writes to a pipe.
        let text = strip_overstrike(&ok(&out, &format!("man -l {page}")));
        assert!(
            out.stderr.is_empty(),
            "man -l {page} warns: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains(&page),
            "{page}:\n{text}"
        );
    }

    // lintian: no error (warnings are printed).
    let out = command("lintian")
        .args(["--no-tag-display-limit", "--fail-on", "error"])
        .arg(&deb)
        .output()
        .expect("run lintian");
    println!(
        "lintian:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&out, "lintian --fail-on error");

    // Purged: the runtime directory goes; the state directory and the
    // claim record in it stay (the record is a promise to the other
    // voters).
    let record = root.join("var/lib/pgsql-state/claims");
    std::fs::write(&record, "pgsql-state claims v1\n").expect("a claim record");
    dpkg_in(&root, "--purge", "pgsql-state".as_ref());
    assert!(
        !root.join("run/pgsql-state").exists(),
        "the purge left /run/pgsql-state"
    );
    assert!(record.is_file(), "the purge removed the claim record");
    assert!(
        !root.join("usr/bin/pgsql-state").exists(),
        "the purge left the binary"
    );
}

/// `systemd-analyze verify` on the units as installed under `root`: the
/// unit files are copied out with the binary's path pointed into the root,
/// since systemd-analyze looks for ExecStart= on this machine.
fn verify_units(root: &Path, units: &[&str]) {
    let dir = runtime_dir("deb-units");
    let bin = root.join("usr/bin/pgsql-state");
    for unit in units {
        let text = std::fs::read_to_string(root.join("lib/systemd/system").join(unit))
            .expect("read an installed unit");
        std::fs::write(
            dir.join(unit),
            text.replace("/usr/bin/pgsql-state", bin.to_str().expect("utf-8")),
        )
        .expect("write a unit");
    }
    let paths: Vec<PathBuf> = units.iter().map(|u| dir.join(u)).collect();
    let out = command("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify on the installed units:\n{stderr}"
    );
}

/// Text without man's overstrike (`X\x08X` for bold, `_\x08X` for
/// underline).
fn strip_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out.into_iter().collect()
}
