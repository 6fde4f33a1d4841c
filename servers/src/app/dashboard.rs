//! `GET /dashboard`: a live view of `/stats` in the browser.
//!
//! One self-contained HTML page (its CSS and script inline, the chart drawn
//! on a canvas by hand) compiled into the binary, so every variant serves
//! the same bytes with no file to install and nothing to fetch from
//! elsewhere. The page polls `/stats` once a second and computes every rate
//! itself, from the deltas of two bodies over the difference of their
//! `uptime_seconds`: the server's clock, not the browser's timer, which
//! drifts and stalls in background tabs. `/stats` therefore carries
//! counters and gauges only.
//!
//! The Content-Security-Policy holds the page to that: it may run its own
//! inline script and style and talk to this server, nothing else.

use crate::http::response::{ConnHeader, Outbox};

/// The page (see `dashboard.html`).
const PAGE: &[u8] = include_bytes!("dashboard.html");

/// Every poll must reach the server, and a stale copy of the page would
/// show a script out of step with the `/stats` keys it reads.
const NO_STORE: &[u8] = b"Cache-Control: no-store";

/// Inline script and style, `/stats` from this origin, the `data:` icon.
const CSP: &[u8] = b"Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// Queue the page (its head only for HEAD). Returns the status.
pub fn respond(out: &mut Outbox, conn: ConnHeader, head_only: bool) -> u16 {
    super::simple(
        out,
        200,
        "text/html; charset=utf-8",
        PAGE,
        conn,
        &[NO_STORE, CSP],
        head_only,
    )
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    /// The page names no other origin and loads nothing: its only request
    /// is the `/stats` poll (the CSP would block anything else, silently).
    #[test]
    fn page_is_self_contained() {
        let page = std::str::from_utf8(PAGE).expect("the page is UTF-8");
        for needle in [
            "http:",
            "https:",
            "src=",
            "url(",
            "@import",
            "XMLHttpRequest",
        ] {
            assert!(!page.contains(needle), "the page contains {needle:?}");
        }
        assert_eq!(page.matches("fetch(").count(), 1);
        assert!(page.contains("fetch(\"/stats\""));
        assert_eq!(page.matches("<link").count(), 1);
        assert!(page.contains("<link rel=\"icon\" href=\"data:,\">"));
    }
}
