//! Peer processes for tests: a harepd-style YAML per node, written from
//! the cluster's addresses, and `pgsql-state -f FILE peer` started on it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::tools::{binary, Spawned};

/// TLS files for one node (PEM paths).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub require_client_cert: bool,
}

/// One node's config.
pub struct PeerConfig<'a> {
    pub node_name: &'a str,
    pub primary_ip: &'a str,
    pub bind: SocketAddr,
    pub neighbours: Vec<String>,
    pub witness: String,
    pub conninfo: String,
    pub runtime_dir: &'a Path,
    pub tls: Option<&'a TlsFiles>,
    pub connection_deadline: f64,
}

impl PeerConfig<'_> {
    /// The YAML text, in harepd's layout.
    pub fn yaml(&self) -> String {
        let tls = match self.tls {
            None => "    tls:\n      enabled: false\n".to_string(),
            Some(t) => format!(
                "    tls:\n      enabled: true\n      ca: {:?}\n      cert: {:?}\n      key: {:?}\n      requireClientCert: {}\n",
                t.ca, t.cert, t.key, t.require_client_cert
            ),
        };
        let neighbours: String = self
            .neighbours
            .iter()
            .map(|n| format!("      - \"{n}\"\n"))
            .collect();
        format!(
            "harepd:\n  nodeName: \"{name}\"\n  primaryIP: \"{ip}\"\n  allowRO: false\n  hbaConfig: \"/nonexistent/pg_hba.conf\"\n\
             \x20 haproxy:\n    server:\n      - \"127.0.0.1\"\n    users:\n      readWrite: \"harw\"\n\
             \x20 gRPC:\n{tls}    bindPort: {port}\n    bindAddress: \"{addr}\"\n    neighbours:\n{neighbours}\
             \x20   witness: \"{witness}\"\n    connectionDeadline: {deadline}\n\
             \x20 watchDog: 2\n  postgres:\n    conninfo: \"{conninfo}\"\n  checkTimeout: 1\n  runtimeDir: \"{run}\"\n",
            name = self.node_name,
            ip = self.primary_ip,
            port = self.bind.port(),
            addr = self.bind.ip(),
            witness = self.witness,
            deadline = self.connection_deadline,
            conninfo = self.conninfo,
            run = self.runtime_dir.display(),
        )
    }

    /// [`PeerConfig::yaml`] for a data node under the reconciler: its
    /// pg_hba.conf, `watchDog: 1`, and `haproxy_check` (the `check:` block
    /// under `haproxy:`, indented four spaces).
    pub fn reconciled_yaml(&self, hba: &Path, haproxy_check: &str) -> String {
        self.yaml()
            .replace(
                "hbaConfig: \"/nonexistent/pg_hba.conf\"",
                &format!("hbaConfig: \"{}\"", hba.display()),
            )
            .replace("  watchDog: 2\n", "  watchDog: 1\n")
            .replace(
                "      readWrite: \"harw\"\n",
                &format!("      readWrite: \"harw\"\n{haproxy_check}"),
            )
    }

    /// [`PeerConfig::reconciled_yaml`] as a scene runs it: `fencing:
    /// strict`, md5/reject auth modes, its record in `state`; with
    /// `shipped_watchdog` the shipped HAProxy timing and that watchDog,
    /// else watchDog 1 and the scene's check timing (inter 1, fastinter
    /// 0.5, rise 1, fall 1, timeout check 2).
    pub fn scene_yaml(&self, hba: &Path, state: &Path, shipped_watchdog: Option<u64>) -> String {
        let yaml = match shipped_watchdog {
            Some(w) => self
                .reconciled_yaml(hba, "")
                .replace("  watchDog: 1\n", &format!("  watchDog: {w}\n")),
            None => self.reconciled_yaml(
                hba,
                "    check:\n      inter: 1\n      fastinter: 0.5\n      rise: 1\n      fall: 1\n      timeoutCheck: 2\n",
            ),
        };
        yaml + &format!(
            "  stateDir: \"{}\"\n  fencing: strict\n  authModes:\n    allow: md5\n    deny: reject\n",
            state.display()
        )
    }

    /// Writes the config into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}-{}.yml", self.node_name, self.bind.port()));
        std::fs::write(&path, self.yaml()).expect("write a peer config");
        path
    }
}

/// Writes `yaml` as `dir/NAME.yml` and runs `claims init` on it (as a
/// node's install does); returns the config's path.
pub fn write_with_claims(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yml"));
    std::fs::write(&config, yaml).expect("write a config");
    let path = config.to_str().expect("utf-8");
    let (code, out, err) =
        super::tools::pgsql_state(&["-f", path, "claims", "init", "--new-cluster"]);
    assert_eq!(code, 0, "claims init: {out}{err}");
    config
}

/// Starts `pgsql-state -f config peer`, logging to `log`, and waits until it listens.
pub fn start_peer(config: &Path, bind: SocketAddr, log: &Path) -> Spawned {
    let mut cmd = Command::new(binary());
    cmd.arg("-f")
        .arg(config)
        .arg("peer")
        .env("PGSQL_STATE_LOG", "info");
    cmd.stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("create the peer log"));
    Spawned::listening(cmd, bind, &format!("peer on {bind}"))
}

/// A CA, and one certificate for every node with the cluster-wide name
/// `pgsql-state.test` (no IP addresses, so clients need serverHostOverride).
pub fn make_tls(dir: &std::path::Path) -> (TlsFiles, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("node key");
    let cert = CertificateParams::new(vec!["pgsql-state.test".to_string()])
        .expect("node params")
        .signed_by(&key, &ca)
        .expect("node cert");
    let other_ca = CertifiedIssuer::self_signed(
        {
            let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p
        },
        KeyPair::generate().expect("key"),
    )
    .expect("another CA");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    };
    let files = TlsFiles {
        ca: write("ca.pem", ca.pem()),
        cert: write("node.pem", cert.pem()),
        key: write("node.key", key.serialize_pem()),
        require_client_cert: true,
    };
    let foreign = TlsFiles {
        ca: write("other-ca.pem", other_ca.pem()),
        ..files.clone()
    };
    (files, foreign)
}
