//! `pgsql-state check-config`: validates the YAML and prints every problem
//! with its key path and line; exits 78 when there is any. With
//! `--haproxy FILE` it also compares `haproxy.check` with what that
//! haproxy.cfg's `prod` pool really does, since the new primary's wait is
//! computed from those keys. Then it prints what the timing costs
//! ([`crate::fencing::price`]): L, H and W, a zombie, a lost primary, a
//! blip of the peer network.

use std::path::Path;

use anyhow::Context;

use crate::cli::CheckConfigArgs;
use crate::config::{self, ConfigError, Problem};
use crate::haproxy_cfg;

pub fn run(explicit: Option<&Path>, args: CheckConfigArgs) -> anyhow::Result<()> {
    let path = explicit.unwrap_or(Path::new(config::DEFAULT_CONFIG_PATH));
    let loaded = config::load(path)?;
    for warning in &loaded.warnings {
        println!("{}:{warning} (warning)", path.display());
    }
    let c = &loaded.config;
    if let Some(cfg) = &args.haproxy {
        let text = std::fs::read_to_string(cfg)
            .with_context(|| format!("cannot read {}", cfg.display()))?;
        let actual = haproxy_cfg::check_timing(&text, "prod")
            .with_context(|| format!("{}", cfg.display()))?;
        let problems: Vec<Problem> = haproxy_cfg::mismatches(&c.haproxy_check, &actual)
            .into_iter()
            .map(|(key, ours, theirs)| Problem {
                path: format!("harepd.haproxy.check.{key}"),
                line: None,
                message: format!(
                    "is {ours}, but {}'s prod pool uses {theirs}; the new primary's wait would not cover HAProxy",
                    cfg.display()
                ),
            })
            .collect();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems,
            }
            .into());
        }
        println!(
            "{}: haproxy.check matches {}",
            path.display(),
            cfg.display()
        );
    }
    println!(
        "{}: ok: node {} ({}), {} neighbour(s), witness {}, fencing {:?}, responder on {}",
        path.display(),
        c.node_name,
        c.primary_ip,
        c.grpc.neighbours.len(),
        c.grpc.witness.as_deref().unwrap_or("none"),
        c.responder.fencing,
        c.responder.conninfo,
    );
    for line in super::timing_price(c) {
        println!("{}: timing: {line}", path.display());
    }
    Ok(())
}
