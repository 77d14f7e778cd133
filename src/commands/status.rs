//! `pgsql-state status`: asks every configured peer (this node, the
//! neighbours, the witness) and each data node's health-check port, in
//! parallel and under deadlines, and prints one table.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;

use crate::cli::StatusArgs;
use crate::peer::client::{PeerClient, PeerView};
use crate::peer::proto::WhatYouKnow;
use crate::status;

pub fn run(explicit: Option<&Path>, args: StatusArgs) -> anyhow::Result<()> {
    crate::logging::init(false);
    let loaded = super::load_config(explicit, false)?
        .ok_or_else(|| anyhow::anyhow!("status needs a config file"))?;
    let config = loaded.config;
    let own = crate::config::host_port(
        &format!("{}:{}", config.grpc.bind_address, config.grpc.bind_port),
        config.grpc.bind_port,
    )
    .map_err(anyhow::Error::msg)?;
    let peers = status::peers_to_ask(
        &own,
        &config.grpc.neighbours,
        config.grpc.witness.as_deref(),
    );
    let asker = WhatYouKnow::default();
    let client = PeerClient::new(&config.grpc, asker)?;
    let check_timeout = config.responder.check_timeout + Duration::from_millis(500);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    if let Some(addr) = &args.ask {
        let addr = crate::config::host_port(addr, config.grpc.bind_port)
            .map_err(|e| super::UsageError(format!("--ask {e}")))?;
        return match runtime.block_on(client.ask(&addr)) {
            PeerView::Answered(answer) => {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                Ok(())
            }
            PeerView::Unreachable(e) => Err(anyhow::anyhow!("{addr}: {e}")),
        };
    }
    if args.watch {
        if !(args.interval.is_finite() && args.interval >= 0.1 && args.interval <= 3600.0) {
            return Err(super::UsageError(format!(
                "--interval {}: not a number of seconds in [0.1, 3600]",
                args.interval
            ))
            .into());
        }
        let interval = Duration::from_secs_f64(args.interval);
        let mut before: Vec<status::Row> = Vec::new();
        let mut refresh = 0u64;
        loop {
            let rows = runtime.block_on(gather(&client, &peers, &config, &args, check_timeout));
            let stamp = wall_clock();
            if refresh > 0 {
                for change in status::changes(&before, &rows) {
                    println!("{stamp} {change}");
                }
            }
            println!("--- {stamp}");
            print!("{}", status::render(&rows));
            println!("{}", status::summary(&rows));
            before = rows;
            refresh += 1;
            if args.count.is_some_and(|n| refresh >= n) {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }
    let rows = runtime.block_on(gather(&client, &peers, &config, &args, check_timeout));
    if args.json {
        let out = serde_json::json!({ "summary": status::summary(&rows), "nodes": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", status::render(&rows));
        println!("{}", status::summary(&rows));
    }
    Ok(())
}

/// HH:MM:SS (UTC) for --watch's lines.
fn wall_clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

/// One table's rows: every peer's answer, and every data node's 5431.
async fn gather(
    client: &PeerClient,
    peers: &[String],
    config: &crate::config::Config,
    args: &StatusArgs,
    check_timeout: Duration,
) -> Vec<status::Row> {
    {
        let views = client.ask_all(peers).await;
        let lease_ms = crate::fencing::timing::drifted(config.responder.lease).as_millis() as u64;
        let mut rows = status::rows(
            &views,
            config.grpc.witness.as_deref(),
            lease_ms,
            config.grpc.voter_count(),
        );
        // Ask every data node's check port at once; answers land in row order.
        let mut checks = tokio::task::JoinSet::new();
        for (i, row) in rows.iter().enumerate().filter(|(_, r)| r.check == "?") {
            let addr = format!("{}:{}", row.ip, args.check_port);
            checks.spawn(async move { (i, check_word(&addr, check_timeout).await) });
        }
        while let Some(Ok((i, word))) = checks.join_next().await {
            rows[i].check = word;
        }
        rows
    }
}

/// The most `status` reads from a node's health-check port: a word, or an
/// HTTP answer, is far shorter; a port that sends more is not a responder.
const MAX_CHECK_ANSWER: u64 = 1024;

/// What a node's health-check port says, as `nc` would show it: at most
/// [`MAX_CHECK_ANSWER`] bytes, within `bound`.
async fn check_word(addr: &str, bound: Duration) -> String {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let mut out = Vec::new();
        stream.take(MAX_CHECK_ANSWER).read_to_end(&mut out).await?;
        let text: String = String::from_utf8_lossy(&out)
            .trim()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Ok::<_, std::io::Error>(text)
    };
    match tokio::time::timeout(bound, attempt).await {
        Ok(Ok(word)) if !word.is_empty() => word,
        Ok(Ok(_)) => "(empty)".into(),
        Ok(Err(e)) => format!("({})", e.kind()),
        Err(_) => "(timeout)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_port_that_never_stops_talking_is_read_only_so_far() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let chunk = vec![b'x'; 64 * 1024];
            // Up to 100 MB, or until the reader hangs up.
            for _ in 0..1600 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let start = std::time::Instant::now();
        let word = check_word(&addr.to_string(), Duration::from_secs(5)).await;
        assert_eq!(word.len(), MAX_CHECK_ANSWER as usize);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
