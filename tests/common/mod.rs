//! The integration-test harness: real PostgreSQL nodes on loopback, each on
//! its own 127.0.K.x address, run as an unprivileged user, plus helpers to
//! run the real `pgsql-state` binary and real `ncat`/`nc`.
//!
//! One [`Cluster`] per test file (a `static OnceLock`), shared by its tests.
//! Each cluster takes a free "slot" K (a lock file held for the process's
//! life), so test files can run in parallel without address clashes.
//! Everything is stopped by an `atexit` hook when the test binary exits.

#![allow(dead_code, unused_imports)] // each test file uses a different part of the harness

pub mod cluster;
pub mod haproxy;
pub mod monitoring;
pub mod patroni;
pub mod peers;
pub mod proxy;
pub mod repmgr;
pub mod scene;
pub mod systemd;
pub mod tools;

pub use cluster::{as_pg_user, pg_bin, pg_bindir, run, wait_until, Cluster, Node};
pub use haproxy::Haproxy;
pub use patroni::patroni_venv;
pub use peers::{make_tls, start_peer, write_with_claims, PeerConfig, TlsFiles};
pub use proxy::Proxy;
pub use systemd::SystemdNs;
pub use tools::*;
