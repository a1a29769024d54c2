//! The values instructions write into an image config, checked and
//! normalised as BuildKit's dispatcher does it — EXPOSE port specs, STOPSIGNAL
//! names, WORKDIR and destination paths — and Go's formatting of values in
//! history entries (`%q` of a list, `time.Duration`, RFC 3339 times).
//!
//! Pure string functions: no I/O, no knowledge of stages or instructions, and
//! it must not import the lexer, solver, snapshotter or runner layers.

use std::net::IpAddr;

/// Why an EXPOSE word was rejected; texts are BuildKit's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port: {}: {reason}", crate::dockerfile::node::go_quote(.spec))]
    Spec { spec: String, reason: String },
    #[error("invalid IP address: {0}")]
    Ip(String),
    #[error("invalid IP address {ip}: address {ip}:: missing ']' in address")]
    UnclosedIpv6 { ip: String },
    #[error("invalid containerPort: {0}")]
    ContainerPort(String),
    #[error("invalid hostPort: {0}")]
    HostPort(String),
    #[error("invalid ranges specified for container and host Ports: {container} and {host}")]
    RangeMismatch { container: String, host: String },
}

/// Turns EXPOSE words (`80`, `53/UDP`, `8000-8002`, even the
/// `ip:host:container` form BuildKit tolerates) into `port/proto` keys, one
/// per port of a range, protocol lower-cased and `tcp` by default.
pub fn parse_ports(specs: &[String]) -> Result<Vec<String>, PortError> {
    let mut out = Vec::new();
    for spec in specs {
        out.extend(parse_port(spec)?);
    }
    Ok(out)
}

fn parse_port(spec: &str) -> Result<Vec<String>, PortError> {
    let (ip, host_port, container) = split_parts(spec);
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let fail = |reason: &str| PortError::Spec {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    if port.is_empty() {
        return Err(fail("no port specified"));
    }
    let proto = match proto.to_lowercase().as_str() {
        "" => "tcp".to_string(),
        p @ ("tcp" | "udp" | "sctp") => p.to_string(),
        _ => return Err(fail(&format!("invalid proto: {proto}"))),
    };

    let mut ip = ip.to_string();
    if ip.starts_with('[') {
        // A bracketed IPv6 address loses its brackets before the check.
        match ip.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(inner) => ip = inner.to_string(),
            None => return Err(PortError::UnclosedIpv6 { ip }),
        }
    }
    if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
        return Err(PortError::Ip(ip));
    }

    let (start, end) =
        parse_port_range(port).ok_or_else(|| PortError::ContainerPort(port.to_string()))?;
    if !host_port.is_empty() {
        let (host_start, host_end) = parse_port_range(host_port)
            .ok_or_else(|| PortError::HostPort(host_port.to_string()))?;
        // A host range may only differ in size when the container side is
        // a single port (it is then the pool to allocate from).
        if end - start != host_end - host_start && end != start {
            return Err(PortError::RangeMismatch {
                container: port.to_string(),
                host: host_port.to_string(),
            });
        }
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `ip:host:container`, with everything before the last two `:`-separated
/// fields taken as the IP (so unbracketed IPv6 works).
fn split_parts(spec: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [container] => ("", "", container),
        [host, container] => ("", host, container),
        _ => {
            let container_at = spec.rfind(':').unwrap_or(0);
            let host_at = spec[..container_at].rfind(':').unwrap_or(0);
            (
                &spec[..host_at],
                &spec[host_at + 1..container_at],
                &spec[container_at + 1..],
            )
        }
    }
}

/// `N` or `N-M` with `N <= M`, each in 0–65535.
fn parse_port_range(ports: &str) -> Option<(u32, u32)> {
    if ports.is_empty() {
        return None;
    }
    let (start, end) = match ports.split_once('-') {
        Some((s, e)) => (s, Some(e)),
        None => (ports, None),
    };
    let start_port = parse_port_number(start)?;
    match end {
        None => Some((start_port, start_port)),
        Some(e) if e == start => Some((start_port, start_port)),
        Some(e) => {
            let end_port = parse_port_number(e)?;
            (end_port >= start_port).then_some((start_port, end_port))
        }
    }
}

fn parse_port_number(raw: &str) -> Option<u32> {
    let n: i64 = go_atoi(raw)?;
    u32::try_from(n).ok().filter(|&p| p <= 65535)
}

/// Go's `strconv.Atoi`/`ParseInt(s, 10, 64)`: optional sign, ASCII digits,
/// nothing else.
pub fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Signal names Linux knows, without `SIG`, as moby's signal table lists
/// them (the build host's table decides, as in BuildKit).
const SIGNALS: [&str; 34] = [
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
];

