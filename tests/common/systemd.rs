//! A real systemd 252 as PID 1 in new namespaces, following DESIGN.md's
//! tested recipe (Tests): the launching shell in a cgroup of its own, then
//! `unshare --cgroup --fork --pid --mount --uts --net --mount-proc
//! --propagation private`, tmpfs on /run, /tmp and /var/tmp (and on
//! /var/lib and /var/log, so StateDirectory= and the journal stay inside),
//! a fresh cgroup2, /proc/sys read-only, /dev/null over /dev/console, and a
//! private unit path holding only our units, journald's and empty
//! stand-in targets. The host's units are never booted: in a shared mount
//! namespace their tmpfiles would empty the machine's real /tmp.
//!
//! Everything of a run, a copy of the binary included, lives in a
//! directory under /var/cache/pgsql-state-test (not /tmp, a tmpfs inside,
//! nor the checkout, which may be under /tmp), removed when the run stops. Commands enter the namespaces with
//! `nsenter`; Rust code enters the network namespace alone, on a thread of
//! its own ([`SystemdNs::in_netns`]). Stopping sends SIGRTMIN+14 (an
//! immediate poweroff), then removes the cgroup depth-first; at the test
//! process's exit, systemd is SIGKILLed, which ends its PID namespace.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{initdb, pg_bin, run, wait_until};
use super::tools::{binary, kill_at_exit, require_tool};

/// The stand-in targets of the private unit path (empty units).
const STAND_INS: [&str; 11] = [
    "sysinit",
    "basic",
    "sockets",
    "timers",
    "local-fs",
    "paths",
    "slices",
    "network",
    "network-online",
    "multi-user",
    "pgsql-state-test",
];

/// Where runs live: not under /tmp, /var/tmp, /var/lib or /var/log (a
/// tmpfs inside the namespaces), nor under a checkout in /tmp (a CI clone),
/// which the units' PrivateTmp= would hide.
const RUNS: &str = "/var/cache/pgsql-state-test";

/// A booted systemd in its namespaces.
pub struct SystemdNs {
    /// This run's directory (units, configs, data dirs).
    pub dir: PathBuf,
    /// The private unit path.
    pub units: PathBuf,
    /// systemd's PID, as the host sees it.
    pub pid: i32,
    cgroup: PathBuf,
    launcher: Child,
}

impl SystemdNs {
    /// Boots systemd in new namespaces, brings up `lo` and starts journald.
    pub fn boot(tag: &str) -> SystemdNs {
        SystemdNs::boot_with(tag, Setup::Plain)
    }

    /// [`SystemdNs::boot`], with the shipped generator
    /// (`units/pgsql-state.generator`, its binary and config rewritten to
    /// this run's) as the only generator, reading `config` (written to
    /// `pgsql-state.yml` in the run's directory), and its output directory
    /// on the unit path.
    pub fn boot_with_generator(tag: &str, config: &str) -> SystemdNs {
        SystemdNs::boot_with(tag, Setup::Generator(config))
    }

    /// [`SystemdNs::boot`] for installing the Debian package inside: /usr,
    /// /etc, /var/lib and /var/cache are overlays over the host's, their
    /// writes kept in the namespace's /run (so `apt`, `dpkg` and the
    /// maintainer scripts see a real system and change nothing outside).
    /// The generator path holds only a link to the package's generator
    /// (dangling until it is installed), and the unit path stays private:
    /// [`SystemdNs::link_installed_units`] adds the package's units.
    pub fn boot_for_package(tag: &str) -> SystemdNs {
        SystemdNs::boot_with(tag, Setup::Package)
    }

