//! `pgsql-state systemd-generator NORMAL_DIR [EARLY_DIR LATE_DIR]`: run by
//! systemd as a generator (`/usr/lib/systemd/system-generators/
//! pgsql-state`), it writes the reconcile timer's interval from the
//! config's `watchDog` ([`crate::timer_dropin`]).
//!
//! A generator must never hold up a boot: with no config file it writes
//! nothing (the shipped 15 s stays); with a config that does not load it
//! writes nothing and fails, so that systemd logs the config error where
//! the operator looks (`journalctl -b`), naming the key and the line.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::SystemdGeneratorArgs;
use crate::config;
use crate::fsutil;
use crate::timer_dropin::{timer_dropin, TIMER_DROPIN};

pub fn run(explicit: Option<&Path>, args: SystemdGeneratorArgs) -> anyhow::Result<()> {
    let path = explicit.map_or_else(
        || PathBuf::from(config::DEFAULT_CONFIG_PATH),
        Path::to_path_buf,
    );
    if !path.exists() {
        log::info!(
            "{}: no config; the reconcile timer keeps its shipped interval",
            path.display()
        );
        return Ok(());
    }
    let loaded = config::load(&path)
        .context("the reconcile timer keeps its shipped interval (15 s) until the config loads")?;
    let file = args.normal_dir.join(TIMER_DROPIN);
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = timer_dropin(loaded.config.watchdog, &path);
    fsutil::write_atomic(&file, text.as_bytes(), 0o644)
        .with_context(|| format!("cannot write {}", file.display()))?;
    Ok(())
}