/// Checks a STOPSIGNAL value: a non-zero number, or a signal name with or
/// without `SIG`, any case (`RTMIN+3` and `RTMAX-2` included).
pub fn validate_signal(raw: &str) -> Result<(), String> {
    let invalid = || format!("invalid signal: {raw}");
    if let Some(n) = go_atoi(raw) {
        return if n == 0 { Err(invalid()) } else { Ok(()) };
    }
    // Only an all-digit word is a number to Go; "+x" falls through here.
    if raw.bytes().all(|b| b.is_ascii_digit()) && !raw.is_empty() {
        return Err(invalid());
    }
    let upper = raw.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let realtime = |prefix: &str, sign: char, max: u32| match name.strip_prefix(prefix) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(sign)
            .and_then(|n| {
                n.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .map(|n| rest == format!("{sign}{n}"))
            })
            .unwrap_or(false),
        None => false,
    };
    if SIGNALS.contains(&name) || realtime("RTMIN", '+', 15) || realtime("RTMAX", '-', 14) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// The new working directory after `WORKDIR wd` with `current` in force,
/// as BuildKit computes it for Linux: a relative `wd` is joined to the
/// current directory and cleaned; an absolute one is kept exactly as
/// written (BuildKit does not clean it); an empty one keeps the current.
pub fn normalize_workdir(current: &str, wd: &str) -> String {
    let parent = absolute_parent(current);
    if wd.is_empty() {
        return parent;
    }
    if wd.starts_with('/') {
        return wd.to_string();
    }
    path_join(&[&parent, wd])
}

/// A COPY/ADD destination resolved against the working directory, keeping
/// a trailing `/` (and a trailing `/.`) that says "into this directory".
pub fn resolve_dest(workdir: &str, dest: &str) -> String {
    let (parent, path) = if dest.starts_with('/') {
        ("/".to_string(), dest)
    } else if dest.is_empty() || dest == "." {
        (absolute_parent(workdir), "./")
    } else {
        (absolute_parent(workdir), dest)
    };
    let mut out = if path.starts_with('/') {
        path.to_string()
    } else {
        path_join(&[&parent, path])
    };
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    } else if path.ends_with("/.") {
        if out != "/" {
            out.push('/');
        }
        out.push('.');
    }
    out
}

fn absolute_parent(current: &str) -> String {
    match current {
        "" => "/".to_string(),
        c if c.starts_with('/') => c.to_string(),
        c => path_join(&["/", c]),
    }
}

/// Go's `path.Join`: the non-empty elements joined by `/`, then cleaned;
/// empty if all are empty.
pub fn path_join(elems: &[&str]) -> String {
    let joined: Vec<&str> = elems.iter().copied().filter(|e| !e.is_empty()).collect();
    if joined.is_empty() {
        return String::new();
    }
    path_clean(&joined.join("/"))
}

