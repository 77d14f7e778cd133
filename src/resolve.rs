//! Host names to addresses, through the system resolver and bounded in
//! time: what a standby's `sender_host` or a peer's configured host name
//! stands for. Addresses come back normalised (an IPv4-mapped IPv6
//! address as IPv4), so two spellings of one address compare equal.

use std::net::IpAddr;
use std::time::Duration;

/// The addresses `host` stands for: itself when it is an address (in any
/// spelling, brackets allowed), else what the system resolver says within
/// `bound`. Empty for a socket directory, a name that does not resolve,
/// or a resolver that did not answer in time.
pub async fn addresses(host: &str, bound: Duration) -> Vec<IpAddr> {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.starts_with('/') || host.starts_with('@') {
        return Vec::new();
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip.to_canonical()];
    }
    // A zone index (fe80::1%eth0) is not part of the address.
    if let Some(ip) = host
        .split_once('%')
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
    {
        return vec![ip.to_canonical()];
    }
    match tokio::time::timeout(bound, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(found)) => {
            let mut ips: Vec<IpAddr> = found.map(|a| a.ip().to_canonical()).collect();
            ips.sort();
            ips.dedup();
            ips
        }
        Ok(Err(e)) => {
            log::info!("cannot resolve {host:?}: {e}");
            Vec::new()
        }
        Err(_) => {
            log::info!("resolving {host:?} took more than {bound:?}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spellings_of_one_address_compare_equal() {
        let bound = Duration::from_secs(5);
        let v4: IpAddr = "127.0.0.11".parse().expect("an address");
        let v6: IpAddr = "::1".parse().expect("an address");
        let cases: &[(&str, &[IpAddr])] = &[
            ("127.0.0.11", &[v4]),
            ("::ffff:127.0.0.11", &[v4]),
            ("[::ffff:7f00:b]", &[v4]),
            ("0:0:0:0:0:0:0:1", &[v6]),
            ("[::1]", &[v6]),
            ("/var/run/postgresql", &[]),
            ("", &[]),
        ];
        for (host, want) in cases {
            assert_eq!(addresses(host, bound).await, *want, "{host:?}");
        }
        // The system resolver: localhost is a loopback address; a name
        // under .invalid never resolves (RFC 6761).
        let local = addresses("localhost", bound).await;
        assert!(
            !local.is_empty() && local.iter().all(IpAddr::is_loopback),
            "{local:?}"
        );
        assert_eq!(
            addresses("no-such-node.invalid", bound).await,
            Vec::<IpAddr>::new()
        );
    }
}
