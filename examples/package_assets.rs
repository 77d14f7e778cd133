//! Writes what the Debian package ships but the build does not make: a man
//! page per subcommand (clap_mangen) and shell completions (clap_complete),
//! both from the same clap definitions as the binary, so they never drift.
//!
//! `cargo run --example package_assets -- DIR` writes `DIR/man/*.1` and
//! `DIR/completions/{pgsql-state,_pgsql-state,pgsql-state.fish}`;
//! `scripts/build-deb.sh` runs it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: package_assets DIR")?;
    let man = out.join("man");
    let completions = out.join("completions");
    fs::create_dir_all(&man).with_context(|| format!("cannot create {}", man.display()))?;
    fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;

    let cli = pgsql_state::cli::Cli::command();
    write_page(&cli, "pgsql-state", &man)?;
    for sub in cli.get_subcommands() {
        // Each subcommand's page is named as `man` finds it:
        // pgsql-state-respond(1), and so on.
        // clap takes a command's name as `&'static str`; this tool runs
        // once and exits, so leaking a few names is fine.
        let name: &'static str =
            Box::leak(format!("pgsql-state-{}", sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name).version(env!("CARGO_PKG_VERSION"));
        write_page(&page, name, &man)?;
    }
    for (shell, file) in [
        (Shell::Bash, "pgsql-state"),
        (Shell::Zsh, "_pgsql-state"),
        (Shell::Fish, "pgsql-state.fish"),
    ] {
        let path = completions.join(file);
        let mut f =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        clap_complete::generate(shell, &mut cli.clone(), "pgsql-state", &mut f);
    }
    Ok(())
}

fn write_page(cmd: &clap::Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let mut text = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(name.to_uppercase())
        .section("1")
        .source(format!("pgsql-state {}", env!("CARGO_PKG_VERSION")))
        .manual("pgsql-state")
        .render(&mut text)
        .with_context(|| format!("cannot render the {name} page"))?;
    let path = dir.join(format!("{name}.1"));
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}
