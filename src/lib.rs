//! pgsql-state tells HAProxy, and anyone with `nc`, which PostgreSQL node
//! is the primary and which nodes are usable standbys, and refuses to let
//! two nodes both say "primary". See `README.md` and the design notes.
//!
//! # Layout
//!
//! - [`cli`]: the command line (clap); [`commands`]: one function per
//!   subcommand, with anyhow context, and the exit-code mapping.
//! - [`config`]: harepd's YAML plus our keys; pure `validate` with every
//!   problem's path and line.
//! - [`word`]: the words and the pure `choose_word`.
//! - [`probe`]: the responder's one-round-trip Postgres query (the Postgres
//!   boundary); [`facts`]: the node facts query; [`warm`]: a persistent
//!   connection for long-lived servers.
//! - [`state`]: the verdict and maintenance files in `runtimeDir`.
//! - [`respond`]: the responder: formats, inherited sockets, the
//!   long-lived server.
//! - [`peer`]: the harepd-compatible gRPC protocol: client, pure opinions,
//!   server, TLS; [`status`]: the cluster table.
//! - [`logging`], [`systemd`], [`error_text`]: small edges.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error_text;
pub mod facts;
pub mod logging;
pub mod peer;
pub mod probe;
pub mod respond;
pub mod state;
pub mod status;
pub mod systemd;
pub mod warm;
pub mod word;
