//! Which clients a comparison runs: `--clients` as given, or every one
//! that is installed (loadgen always, being what the others are measured
//! against). A client left out because it is missing is one line saying how
//! to add it; one asked for by name and missing stops the run before
//! anything is measured.

use std::path::PathBuf;

use crate::rig::client::ClientKind;

/// The clients to run, in the order they run within a round.
#[derive(Debug, Clone, PartialEq)]
pub struct Roster {
    /// Each client and its binary.
    pub clients: Vec<(ClientKind, PathBuf)>,
    /// Lines for the user: a client skipped or added.
    pub notes: Vec<String>,
}

/// The roster for `--clients requested` (empty: the default), with `find`
/// locating each client's binary.
pub fn select(
    requested: &[String],
    find: impl Fn(ClientKind) -> Option<PathBuf>,
) -> Result<Roster, String> {
    let explicit = !requested.is_empty();
    let mut kinds = if explicit {
        parse(requested)?
    } else {
        ClientKind::ALL.to_vec()
    };
    let mut notes = Vec::new();
    if !kinds.contains(&ClientKind::Loadgen) {
        kinds.push(ClientKind::Loadgen);
        notes.push("loadgen is always measured (the ratios are against it): added last".into());
    }
    let mut clients = Vec::new();
    for kind in kinds {
        match find(kind) {
            Some(path) => clients.push((kind, path)),
            None if explicit || kind == ClientKind::Loadgen => return Err(missing(kind)),
            None => notes.push(format!(
                "{} not installed: `{}` adds it",
                kind.name(),
                kind.install_hint()
            )),
        }
    }
    Ok(Roster { clients, notes })
}

/// `--clients` names as kinds: unknown or repeated names are refused.
fn parse(requested: &[String]) -> Result<Vec<ClientKind>, String> {
    let mut kinds = Vec::new();
    for name in requested {
        let kind = ClientKind::from_name(name.trim()).ok_or_else(|| {
            format!(
                "unknown client '{name}' in --clients (expected any of: {})",
                names()
            )
        })?;
        if kinds.contains(&kind) {
            return Err(format!("--clients names {name} twice"));
        }
        kinds.push(kind);
    }
    Ok(kinds)
}

/// The message for a client asked for (by --clients, or by
/// `loadgen-vs-wrk`, which names wrk) but not found.
fn missing(kind: ClientKind) -> String {
    match kind {
        ClientKind::Loadgen => format!(
            "loadgen not found next to the harness binary: build it with `{}`",
            kind.install_hint()
        ),
        ClientKind::Oha => format!(
            "oha not found on PATH or in ~/.cargo/bin: install it with `{}`",
            kind.install_hint()
        ),
        ClientKind::Wrk => format!(
            "wrk not found on PATH: install it with `{}`",
            kind.install_hint()
        ),
    }
}

/// `wrk, oha, loadgen`.
pub fn names() -> String {
    ClientKind::ALL.map(ClientKind::name).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClientKind::{Loadgen, Oha, Wrk};

    /// A finder that knows the binaries of `installed`.
    fn installed(installed: &[ClientKind]) -> impl Fn(ClientKind) -> Option<PathBuf> + '_ {
        move |k| {
            installed
                .contains(&k)
                .then(|| PathBuf::from(format!("/bin/{}", k.name())))
        }
    }

    fn kinds(r: &Roster) -> Vec<ClientKind> {
        r.clients.iter().map(|(k, _)| *k).collect()
    }

    fn list(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn the_default_is_every_installed_client_in_a_fixed_order() {
        let r = select(&[], installed(&[Loadgen, Oha, Wrk])).unwrap();
        assert_eq!(kinds(&r), [Wrk, Oha, Loadgen]);
        assert!(r.notes.is_empty());
        assert_eq!(r.clients[1].1, PathBuf::from("/bin/oha"));
    }

    #[test]
    fn a_missing_oha_is_a_note_by_default() {
        let r = select(&[], installed(&[Loadgen, Wrk])).unwrap();
        assert_eq!(kinds(&r), [Wrk, Loadgen]);
        assert_eq!(r.notes, ["oha not installed: `cargo install oha` adds it"]);
    }

    #[test]
    fn loadgen_alone_when_nothing_else_is_installed() {
        let r = select(&[], installed(&[Loadgen])).unwrap();
        assert_eq!(kinds(&r), [Loadgen]);
        assert_eq!(r.notes.len(), 2);
        assert!(r.notes[0].contains("apt-get install wrk"));
    }

    #[test]
    fn the_given_order_is_kept_and_loadgen_is_added_last() {
        let all = installed(&[Loadgen, Oha, Wrk]);
        let r = select(&list("loadgen,oha"), &all).unwrap();
        assert_eq!(kinds(&r), [Loadgen, Oha]);
        let r = select(&list("oha,wrk"), &all).unwrap();
        assert_eq!(kinds(&r), [Oha, Wrk, Loadgen]);
        assert!(r.notes[0].starts_with("loadgen is always measured"));
    }

    #[test]
    fn refusals_name_the_fix() {
        let cases: [(&str, &[ClientKind], &str); 5] = [
            (
                "oha",
                &[Loadgen, Wrk],
                "install it with `cargo install oha`",
            ),
            (
                "wrk",
                &[Loadgen, Oha],
                "install it with `apt-get install wrk`",
            ),
            (
                "wrk",
                &[Wrk],
                "build it with `cargo build --release -p harness`",
            ),
            (
                "ab",
                &[Loadgen],
                "unknown client 'ab' in --clients (expected any of: wrk, oha, loadgen)",
            ),
            (
                "wrk,oha,wrk",
                &[Loadgen, Oha, Wrk],
                "--clients names wrk twice",
            ),
        ];
        for (asked, have, why) in cases {
            let err = select(&list(asked), installed(have)).unwrap_err();
            assert!(err.contains(why), "--clients {asked}: {err}");
        }
    }

    #[test]
    fn loadgen_missing_stops_even_the_default() {
        let err = select(&[], installed(&[Wrk, Oha])).unwrap_err();
        assert!(err.starts_with("loadgen not found"), "{err}");
    }
}
