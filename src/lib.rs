//! pgsql-state tells HAProxy, and anyone with `nc`, which PostgreSQL node
//! is the primary and which nodes are usable standbys, and refuses to let
//! two nodes both say "primary". See `README.md` and the design notes.
//!
//! # Layout
//!
//! A pure core, a few edges, and thin commands over them.
//!
//! - [`fencing`]: what keeps two nodes from both answering `production`:
//!   claim records, the quorum and timeline rules with the wait
//!   (`decide`), the lease's timing, the verdict, whether a standby may
//!   be promoted now (`promote_check`); and its two edges, the durable
//!   record file and CLOCK_BOOTTIME.
//! - The rest of the pure core (no I/O, no clock reads): [`word`] (the
//!   words and `choose_word`), [`config`] (types, deserialising with
//!   lines, validation), [`haproxy_cfg`] (a haproxy.cfg's check timing),
//!   [`haproxy_state`] (HAProxy's server-state file, which starts servers
//!   DOWN), [`hba::render`] (the managed block of pg_hba.conf),
//!   [`status`] (the cluster table), and [`peer::opinion`] (the answers a
//!   peer gives).
//! - Edges: [`pg`] (the role query, the facts query, the warm connection),
//!   [`peer`] (proto, client, server, TLS), [`activation`] (inherited
//!   sockets, for `respond` and `peer`), [`conn_limit`] (per-source caps,
//!   reserved addresses and set-up deadlines on accepted connections),
//!   [`runtime_files`] (the verdict and maintenance files), [`sandbox`]
//!   (the responder's Landlock confinement and seccomp filters),
//!   [`fsutil`] (atomic writes that keep mode and owner), [`resolve`]
//!   (host names to addresses, bounded in time), [`systemd`], [`logging`],
//!   and [`timer_dropin`] (the reconcile timer's interval from watchDog,
//!   for the systemd generator).
//! - Commands: [`cli`] (clap) and [`commands`], one function per
//!   subcommand with anyhow context, and the exit-code mapping;
//!   [`respond`] holds the responder's formats and long-lived server.
//!
//! A module with submodules is `name/mod.rs`, throughout.

#![deny(missing_docs)]

pub mod activation;
pub mod cli;
pub mod commands;
pub mod config;
pub mod conn_limit;
pub mod doctor;
pub mod error_text;
pub mod fencing;
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
pub mod timer_dropin;
pub mod word;
