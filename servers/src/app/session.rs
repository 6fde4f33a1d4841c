//! The session store behind `GET /session`: a random id in a `sid` cookie
//! and a visit count per id.
//!
//! Ids are issued by the server only ([`sys::random::token`]: 128 bits from
//! `getrandom`). A cookie is honoured only if it has exactly that shape and
//! names a session the store holds; anything else (unknown, malformed,
//! quoted, carrying `\r\n`) starts a new session with a new id. So a
//! client-chosen id is never adopted (no session fixation) and the client's
//! bytes are never echoed into a header or body.
//!
//! One `Mutex` around the map: a visit is a hash lookup and a B-tree update,
//! well under a microsecond, and `/session` is not a benchmark workload, so
//! contention is not worth trading away an exact, global bound and exact
//! LRU order (a sharded map would bound and order each shard separately).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::sys;

/// The cookie's name.
pub const COOKIE_NAME: &str = "sid";

/// The outcome of one visit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visit {
    /// The session id: 32 lower-case hex digits, always server-issued.
    pub id: String,
    /// Visits counted for this session, this one included.
    pub visits: u64,
    /// A new session was started: the response must set the cookie.
    pub is_new: bool,
}

impl Visit {
    /// The `/session` body: `{"session":"<id>","visits":N}`. The id is
    /// hex, so it needs no JSON escaping.
    pub fn to_json(&self) -> String {
        format!("{{\"session\":\"{}\",\"visits\":{}}}", self.id, self.visits)
    }
}

/// The header line (without CRLF) that hands `id` to the client:
/// `Set-Cookie: sid=<id>; Path=/; HttpOnly; SameSite=Lax`. `HttpOnly` keeps
/// scripts from reading it, `SameSite=Lax` keeps it off cross-site
/// subrequests. No `Max-Age`: the cookie lives as long as the browser session.
///
/// # Panics
/// If `id` is not a server-issued id: anything else in a header would be an
/// injection bug, and ids come from [`Visit::id`] only.
pub fn set_cookie_header(id: &str) -> String {
    assert!(sys::random::is_token(id.as_bytes()), "not a session id");
    format!("Set-Cookie: {COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Lax")
}

/// The value of the first `sid` cookie in a `Cookie` header, as sent.
///
/// RFC 6265 §5.4: pairs are separated by `;` and optional whitespace; a pair
/// is `name=value`; names are case-sensitive. Only the first `sid` counts
/// (the most specific path, in the order browsers send them); a later one
/// does not rescue a malformed first one.
pub fn cookie_value<'h>(header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Thread-safe, bounded session store.
///
/// At most `capacity` sessions; a new one beyond that evicts the least
/// recently visited. A client whose session was evicted simply gets a new
/// one, with a count starting again at 1.
pub struct Sessions {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// Sessions by id, plus the same ids ordered by last visit. A visit stamps
/// the session with the next tick; the oldest stamp is the LRU victim.
#[derive(Default)]
struct Inner {
    by_id: HashMap<u128, Session>,
    by_age: BTreeMap<u64, u128>,
    tick: u64,
}

struct Session {
    visits: u64,
    stamp: u64,
}

impl Sessions {
    /// A store for at most `capacity` sessions (at least 1).
    pub fn new(capacity: usize) -> Sessions {
        Sessions {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Count a visit from a client that sent `cookie_header` (the `Cookie`
    /// field value, or `None`). If a client sent several `Cookie` fields,
    /// pass them joined with `"; "` (RFC 6265 §5.4 allows only one).
    ///
    /// # Panics
    /// If `getrandom` fails, which on the kernels this crate supports
    /// (`openat2` needs 5.6) cannot happen once the system has booted.
    pub fn visit(&self, cookie_header: Option<&[u8]>) -> Visit {
        let known = cookie_header
            .and_then(|h| cookie_value(h, COOKIE_NAME))
            .filter(|v| sys::random::is_token(v))
            .and_then(|v| u128::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok());
        if let Some(id) = known {
            if let Some(visits) = self.lock().touch(id) {
                return Visit {
                    id: render(id),
                    visits,
                    is_new: false,
                };
            }
        }
        self.start()
    }

    /// Sessions currently held.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most sessions held before the oldest are forgotten.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A new session with one visit. The id is drawn outside the lock (a
    /// syscall), and drawn again in the never-seen case that it is taken.
    fn start(&self) -> Visit {
        loop {
            let token = sys::random::token().expect("getrandom failed");
            let id = u128::from_str_radix(&token, 16).expect("token is hex");
            let mut inner = self.lock();
            if inner.by_id.contains_key(&id) {
                continue;
            }
            while inner.by_id.len() >= self.capacity {
                inner.evict_oldest();
            }
            let stamp = inner.next_tick();
            inner.by_id.insert(id, Session { visits: 1, stamp });
            inner.by_age.insert(stamp, id);
            return Visit {
                id: token,
                visits: 1,
                is_new: true,
            };
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that matters more than refusing all further sessions.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Count a visit to a held session and mark it most recently used.
    fn touch(&mut self, id: u128) -> Option<u64> {
        let stamp = self.next_tick();
        let s = self.by_id.get_mut(&id)?;
        let old = std::mem::replace(&mut s.stamp, stamp);
        s.visits += 1;
        let visits = s.visits;
        self.by_age.remove(&old);
        self.by_age.insert(stamp, id);
        Some(visits)
    }

    fn evict_oldest(&mut self) {
        if let Some((_, id)) = self.by_age.pop_first() {
            self.by_id.remove(&id);
        }
    }
}

fn render(id: u128) -> String {
    format!("{id:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing() {
        let h = b"a=b; sid=first ;sid=second;c=d";
        assert_eq!(cookie_value(h, "sid"), Some(&b"first"[..]));
        assert_eq!(cookie_value(b"  sid = x ", "sid"), Some(&b"x"[..]));
        assert_eq!(cookie_value(b"SID=x; asid=y; sidx=z", "sid"), None);
        assert_eq!(cookie_value(b"sid", "sid"), None);
        assert_eq!(cookie_value(b"sid=", "sid"), Some(&b""[..]));
        assert_eq!(cookie_value(b"", "sid"), None);
    }

    #[test]
    fn ids_round_trip_with_leading_zeros() {
        assert_eq!(render(1), "00000000000000000000000000000001");
        assert_eq!(
            u128::from_str_radix(&render(1 << 100), 16).unwrap(),
            1 << 100
        );
    }

    #[test]
    fn lru_order_survives_touches() {
        let s = Sessions::new(2);
        let a = s.visit(None);
        let b = s.visit(None);
        let cookie = |v: &Visit| format!("sid={}", v.id).into_bytes();
        // Touch a, so b is now the least recently used.
        assert_eq!(s.visit(Some(&cookie(&a))).visits, 2);
        let _c = s.visit(None);
        assert_eq!(s.len(), 2);
        assert_eq!(s.visit(Some(&cookie(&a))).visits, 3);
        assert!(s.visit(Some(&cookie(&b))).is_new, "b was evicted");
    }

    #[test]
    #[should_panic(expected = "not a session id")]
    fn set_cookie_refuses_foreign_values() {
        set_cookie_header("x\r\nSet-Cookie: evil=1");
    }
}