    fn boot_with(tag: &str, setup: Setup) -> SystemdNs {
        // SAFETY: geteuid has no preconditions.
        assert!(
            unsafe { libc::geteuid() } == 0,
            "the real-systemd tests need root (unshare, cgroups); run ./scripts/test.sh as root"
        );
        for tool in ["unshare", "nsenter", "ip", "systemctl", "journalctl"] {
            require_tool(tool);
        }
        assert!(
            Path::new("/lib/systemd/systemd").exists(),
            "/lib/systemd/systemd is missing: apt-get install systemd"
        );
        sweep_dead_cgroups();
        let name = format!("pgsql-state-test-{}-{tag}", std::process::id());
        let dir = Path::new(RUNS).join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        let units = dir.join("units");
        std::fs::create_dir_all(&units).expect("create the unit dir");
        for d in [Path::new(RUNS), &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        // The binary under test, where a sandboxed unit sees it (the
        // checkout may be under /tmp, which PrivateTmp= hides).
        std::fs::create_dir_all(dir.join("bin")).expect("create bin/");
        std::fs::copy(binary(), dir.join("bin/pgsql-state")).expect("copy the binary");
        for unit in [
            "systemd-journald.service",
            "systemd-journald.socket",
            "systemd-journald-dev-log.socket",
        ] {
            std::fs::copy(
                Path::new("/lib/systemd/system").join(unit),
                units.join(unit),
            )
            .unwrap_or_else(|e| panic!("copy {unit}: {e}"));
        }
        for target in STAND_INS {
            std::fs::write(
                units.join(format!("{target}.target")),
                format!("[Unit]\nDescription=stand-in {target}\n"),
            )
            .expect("write a stand-in target");
        }
        // systemd runs the host's generators unless told otherwise; their
        // output stays off the private unit path. With ours, only ours runs
        // and /run/systemd/generator (a tmpfs inside) joins the path.
        let generator_env = match setup {
            Setup::Plain => format!("SYSTEMD_UNIT_PATH={}", units.display()),
            Setup::Package => {
                let generators = dir.join("generators");
                std::fs::create_dir_all(&generators).expect("create generators/");
                std::os::unix::fs::symlink(
                    "/usr/lib/systemd/system-generators/pgsql-state",
                    generators.join("pgsql-state"),
                )
                .expect("link the package's generator");
                format!(
                    "SYSTEMD_UNIT_PATH={}:/run/systemd/generator SYSTEMD_GENERATOR_PATH={}",
                    units.display(),
                    generators.display()
                )
            }
            Setup::Generator(config) => {
                let config_path = dir.join("pgsql-state.yml");
                std::fs::write(&config_path, config).expect("write the generator's config");
                let generators = dir.join("generators");
                std::fs::create_dir_all(&generators).expect("create generators/");
                let shipped = std::fs::read_to_string(
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("units/pgsql-state.generator"),
                )
                .expect("read units/pgsql-state.generator");
                let script = shipped.replace(
                    "/usr/bin/pgsql-state -f /etc/pgsql-state/pgsql-state.yml",
                    &format!(
                        "{} -f {}",
                        dir.join("bin/pgsql-state").display(),
                        config_path.display()
                    ),
                );
                assert_ne!(script, shipped, "the generator's command line changed");
                let gen = generators.join("pgsql-state");
                std::fs::write(&gen, script).expect("write the generator");
                std::fs::set_permissions(&gen, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod the generator");
                format!(
                    "SYSTEMD_UNIT_PATH={}:/run/systemd/generator SYSTEMD_GENERATOR_PATH={}",
                    units.display(),
                    generators.display()
                )
            }
        };
        let cgroup = Path::new("/sys/fs/cgroup/unified").join(&name);
        // Where the host's directories are replaced: tmpfs, or (for the
        // package) overlays whose upper layers live in the namespace's
        // /run. /var/cache holds this run's directory, bound back on top.
        let var = match setup {
            Setup::Package => format!(
                "mkdir -p /run/.runs && mount --bind {RUNS} /run/.runs && \
                 for d in usr etc var/lib var/cache; do o=/run/.overlay/$d; \
                 mkdir -p $o/upper $o/work && mount -t overlay overlay \
                 -o lowerdir=/$d,upperdir=$o/upper,workdir=$o/work /$d || exit 1; done && \
                 mount --bind /run/.runs {RUNS} && umount /run/.runs"
            ),
            _ => "mount -t tmpfs tmpfs /var/lib".to_string(),
        };
        let inner = format!(
            "mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /tmp && \
             mount -t tmpfs tmpfs /var/tmp && {var} && \
             mount -t tmpfs tmpfs /var/log && umount -R /sys/fs/cgroup && \
             mount -t cgroup2 cgroup2 /sys/fs/cgroup && mount --bind -o ro /proc/sys /proc/sys && \
             mount --bind /dev/null /dev/console && \
             exec /lib/systemd/systemd --system --unit=pgsql-state-test.target"
        );
        let outer = format!(
            "mkdir -p {cg} && echo $$ > {cg}/cgroup.procs && exec unshare --cgroup --fork --pid \
             --mount --uts --net --mount-proc --propagation private env container=other \
             {generator_env} sh -c '{inner}'",
            cg = cgroup.display(),
        );
        let launcher = Command::new("sh")
            .args(["-c", &outer])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("boot.log")).expect("boot log"))
            .spawn()
            .expect("start unshare");
        // systemd is unshare's only child.
        let children = format!("/proc/{0}/task/{0}/children", launcher.id());
        let mut pid = 0;
        wait_until(Duration::from_secs(15), "systemd to start", || {
            pid = std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            pid != 0
                && std::fs::read_link(format!("/proc/{pid}/exe"))
                    .is_ok_and(|exe| exe.ends_with("systemd"))
        });
        kill_at_exit(pid as u32);
        let ns = SystemdNs {
            dir,
            units,
            pid,
            cgroup,
            launcher,
        };
        // Until its start-up job is done, systemd refuses new jobs.
        wait_until(
            Duration::from_secs(30),
            "systemd to finish starting",
            || {
                ns.cmd("systemctl")
                    .args(["is-system-running"])
                    .output()
                    .is_ok_and(|o| {
                        let state = String::from_utf8_lossy(&o.stdout);
                        matches!(state.trim(), "running" | "degraded")
                    })
            },
        );
        ns.ok(ns.cmd("ip").args(["link", "set", "lo", "up"]));
        ns.systemctl(&[
            "start",
            "systemd-journald.socket",
            "systemd-journald-dev-log.socket",
            "systemd-journald.service",
        ]);
        ns
    }

