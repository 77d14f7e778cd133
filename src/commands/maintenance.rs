//! `pgsql-state maintenance on|off`: drains this node by setting the flag
//! file the responder checks before anything else.

use std::path::Path;

use anyhow::Context;

use crate::cli::{MaintenanceArgs, Switch};
use crate::config;
use crate::runtime_files;

pub fn run(explicit: Option<&Path>, args: MaintenanceArgs) -> anyhow::Result<()> {
    let runtime_dir = match args.runtime_dir {
        Some(dir) => dir,
        None => super::load_config(explicit, true)?
            .map(|l| l.config.responder.runtime_dir)
            .unwrap_or_else(|| config::DEFAULT_RUNTIME_DIR.into()),
    };
    let on = args.switch == Switch::On;
    let who = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown".into());
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let note = format!("maintenance set by {who} at unix time {since}\n");
    runtime_files::set_maintenance(&runtime_dir, on, &note)
        .with_context(|| format!("cannot switch maintenance in {}", runtime_dir.display()))?;
    if on {
        println!(
            "maintenance on: this node answers `maintenance`, and `promote-check` says no, until \
             `pgsql-state maintenance off` or a reboot ({} is cleared at boot)",
            runtime_dir.display()
        );
    } else {
        println!("maintenance off: this node answers from Postgres again");
    }
    Ok(())
}
