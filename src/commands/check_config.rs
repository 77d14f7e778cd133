//! `pgsql-state check-config`: validates the YAML and prints every problem
//! with its key path and line; exits 78 when there is any.

use std::path::Path;

use crate::config;

pub fn run(explicit: Option<&Path>) -> anyhow::Result<()> {
    let path = explicit.unwrap_or(Path::new(config::DEFAULT_CONFIG_PATH));
    let loaded = config::load(path)?;
    for warning in &loaded.warnings {
        println!("{}:{warning} (warning)", path.display());
    }
    let c = &loaded.config;
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
    Ok(())
}
