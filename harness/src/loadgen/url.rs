//! The target URL: `http://HOST[:PORT][/path[?query]]`, HOST an IPv4
//! literal or `localhost`. No DNS: the load generator talks to a server the
//! user started, and a resolver would only add a way to fail.

use std::net::{Ipv4Addr, SocketAddrV4};

/// Where to connect and what to put in the request line and Host header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's address (IPv4, resolved once).
    pub addr: SocketAddrV4,
    /// The authority as written (`127.0.0.1:8080`), the default Host header.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parse a URL; the error is the whole message after `loadgen: `.
pub fn parse(url: &str) -> Result<Target, String> {
    let malformed = || format!("malformed URL '{url}': use http://HOST[:PORT]/path");
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err("https is not supported: use an http:// URL".into());
    }
    if !lower.starts_with("http://") {
        return Err(malformed());
    }
    let rest = &url["http://".len()..];
    // A fragment is never sent to the server.
    let rest = rest.split('#').next().unwrap_or("");
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty()
        || authority.contains('@')
        || path.bytes().any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(malformed());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(malformed)?,
        ),
        None => (authority, 80),
    };
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse::<Ipv4Addr>().map_err(|_| {
            format!("cannot use host '{host}' in '{url}': use an IPv4 address or localhost")
        })?
    };
    Ok(Target {
        addr: SocketAddrV4::new(ip, port),
        authority: authority.to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_path() {
        let t = parse("http://127.0.0.1:8080/plaintext?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/plaintext?x=1");
    }

    #[test]
    fn defaults_port_and_path() {
        let t = parse("http://localhost").unwrap();
        assert_eq!(t.addr, "127.0.0.1:80".parse().unwrap());
        assert_eq!(t.path, "/");
        assert_eq!(parse("http://localhost:81?q").unwrap().path, "/?q");
        assert_eq!(parse("http://1.2.3.4/a#frag").unwrap().path, "/a");
    }

    #[test]
    fn rejects_bad_urls() {
        assert_eq!(
            parse("https://127.0.0.1/").unwrap_err(),
            "https is not supported: use an http:// URL"
        );
        for bad in [
            "127.0.0.1:80",
            "http://",
            "http://1.2.3.4:x/",
            "http://1.2.3.4:0/",
            "http://1.2.3.4:99999/",
            "http://u@1.2.3.4/",
            "ftp://1.2.3.4/",
            "http://1.2.3.4/a b",
        ] {
            assert!(
                parse(bad).unwrap_err().starts_with("malformed URL"),
                "{bad}"
            );
        }
        assert!(parse("http://example.com/").unwrap_err().contains("IPv4"));
    }
}