    /// The copy of the binary under test that the units run.
    pub fn binary(&self) -> PathBuf {
        self.dir.join("bin/pgsql-state")
    }

    /// `program` run inside the namespaces (mount, PID, network).
    pub fn cmd(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-p", "-n", "--", program]);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd`, panicking with its output when it fails; returns stdout.
    pub fn ok(&self, cmd: &mut Command) -> String {
        String::from_utf8_lossy(&run(cmd).stdout).into_owned()
    }

    /// `systemctl ARGS` inside; panics when it fails.
    pub fn systemctl(&self, args: &[&str]) -> String {
        self.ok(self.cmd("systemctl").args(args))
    }

    /// `systemctl ARGS` inside, whatever it returns.
    pub fn systemctl_output(&self, args: &[&str]) -> Output {
        self.cmd("systemctl")
            .args(args)
            .output()
            .expect("run systemctl")
    }

    /// One property of a unit (`systemctl show -P`).
    pub fn property(&self, unit: &str, property: &str) -> String {
        self.systemctl(&["show", "-P", property, unit])
            .trim()
            .to_string()
    }

    /// Writes a unit (or a drop-in, `name` = `x.service.d/y.conf`) into the
    /// private unit path and reloads.
    pub fn add_unit(&self, name: &str, text: &str) {
        let path = self.units.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create the unit's dir");
        }
        std::fs::write(&path, text).expect("write a unit");
        self.systemctl(&["daemon-reload"]);
    }

