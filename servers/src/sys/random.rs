//! Randomness from the kernel (`getrandom(2)`) and the one token shape the
//! servers hand out: 128 random bits as 32 lower-case hex digits.
//!
//! Upload names and session ids both use it. Generating and validating the
//! shape side by side keeps the two from drifting apart: whatever a store
//! accepts from a client is exactly what it could have issued.

use std::io;

/// Length of a token: 128 bits, two hex digits per byte.
pub const TOKEN_LEN: usize = 32;

/// Fill `buf` from the kernel's CSPRNG (the `urandom` source). After early
/// boot this never blocks and never fails; `EINTR` and short reads (possible
/// for large buffers) are retried.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid writable memory of `rest.len()` bytes.
        match syscall!(getrandom(rest.as_mut_ptr().cast(), rest.len(), 0)) {
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A fresh random token: 16 bytes from [`fill`] as lower-case hex.
pub fn token() -> io::Result<String> {
    let mut raw = [0u8; TOKEN_LEN / 2];
    fill(&mut raw)?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(TOKEN_LEN);
    for b in raw {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    Ok(s)
}

/// Whether `s` has exactly the shape [`token`] produces. Upper-case hex is
/// refused too: one spelling per token, so two strings never name the same
/// thing.
pub fn is_token(s: &[u8]) -> bool {
    s.len() == TOKEN_LEN && s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_accepted_shape_and_differ() {
        let a = token().unwrap();
        let b = token().unwrap();
        assert!(is_token(a.as_bytes()) && is_token(b.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn shape_is_exact() {
        assert!(is_token(b"0123456789abcdef0123456789abcdef"));
        assert!(!is_token(b"0123456789ABCDEF0123456789abcdef"));
        assert!(!is_token(b"0123456789abcdef0123456789abcde"));
        assert!(!is_token(b"0123456789abcdef0123456789abcdef0"));
        assert!(!is_token(b"0123456789abcdef0123456789abcdeg"));
        assert!(!is_token(b""));
    }

    #[test]
    fn fills_large_buffers() {
        let mut buf = vec![0u8; 1 << 20];
        fill(&mut buf).unwrap();
        assert!(buf.iter().any(|&b| b != 0));
    }
}
