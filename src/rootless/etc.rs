//! The `/etc/hosts` and `/etc/resolv.conf` a sandbox sees, generated
//! as BuildKit generates them and bind-mounted over the root file system
//! so that they never land in a layer.
//!
//! `hosts`: localhost and the sandbox's hostname on 127.0.0.1, the IPv6
//! localhost names on ::1. `resolv.conf`: with the host's network, the
//! host's file as it is (its loopback resolvers are reachable); without
//! (or when it names no nameserver at all), loopback nameservers are
//! dropped and, when none remain, public defaults are used, as Docker's
//! "legacy network" transform does.
//!
//! Pure text functions; no imports beyond std.

use super::spec::Network;

/// The hostname a sandbox gets when the spec names none.
pub const DEFAULT_HOSTNAME: &str = "buildkitsandbox";

/// The default nameservers when the host's are unusable.
const DEFAULT_NAMESERVERS: [&str; 4] = [
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
];

/// `/etc/hosts` for `hostname`.
pub fn hosts(hostname: &str) -> String {
    format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// `/etc/resolv.conf` from the host's text (empty when it has none).
pub fn resolv_conf(host: &str, network: Network) -> String {
    let is_nameserver = |line: &str| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver")).then(|| words.next().unwrap_or("").to_string())
    };
    let servers: Vec<String> = host.lines().filter_map(is_nameserver).collect();
    if network == Network::Host && !servers.is_empty() {
        return host.to_string();
    }
    let loopback = |addr: &str| {
        addr.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
    };
    let mut out = String::new();
    let mut kept = 0;
    for line in host.lines() {
        match is_nameserver(line) {
            Some(addr) if loopback(&addr) => continue,
            Some(_) => kept += 1,
            None => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    if kept == 0 {
        for server in DEFAULT_NAMESERVERS {
            out.push_str(&format!("nameserver {server}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_localhost_and_the_hostname() {
        assert_eq!(
            hosts(DEFAULT_HOSTNAME),
            "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        );
    }

    #[test]
    fn host_network_keeps_the_hosts_resolvers() {
        let host = "search example.com\nnameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(resolv_conf(host, Network::Host), host);
    }

    #[test]
    fn loopback_only_resolvers_become_defaults_without_host_network() {
        let host = "search example.com\nnameserver 127.0.0.53\nnameserver ::1\n";
        let out = resolv_conf(host, Network::None);
        assert!(out.starts_with("search example.com\n"), "{out}");
        assert!(
            !out.contains("127.0.0.53") && !out.contains("::1\n"),
            "{out}"
        );
        assert!(out.contains("nameserver 8.8.8.8\n"), "{out}");
        // Real resolvers are kept, and no defaults are added.
        let out = resolv_conf("nameserver 10.0.0.2\nnameserver 127.0.0.1\n", Network::None);
        assert_eq!(out, "nameserver 10.0.0.2\n");
        // An empty host file gives the defaults, even with host network.
        assert!(resolv_conf("", Network::Host).contains("nameserver 8.8.4.4"));
    }
}
