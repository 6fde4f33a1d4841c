//! How many requests a server has answered, by its own count: the variants'
//! `/stats` (`total_requests`, shared by every process and thread of a
//! variant) and nginx's `stub_status` (the template serves it at `/stats`
//! too). Read just before and just after a measured window, it gives the
//! requests completed in that window itself — what a CPU time measured
//! over the same window must be divided by. The client's own count covers
//! its whole run (warm-up and ramp included), not the window.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::server::http_fetch;

/// The path both kinds of server answer with their counters.
pub const PATH: &str = "/stats";

/// One reading of the counter.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Requests answered so far.
    pub requests: u64,
    /// When the GET was sent.
    pub sent: Instant,
    /// When its answer had arrived.
    pub received: Instant,
}

impl Reading {
    /// The moment the count stands for: when its answer arrived. A server
    /// under load may leave the GET waiting — in the listen backlog, or for
    /// a free thread (`threadpool` and `prefork` serve 400 connections
    /// with a few threads: up to 2 s here) — but it reads the counter only
    /// once it serves the GET, and the answer is back within microseconds
    /// of that; the midpoint of the wait would place the count up to a
    /// second too early.
    pub fn at(&self) -> Instant {
        self.received
    }
}

/// Read the counter of the server at `addr`; `nginx` selects the format.
pub fn read(addr: SocketAddr, nginx: bool, timeout: Duration) -> Result<Reading, String> {
    let sent = Instant::now();
    let (status, body) = http_fetch(addr, PATH, timeout).map_err(|e| format!("GET {PATH}: {e}"))?;
    let received = Instant::now();
    if status != 200 {
        return Err(format!("GET {PATH} answered {status}"));
    }
    let text = String::from_utf8_lossy(&body);
    let requests = if nginx {
        stub_status_requests(&text)
    } else {
        stats_requests(&text)
    }?;
    Ok(Reading {
        requests,
        sent,
        received,
    })
}

/// Requests completed between two readings, scaled to a window of
/// `window` that lies inside them (the load is steady, so the rate between
/// the readings holds for the window).
pub fn in_window(first: &Reading, last: &Reading, window: Duration) -> f64 {
    let between = last.at().saturating_duration_since(first.at());
    if between.is_zero() {
        return 0.0;
    }
    let counted = last.requests.saturating_sub(first.requests) as f64;
    counted * window.as_secs_f64() / between.as_secs_f64()
}

/// `total_requests` of a variant's `/stats` JSON.
fn stats_requests(text: &str) -> Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("{PATH} is not JSON: {e}"))?;
    v.get("total_requests")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| format!("{PATH} has no number `total_requests`"))
}

/// The third figure of `stub_status`'s "accepts handled requests" line:
///
/// ```text
/// Active connections: 401
/// server accepts handled requests
///  812 812 96512
/// Reading: 0 Writing: 1 Waiting: 400
/// ```
fn stub_status_requests(text: &str) -> Result<u64, String> {
    let mut lines = text.lines();
    lines
        .find(|l| l.trim() == "server accepts handled requests")
        .and_then(|_| lines.next())
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("{PATH} is not nginx's stub_status: {:?}", first_line(text)))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_json() {
        let t = r#"{"total_requests":1234,"active_connections":3}"#;
        assert_eq!(stats_requests(t), Ok(1234));
        assert!(stats_requests("{}").unwrap_err().contains("total_requests"));
        assert!(stats_requests("nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn stub_status() {
        let t = "Active connections: 401 \nserver accepts handled requests\n 812 812 96512 \n\
                 Reading: 0 Writing: 1 Waiting: 400 \n";
        assert_eq!(stub_status_requests(t), Ok(96512));
        let err = stub_status_requests("<html>404</html>").unwrap_err();
        assert!(
            err.contains("stub_status") && err.contains("<html>"),
            "{err}"
        );
    }

    #[test]
    fn window_scaled_from_the_readings() {
        let t0 = Instant::now();
        let at = |ms: u64, requests: u64| Reading {
            requests,
            sent: t0 + Duration::from_millis(ms),
            received: t0 + Duration::from_millis(ms + 20),
        };
        // 2,000 requests over 2 s between the midpoints; a 1 s window inside.
        let n = in_window(&at(0, 1000), &at(2000, 3000), Duration::from_secs(1));
        assert!((n - 1000.0).abs() < 1e-6, "{n}");
        assert_eq!(in_window(&at(0, 5), &at(0, 9), Duration::from_secs(1)), 0.0);
    }
}
