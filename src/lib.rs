//! pgsql-state tells HAProxy, and anyone with `nc`, which PostgreSQL node
//! is the primary and which nodes are usable standbys, and refuses to let
//! two nodes both say "primary". See `README.md` and the design notes.
//!
//! # Layout
//!
//! A pure core, a few edges, and thin commands over them.
//!
//! - Pure core (no I/O, no clock reads):
//!   [`word`] (the words and `choose_word`), [`decide`] (the quorum and
//!   timeline rules), [`timing`] (lease and wait), [`claims`] (claim records),
//!   [`verdict`] (the verdict
//!   type, its text form, freshness), [`config`] (types, deserialising with
//!   lines, validation), [`haproxy_cfg`] (a haproxy.cfg's check timing),
//!   [`haproxy_state`] (HAProxy's server-state file, which starts servers DOWN),
//!   [`hba::render`] (the managed block of
//!   pg_hba.conf), [`status`] (the cluster table), and
//!   [`peer::opinion`] (the answers a peer gives).
//! - Edges: [`pg`] (the role query, the facts query, the warm connection),
//!   [`peer`] (proto, client, server, TLS), [`activation`] (inherited
//!   sockets, for `respond` and `peer`), [`conn_limit`] (per-source caps
//!   and head timeouts on accepted connections), [`runtime_files`] (the
//!   verdict and maintenance files), [`sandbox`] (the responder's Landlock
//!   confinement and seccomp filters), [`claims_store`] (the durable claim
//!   record), [`fsutil`] (atomic writes that keep
//!   mode and owner), [`clock`] (CLOCK_BOOTTIME and the boot id), [`resolve`] (host names to
//!   addresses, bounded in time),
//!   [`systemd`], [`logging`].
//! - Commands: [`cli`] (clap) and [`commands`], one function per
//!   subcommand with anyhow context, and the exit-code mapping;
//!   [`respond`] holds the responder's formats and long-lived server.

#![deny(missing_docs)]

pub mod activation;
pub mod claims;
pub mod claims_store;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod conn_limit;
pub mod decide;
pub mod error_text;
pub mod fsutil;
pub mod haproxy_cfg;
pub mod haproxy_state;
pub mod hba;
pub mod logging;
pub mod peer;
pub mod pg;
pub mod resolve;
pub mod respond;
pub mod runtime_files;
pub mod sandbox;
pub mod status;
pub mod systemd;
pub mod timing;
pub mod verdict;
pub mod word;