/// Go's `path.Clean`: the shortest equivalent path, lexically.
pub fn path_clean(p: &str) -> String {
    if p.is_empty() {
        return ".".to_string();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let body = parts.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// Go's `fmt` `%q` of a `[]string`: `["a" "b c"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| crate::dockerfile::node::go_quote(s))
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `fmt` `%v` of a `[]string`: `[a b c]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`: `0s`, `1.5s`, `1m30s`, `1h0m0s`,
/// `100ms`, `2µs`, `5ns`.
pub fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = if u < 1_000_000_000 {
        match u {
            0 => return "0s".to_string(),
            u if u < 1_000 => format!("{u}ns"),
            u if u < 1_000_000 => format!("{}µs", fraction(u, 3)),
            u => format!("{}ms", fraction(u, 6)),
        }
    } else {
        let secs = u / 1_000_000_000;
        let frac = fraction(u % 1_000_000_000, 9);
        // `fraction` of the sub-second part yields "0.xxx" or "0".
        let frac = frac.strip_prefix('0').unwrap_or(&frac).to_string();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}{frac}s")
        } else if m > 0 {
            format!("{m}m{s}{frac}s")
        } else {
            format!("{s}{frac}s")
        }
    };
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v / 10^prec` with the fractional digits, trailing zeros dropped.
fn fraction(v: u64, prec: u32) -> String {
    let scale = 10u64.pow(prec);
    let (whole, frac) = (v / scale, v % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:0width$}", width = prec as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A Unix time as Go marshals a UTC `time.Time` to JSON:
/// `2023-11-14T22:13:20Z`.
pub fn rfc3339_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(specs: &[&str]) -> Result<Vec<String>, String> {
        let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
        parse_ports(&specs).map_err(|e| e.to_string())
    }

    #[test]
    fn expose_normalises_like_buildkit() {
        for (input, want) in [
            (&["80"][..], &["80/tcp"][..]),
            (&["53/UDP"], &["53/udp"]),
            (
                &["1234/tcp", "2345/udp", "3456/sctp"],
                &["1234/tcp", "2345/udp", "3456/sctp"],
            ),
            (
                &["1234:1234/tcp", "0.0.0.0:2345:2345/udp"],
                &["1234/tcp", "2345/udp"],
            ),
            (&["8000-8002"], &["8000/tcp", "8001/tcp", "8002/tcp"]),
            (&["7-7/udp"], &["7/udp"]),
            (
                &["0.0.0.0:1234-1235:3333-3334/tcp"],
                &["3333/tcp", "3334/tcp"],
            ),
            (&["[2001:4860:0:2001::68]::333"], &["333/tcp"]),
            (&["[::1]:80:80"], &["80/tcp"]),
            (&["2001:4860:0:2001::68::333"], &["333/tcp"]),
            (&["::1:80:80"], &["80/tcp"]),
            (&["::::80"], &["80/tcp"]),
            (&["1000-1002:80"], &["80/tcp"]),
            (&["+80"], &["80/tcp"]),
        ] {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(ports(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn expose_rejects_like_buildkit() {
        for (input, want) in [
            ("", r#"invalid port: "": no port specified"#),
            (
                "0.0.0.0:1234-1235:/tcp",
                r#"invalid port: "0.0.0.0:1234-1235:/tcp": no port specified"#,
            ),
            (
                "0.0.0.0:1234-1235:",
                r#"invalid port: "0.0.0.0:1234-1235:": no port specified"#,
            ),
            ("80/tcpx", r#"invalid port: "80/tcpx": invalid proto: tcpx"#),
            ("localhost:1234:1234/tcp", "invalid IP address: localhost"),
            ("abc", "invalid containerPort: abc"),
            ("65536", "invalid containerPort: 65536"),
            ("-1", "invalid containerPort: -1"),
            ("90-80", "invalid containerPort: 90-80"),
            ("x:80", "invalid hostPort: x"),
            (
                "1-3:1-2",
                "invalid ranges specified for container and host Ports: 1-2 and 1-3",
            ),
        ] {
            assert_eq!(ports(&[input]), Err(want.to_string()), "{input:?}");
        }
    }

    #[test]
    fn signals() {
        for ok in [
            "SIGTERM",
            "term",
            "Sigkill",
            "9",
            "-1",
            "RTMIN",
            "SIGRTMIN+15",
            "RTMAX-14",
            "rtmax",
        ] {
            assert_eq!(validate_signal(ok), Ok(()), "{ok}");
        }
        for bad in ["0", "SIGNOPE", "", "RTMIN+16", "RTMAX-0", "RTMIN+01", "SIG"] {
            assert_eq!(
                validate_signal(bad),
                Err(format!("invalid signal: {bad}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn workdir_resolution() {
        for (current, wd, want) in [
            ("/", "/app", "/app"),
            ("/app", "sub", "/app/sub"),
            ("/app", "../x/./y", "/x/y"),
            ("/app", "", "/app"),
            ("", "rel", "/rel"),
            ("rel", "rel", "/rel/rel"),
            // Absolute paths are kept verbatim, as BuildKit keeps them.
            ("/a", "/b/../c/", "/b/../c/"),
            ("/app", "sub/", "/app/sub"),
        ] {
            assert_eq!(normalize_workdir(current, wd), want, "{current} + {wd}");
        }
    }

    #[test]
    fn dest_resolution_keeps_directory_markers() {
        for (wd, dest, want) in [
            ("/app", ".", "/app/"),
            ("/app", "", "/app/"),
            ("/", ".", "/"),
            ("/app", "sub/", "/app/sub/"),
            ("/app", "f", "/app/f"),
            ("/app", "/abs", "/abs"),
            ("/app", "x/.", "/app/x/."),
            ("/", "./", "/"),
        ] {
            assert_eq!(resolve_dest(wd, dest), want, "{wd} + {dest}");
        }
    }

    #[test]
    fn go_path_clean() {
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/../c", "a/c"),
            ("/../a", "/a"),
            ("../a/..", ".."),
            ("a//b/./", "a/b"),
        ] {
            assert_eq!(path_clean(input), want, "{input}");
        }
        assert_eq!(path_join(&["", ""]), "");
        assert_eq!(path_join(&["/a", "b/"]), "/a/b");
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5), "5ns");
        assert_eq!(go_duration(2_500), "2.5µs");
        assert_eq!(go_duration(100_000_000), "100ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(-1_000_000_000), "-1s");
        assert_eq!(
            go_quoted_list(&["/bin/sh".into(), "-c".into(), "echo \"hi\"".into()]),
            r#"["/bin/sh" "-c" "echo \"hi\""]"#
        );
        assert_eq!(go_quoted_list(&[]), "[]");
        assert_eq!(go_list(&["/a".into(), "/b".into()]), "[/a /b]");
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_501), "2023-11-14T22:21:41Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}
