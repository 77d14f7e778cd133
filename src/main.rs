//! The `pgsql-state` binary: parses the command line, runs the command, and
//! maps its error to an exit code (0 ok, 2 usage, 78 config, 1 otherwise).
//!
//! Under inetd (`StandardInput=socket`) stdout and stderr are the client's
//! socket, so nothing but the answer may be written there: usage errors and
//! panic messages then go to syslog (the journal) instead.

use clap::Parser;
use pgsql_state::{activation, commands, logging};

fn main() {
    let quiet = activation::stderr_is_client_socket() || activation::stdout_is_client_socket();
    if quiet {
        std::panic::set_hook(Box::new(|info| {
            logging::to_syslog(logging::SYSLOG_ERR, &format!("panic: {info}"));
        }));
    }
    let cli = match pgsql_state::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if quiet && error.use_stderr() => {
            logging::to_syslog(logging::SYSLOG_ERR, &error.to_string());
            std::process::exit(commands::EXIT_USAGE);
        }
        Err(error) => error.exit(),
    };
    let code = match commands::run(cli) {
        Ok(()) => 0,
        Err(error) => {
            let code = commands::exit_code(&error);
            if error.is::<commands::Reported>() {
                std::process::exit(code);
            }
            // Logging may be off (inetd mode), so errors go straight to
            // stderr, unless stderr is the client's socket.
            if quiet {
                logging::to_syslog(logging::SYSLOG_ERR, &format!("{error:#}"));
            } else {
                eprintln!("pgsql-state: {error:#}");
            }
            code
        }
    };
    std::process::exit(code);
}
