//! Deterministic fuzzing of the request parser: random bytes and mutated
//! valid requests, fed whole and split. It must never panic, and a split feed
//! must agree with a whole feed.

use servers::http::parser::*;

/// xorshift64*: tiny, deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: Method,
    method_str: String,
    target: String,
    path: String,
    query: Option<String>,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    host: Option<String>,
    keep_alive: bool,
    body: Vec<u8>,
    len: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Partial,
    Complete(Summary),
    Err(Error),
}

/// Convert a result, checking the invariants every result must satisfy.
fn check(buf: &[u8], r: Result<Status<Request<'_>>, Error>) -> Outcome {
    match r {
        Ok(Status::Partial) => Outcome::Partial,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501 | 505));
            Outcome::Err(e)
        }
        Ok(Status::Complete(r)) => {
            assert!(
                r.len > 0 && r.len <= buf.len(),
                "len {} of {}",
                r.len,
                buf.len()
            );
            assert!(r.header_count <= MAX_HEADERS);
            assert!(
                r.path == "*" || r.path.starts_with('/'),
                "path {:?}",
                r.path
            );
            assert!(r.target.starts_with(r.path));
            if let Some(q) = r.query {
                // Only `http://host?q` has no path of its own in the target.
                assert!(
                    r.target == "/"
                        || (r.target.ends_with(q) && r.target.len() == r.path.len() + 1 + q.len())
                );
            } else {
                assert_eq!(r.target, r.path);
            }
            Outcome::Complete(Summary {
                method: r.method,
                method_str: r.method_str.to_string(),
                target: r.target.to_string(),
                path: r.path.to_string(),
                query: r.query.map(str::to_string),
                version: r.version,
                headers: r
                    .headers()
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
                host: r.host.map(str::to_string),
                keep_alive: r.keep_alive,
                body: r.body.to_vec(),
                len: r.len,
            })
        }
    }
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        b"GET /a/b?c=d&e HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz/1.0\r\nAccept: */*\r\nConnection: close\r\n\r\n".to_vec(),
        b"POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello".to_vec(),
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n4\r\ndefg\r\n0\r\nTrailer: t\r\n\r\n".to_vec(),
        b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec(),
        b"\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        b"GET http://h.example/p?q HTTP/1.1\r\nHost: h.example\r\n\r\n".to_vec(),
        b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nxyzGET / HTTP/1.1\r\nHost: b\r\n\r\n".to_vec(),
    ]
}

/// Fragments that make random inputs look HTTP-ish often enough to go deep.
const VOCAB: &[&[u8]] = &[
    b"GET ",
    b"POST ",
    b"PUT ",
    b"X ",
    b"/",
    b"/p?q=1",
    b"*",
    b"http://h/",
    b" HTTP/1.1",
    b" HTTP/1.0",
    b" HTTP/2.0",
    b"\r\n",
    b"\r\n\r\n",
    b"\r",
    b"\n",
    b"Host: a\r\n",
    b"Host:",
    b"Content-Length: ",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"0",
    b"5",
    b"ffff",
    b";e=1",
    b":",
    b" ",
    b"\t",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"abc",
    b"0\r\n\r\n",
];

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    let parts = rng.below(24);
    for _ in 0..parts {
        if rng.chance(3) {
            for _ in 0..rng.below(6) + 1 {
                v.push(rng.next() as u8);
            }
        } else {
            v.extend_from_slice(VOCAB[rng.below(VOCAB.len())]);
        }
    }
    v
}

fn line_spans(v: &[u8]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, &b) in v.iter().enumerate() {
        if b == b'\n' {
            spans.push((start, i + 1));
            start = i + 1;
        }
    }
    spans
}

