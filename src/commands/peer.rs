//! `pgsql-state peer`: serves `models.ClusterInfo` on the listener systemd
//! passed (Accept=no), on `--listen`, or on `gRPC.bindAddress:bindPort`.

use std::path::Path;

use anyhow::Context;

use super::UsageError;
use crate::activation::{self, Inherited, ListenSocket};
use crate::cli::PeerArgs;
use crate::peer::server::{self, PeerService};
use crate::peer::tls;

pub fn run(explicit: Option<&Path>, args: PeerArgs) -> anyhow::Result<()> {
    let inherited = activation::take_inherited().context("cannot take the inherited socket")?;
    crate::logging::init(false);
    let loaded = super::load_config(explicit, false)?
        .ok_or_else(|| anyhow::anyhow!("peer needs a config file"))?;
    let config = loaded.config;
    let service = PeerService::new(&config, loaded.generation)?;
    let tls = tls::server_config(&config.grpc.tls)?;
    let listener = match (args.listen.as_deref(), inherited) {
        (Some(addr), _) => super::bind_tcp(addr, "--listen")?,
        (None, Inherited::Listener(ListenSocket::Tcp(listener))) => listener,
        (None, Inherited::Listener(ListenSocket::Unix(_)) | Inherited::Client(_)) => {
            return Err(UsageError("peer needs a listening TCP socket (Accept=no)".into()).into());
        }
        (None, Inherited::Nothing) => {
            let addr = format!("{}:{}", config.grpc.bind_address, config.grpc.bind_port);
            super::bind_tcp(&addr, "gRPC.bindAddress:bindPort")?
        }
    };
    let local = listener.local_addr().context("listener address")?;
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let role = if service.is_witness() {
            "witness"
        } else {
            "data node"
        };
        log::info!("peer ({role}) serving on {local}");
        crate::systemd::ready(&format!("{role}, serving on {local}"));
        if let Some(interval) = crate::systemd::watchdog_interval() {
            tokio::spawn(crate::systemd::keep_watchdog(interval));
        }
        tokio::spawn(service.clone().background(crate::systemd::status));
        let request_timeout = config.grpc.connection_deadline;
        server::serve(
            listener,
            tls,
            service,
            request_timeout,
            super::shutdown_signal(),
        )
        .await
        .context("gRPC server")
    })
}
