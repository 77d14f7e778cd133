//! The README's main command, `./scripts/playground.sh`, run as a user runs
//! it (in its own directory, `PLAYGROUND_DIR`), and the README's account of
//! it held to what it prints.
//!
//! - It exits 0: every wait in the script (node_1 says `production`,
//!   HAProxy marks the servers, node_2 enters `prod`) held.
//! - Its second-by-second lines never show both nodes in HAProxy's `prod`
//!   pool, and the last of them shows node_2 alone there.
//! - The write through HAProxy after the failover went to node_2, and the
//!   zombie node_1 does not have it.
//! - The README's paragraph names the scene the script plays, in the
//!   script's own words, and no longer says the primary is stopped.
//!
//! The playground listens on 127.0.0.2 to 127.0.0.5, which no other test
//! file uses outside a network namespace of its own.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The headings the script prints (`== …`), without the terminal's bold.
fn headings(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| {
            let line = line.replace("\u{1b}[1m", "").replace("\u{1b}[0m", "");
            line.strip_prefix("== ").map(str::to_string)
        })
        .collect()
}

/// The README's paragraph about the playground: from "The playground
/// starts" to the next blank line.
fn readme_paragraph() -> String {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("read README.md");
    let start = readme
        .find("The playground starts")
        .expect("README.md has a paragraph that begins \"The playground starts\"");
    let rest = &readme[start..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    // One line, for matching phrases across the paragraph's line breaks.
    rest[..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("**", "")
}

/// Stops whatever the script left behind, named by its directory.
fn kill_everything_under(dir: &std::path::Path) {
    let _ = Command::new("pkill")
        .arg("-KILL")
        .arg("-f")
        .arg(dir.to_str().expect("utf-8"))
        .status();
}

#[test]
fn the_playground_plays_the_zombie_the_readme_describes() {
    let dir = runtime_dir("playground").join("playground");
    let started = Instant::now();
    let child = Command::new(repo().join("scripts/playground.sh"))
        .env("PLAYGROUND_DIR", &dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start scripts/playground.sh");
    // Bounded: the script's own waits add up to under two minutes once
    // built; a build from nothing takes longer.
    let output = {
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(900);
            while Instant::now() < deadline {
                // SAFETY: kill with signal 0 only asks whether `pid` exists.
                if unsafe { libc::kill(pid as i32, 0) } != 0 {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // SAFETY: a plain kill of the child we started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            true
        });
        let output = child.wait_with_output().expect("wait for the playground");
        let timed_out = watchdog.join().unwrap_or(true);
        kill_everything_under(&dir);
        assert!(!timed_out, "the playground ran over 900 s");
        output
    };
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    println!("the playground ran {:?}:\n{stdout}", started.elapsed());
    assert!(
        output.status.success(),
        "the playground failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    // The zombie scene, second by second: never both in prod, node_2 at the end.
    let ticks: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("t+") && l.contains("prod UP: ["))
        .collect();
    assert!(!ticks.is_empty(), "no second-by-second lines:\n{stdout}");
    for tick in &ticks {
        let pool = tick
            .rsplit("prod UP: [")
            .next()
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or_else(|| panic!("a tick without its pool: {tick}"));
        let up = pool.split(',').filter(|s| !s.is_empty()).count();
        assert!(up <= 1, "{up} servers UP in prod: {tick}");
    }
    let last = ticks.last().expect("checked non-empty above");
    assert!(
        last.contains("node_2: production") && last.ends_with("prod UP: [node_2]"),
        "the last tick: {last}"
    );
    assert!(
        stdout.contains("the write went to 127.0.0.3/32, in recovery: false"),
        "the write after the failover:\n{stdout}"
    );
    assert!(
        stdout.contains("On the zombie node_1, that table does not exist: no such table"),
        "the zombie has the write:\n{stdout}"
    );

    // The README tells the scene the script plays, in its words.
    let heads = headings(&stdout);
    let zombie = heads
        .iter()
        .find(|h| h.starts_with("A zombie"))
        .unwrap_or_else(|| panic!("no zombie scene among the headings {heads:?}"));
    // "A zombie: node_2 is promoted while node_1 keeps running (…)"
    let scene = zombie
        .split(" (")
        .next()
        .expect("split yields at least one part")
        .to_lowercase();
    let paragraph = readme_paragraph();
    assert!(
        paragraph.to_lowercase().contains(&scene),
        "README.md's playground paragraph does not name the scene the script plays, \
         \"{scene}\":\n{paragraph}"
    );
    assert!(
        !paragraph.contains("stops the primary"),
        "README.md still says the playground stops the primary:\n{paragraph}"
    );
}
