//! The request, serialized once before the run and shared read-only by
//! every thread: sending it is a `send` of bytes that already exist, with no
//! formatting or allocation per request.

use std::sync::Arc;

/// One request's bytes repeated `pipeline` times back to back, so a batch of
/// `k` pipelined requests is the prefix `bytes[..k * one_len]`, one `send`.
#[derive(Debug, Clone)]
pub struct RequestBytes {
    /// Every pipelined copy back to back, shared by the threads.
    pub bytes: Arc<[u8]>,
    /// Length of one request.
    pub one_len: usize,
}

impl RequestBytes {
    /// The first `k` copies, i.e. a batch of `k` requests.
    pub fn batch(&self, k: usize) -> &[u8] {
        &self.bytes[..k * self.one_len]
    }
}

/// Serialize `METHOD path HTTP/1.1`, `Host` (unless the user supplied one),
/// the user's headers in order, and `Content-Length` plus the body when
/// there is a body (unless the user supplied a length themselves).
pub fn build(
    method: &str,
    path: &str,
    authority: &str,
    headers: &[String],
    body: Option<&[u8]>,
    pipeline: usize,
) -> RequestBytes {
    let has = |name: &str| {
        headers.iter().any(|h| {
            h.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    let mut one = format!("{method} {path} HTTP/1.1\r\n");
    if !has("host") {
        one.push_str(&format!("Host: {authority}\r\n"));
    }
    for h in headers {
        one.push_str(h.trim());
        one.push_str("\r\n");
    }
    if let Some(body) = body {
        if !has("content-length") {
            one.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
    }
    one.push_str("\r\n");
    let mut one = one.into_bytes();
    if let Some(body) = body {
        one.extend_from_slice(body);
    }
    let one_len = one.len();
    RequestBytes {
        bytes: one.repeat(pipeline.max(1)).into(),
        one_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_with_default_host() {
        let r = build("GET", "/plaintext", "127.0.0.1:8080", &[], None, 1);
        assert_eq!(
            &*r.bytes,
            b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
    }

    #[test]
    fn user_host_replaces_default_and_body_gets_length() {
        let headers = vec!["host: example".to_string(), "X-A: 1".to_string()];
        let r = build("POST", "/upload", "1.2.3.4", &headers, Some(b"abc"), 1);
        assert_eq!(
            &*r.bytes,
            b"POST /upload HTTP/1.1\r\nhost: example\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
        );
    }

    #[test]
    fn pipelined_copies_are_back_to_back() {
        let r = build("GET", "/", "h", &[], None, 3);
        assert_eq!(r.bytes.len(), 3 * r.one_len);
        assert_eq!(r.batch(2).len(), 2 * r.one_len);
        assert_eq!(&r.bytes[..r.one_len], &r.bytes[r.one_len..2 * r.one_len]);
    }
}