    /// Links the units an installed package put in /lib/systemd/system
    /// (`dpkg -L PACKAGE`) into the private unit path, as a stand-in for
    /// that directory, whose other units must never boot here. Returns
    /// their names.
    pub fn link_installed_units(&self, package: &str) -> Vec<String> {
        let listed = self.ok(self.cmd("dpkg").args(["-L", package]));
        let mut names = Vec::new();
        for path in listed.lines().map(Path::new) {
            let in_unit_dir = path.parent() == Some(Path::new("/lib/systemd/system"))
                || path.parent() == Some(Path::new("/usr/lib/systemd/system"));
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if in_unit_dir && name.contains('.') {
                std::os::unix::fs::symlink(path, self.units.join(name))
                    .unwrap_or_else(|e| panic!("link {}: {e}", path.display()));
                names.push(name.to_string());
            }
        }
        names
    }

    /// The journal of `unit`, message text only.
    pub fn journal(&self, unit: &str) -> String {
        self.ok(self
            .cmd("journalctl")
            .args(["--no-pager", "-o", "cat", "-u", unit]))
    }

    /// Runs `f` on a thread inside the network namespace (only): sockets it
    /// opens live there.
    pub fn in_netns<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn_in_netns(f)
            .join()
            .expect("the thread in the network namespace panicked")
    }

    /// Starts `f` on a thread of its own inside the network namespace.
    pub fn spawn_in_netns<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let netns = std::fs::File::open(format!("/proc/{}/ns/net", self.pid))
            .expect("open the network namespace");
        std::thread::spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a namespace fd we hold; it moves only this
            // thread, which ends after `f`.
            let rc = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
    }

    /// A PostgreSQL primary at `addr`:5432 run as a unit `pg-NAME.service`
    /// by this systemd (Type=notify, as the postgres user). Returns its
    /// data dir; its Unix socket is in `<data dir>.s`.
    pub fn postgres(&self, name: &str, addr: Ipv4Addr) -> PathBuf {
        let data = self.dir.join(format!("pg-{name}"));
        let socket = self.dir.join(format!("pg-{name}.s"));
        std::fs::create_dir_all(&socket).expect("create the socket dir");
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::create_dir_all(&data).expect("create the data dir");
        let (uid, gid) = postgres_ids();
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown the data dir");
        initdb(&data);
        let conf = format!(
            "listen_addresses = '{addr}'\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 300\n",
            socket.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        self.add_unit(
            &format!("pg-{name}.service"),
            &format!(
                "[Unit]\nDescription=PostgreSQL {name}\n[Service]\nType=notify\nUser=postgres\n\
                 ExecStart={} -D {}\nKillMode=mixed\nKillSignal=SIGINT\nTimeoutStopSec=10s\n",
                pg_bin("postgres").display(),
                data.display()
            ),
        );
        self.systemctl(&["start", &format!("pg-{name}.service")]);
        data
    }

    /// Stops systemd and removes its cgroup.
    fn stop(&mut self) {
        // SAFETY: signalling the systemd we started.
        unsafe { libc::kill(self.pid, libc::SIGRTMIN() + 14) };
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.launcher.try_wait() {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                // SAFETY: as above; ending PID 1 ends its namespace.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                let _ = self.launcher.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        remove_cgroup(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for SystemdNs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a boot prepares besides systemd itself.
enum Setup<'a> {
    Plain,
    /// The shipped generator, reading this config.
    Generator(&'a str),
    /// Overlays for installing the Debian package.
    Package,
}

/// The `postgres` user's uid and gid.
pub fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        String::from_utf8_lossy(&run(Command::new("id").args([flag, "postgres"])).stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(text.as_bytes()).expect("append");
}

/// Removes a cgroup directory depth-first (the kernel removes only empty
/// ones, and only leaves first).
fn remove_cgroup(root: &Path) {
    fn walk(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    walk(root);
}

/// Removes the cgroups and directories of earlier runs whose process is
/// gone (a run killed before it could clean up).
fn sweep_dead_cgroups() {
    let roots = ["/sys/fs/cgroup/unified", RUNS];
    for e in roots
        .iter()
        .filter_map(|r| std::fs::read_dir(r).ok())
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("pgsql-state-test-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            if e.path().starts_with("/sys/fs/cgroup") {
                remove_cgroup(&e.path());
            } else {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
