//! The `pgsql-state` binary: parses the command line, runs the command, and
//! maps its error to an exit code (0 ok, 2 usage, 78 config, 1 otherwise).

use clap::Parser;

fn main() {
    let cli = pgsql_state::cli::Cli::parse();
    let code = match pgsql_state::commands::run(cli) {
        Ok(()) => 0,
        Err(error) => {
            let code = pgsql_state::commands::exit_code(&error);
            // Logging may be off (inetd mode), so errors go straight to stderr
            // unless stderr is the client's socket.
            if !pgsql_state::activation::stderr_is_socket() {
                eprintln!("pgsql-state: {error:#}");
            }
            code
        }
    };
    std::process::exit(code);
}