fn mutate(rng: &mut Rng, v: &mut Vec<u8>) {
    match rng.below(8) {
        // Flip bits of a byte.
        0 if !v.is_empty() => {
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
        }
        // Replace a byte with a random or interesting one.
        1 if !v.is_empty() => {
            let i = rng.below(v.len());
            const INTERESTING: &[u8] = b"\r\n\t :;,0Ff\x00\x7f\x80\xff/?*";
            v[i] = if rng.chance(2) {
                rng.next() as u8
            } else {
                INTERESTING[rng.below(INTERESTING.len())]
            };
        }
        // Insert bytes.
        2 => {
            let i = rng.below(v.len() + 1);
            let frag: Vec<u8> = if rng.chance(2) {
                VOCAB[rng.below(VOCAB.len())].to_vec()
            } else {
                vec![rng.next() as u8]
            };
            v.splice(i..i, frag);
        }
        // Delete a range.
        3 if !v.is_empty() => {
            let i = rng.below(v.len());
            let n = 1 + rng.below((v.len() - i).min(8));
            v.drain(i..i + n);
        }
        // Truncate.
        4 => {
            let n = rng.below(v.len() + 1);
            v.truncate(n);
        }
        // Duplicate a line.
        5 => {
            let lines = line_spans(v);
            if !lines.is_empty() {
                let (a, b) = lines[rng.below(lines.len())];
                let line = v[a..b].to_vec();
                v.splice(b..b, line);
            }
        }
        // Delete a line.
        6 => {
            let lines = line_spans(v);
            if !lines.is_empty() {
                let (a, b) = lines[rng.below(lines.len())];
                v.drain(a..b);
            }
        }
        // Swap two lines.
        _ => {
            let lines = line_spans(v);
            if lines.len() >= 2 {
                let (a0, a1) = lines[rng.below(lines.len())];
                let (b0, b1) = lines[rng.below(lines.len())];
                if a1 <= b0 {
                    let mut out = v[..a0].to_vec();
                    out.extend_from_slice(&v[b0..b1]);
                    out.extend_from_slice(&v[a1..b0]);
                    out.extend_from_slice(&v[a0..a1]);
                    out.extend_from_slice(&v[b1..]);
                    *v = out;
                }
            }
        }
    }
}

fn limits_for(rng: &mut Rng) -> Limits {
    if rng.chance(3) {
        Limits {
            max_request_line: rng.below(48),
            max_header_bytes: rng.below(96),
            max_body_bytes: rng.below(16),
        }
    } else {
        Limits::default()
    }
}

/// Feed `buf` whole, then split at up to three random points, and compare.
/// Then keep parsing pipelined leftovers of the whole buffer.
fn exercise(rng: &mut Rng, limits: Limits, buf: &[u8]) {
    let whole = check(buf, Parser::new(limits).parse(buf));

    let mut p = Parser::new(limits);
    let mut cuts: Vec<usize> = (0..rng.below(3) + 1)
        .map(|_| rng.below(buf.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.push(buf.len());
    let mut result = Outcome::Partial;
    for &k in &cuts {
        // A fresh allocation each time, like a caller that reallocates.
        let prefix = buf[..k].to_vec();
        result = check(&prefix, p.parse(&prefix));
        if result != Outcome::Partial {
            break;
        }
    }
    assert_eq!(
        result,
        whole,
        "input {:?} cuts {cuts:?}",
        String::from_utf8_lossy(buf)
    );
    // The parser is reusable after any answer.
    assert_eq!(check(buf, p.parse(buf)), whole);

    // Pipelined follow-ups must not panic either.
    let mut off = 0;
    let mut p = Parser::new(limits);
    for _ in 0..4 {
        match p.parse(&buf[off..]) {
            Ok(Status::Complete(r)) => {
                assert!(r.len > 0 && r.len <= buf.len() - off);
                off += r.len;
            }
            _ => break,
        }
    }
}

#[test]
fn random_bytes() {
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    for _ in 0..60_000 {
        let limits = limits_for(&mut rng);
        let input = random_input(&mut rng);
        exercise(&mut rng, limits, &input);
    }
}

#[test]
fn fully_random_bytes() {
    let mut rng = Rng::new(42);
    for _ in 0..30_000 {
        let len = rng.below(64);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&mut rng, Limits::default(), &input);
    }
}

#[test]
fn mutated_samples() {
    let samples = samples();
    let mut rng = Rng::new(0xdead_beef_cafe_f00d);
    let mut completes = 0;
    for i in 0..120_000 {
        let mut v = samples[i % samples.len()].clone();
        for _ in 0..rng.below(4) + 1 {
            mutate(&mut rng, &mut v);
        }
        let limits = limits_for(&mut rng);
        if matches!(Parser::new(limits).parse(&v), Ok(Status::Complete(_))) {
            completes += 1;
        }
        exercise(&mut rng, limits, &v);
    }
    // The mutations keep a fair share of inputs valid, so the success paths
    // are exercised too.
    assert!(completes > 3000, "only {completes} complete");
}

#[test]
fn samples_byte_by_byte_with_mutations() {
    let samples = samples();
    let mut rng = Rng::new(7);
    for i in 0..600 {
        let mut v = samples[i % samples.len()].clone();
        if i >= samples.len() {
            mutate(&mut rng, &mut v);
        }
        let limits = limits_for(&mut rng);
        let whole = check(&v, Parser::new(limits).parse(&v));
        let mut p = Parser::new(limits);
        let mut result = Outcome::Partial;
        for k in 0..=v.len() {
            result = check(&v[..k], p.parse(&v[..k]));
            if result != Outcome::Partial {
                break;
            }
        }
        assert_eq!(result, whole, "input {:?}", String::from_utf8_lossy(&v));
    }
}
