//! The command line every variant shares: options that must work, and bad
//! input that must fail with a message naming the fix. Every check runs
//! against every variant of the catalog (`servers::variants::VARIANTS`), in
//! one test per check: the checks take milliseconds, and a failure names its
//! variant.

mod common;

use std::process::Command;

use common::{bin_path, variants::VARIANTS, Server, ServerOpts};

fn run(variant: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin_path(variant))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run server binary");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn help_states_the_model_and_the_shared_options() {
    for v in VARIANTS {
        let (ok, text) = run(v.name, &["--help"]);
        assert!(ok, "{} --help failed: {text}", v.name);
        for opt in [
            "--port",
            "--root",
            "--keepalive-timeout",
            "--header-timeout",
            "--keepalive-requests",
            "--cpus",
        ] {
            assert!(text.contains(opt), "{} --help lacks {opt}:\n{text}", v.name);
        }
    }
}

#[test]
fn help_lists_the_variants_extra_flags() {
    for v in VARIANTS {
        let (ok, text) = run(v.name, &["--help"]);
        assert!(ok, "{} --help failed: {text}", v.name);
        for flag in v.extra_flags {
            // A flag as an option name, not as part of a longer one
            // (`--work-queue` must not be satisfied by `--work-queue-x`).
            let listed = text.match_indices(flag).any(|(i, _)| {
                !text[i + flag.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
            assert!(
                listed,
                "{} --help lacks {flag}, one of its catalog extra_flags {:?}:\n{text}",
                v.name, v.extra_flags
            );
        }
    }
}

#[test]
fn bad_flags_fail_with_a_message_naming_the_fix() {
    for v in VARIANTS.iter().map(|v| v.name) {
        let (ok, text) = run(v, &["--port", "0", "--cpus", "x-1"]);
        assert!(
            !ok && text.contains("expected e.g. 0 or 0,2 or 0-3"),
            "{v}: {text}"
        );
        let (ok, text) = run(v, &["--port", "0", "--keepalive-timeout", "5 parsecs"]);
        assert!(!ok && text.contains("use us, ms, s, m or h"), "{v}: {text}");
        let (ok, text) = run(v, &["--port", "0", "--root", "/nonexistent/docroot"]);
        assert!(
            !ok && text.contains("pass an existing directory"),
            "{v}: {text}"
        );
        let (ok, text) = run(v, &["--port", "0", "--cpus", "4095"]);
        assert!(!ok && text.contains("see `nproc`"), "{v}: {text}");
    }
}

#[test]
fn port_in_use_is_reported_with_the_way_out() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for v in VARIANTS.iter().map(|v| v.name) {
        let (ok, text) = run(v, &["--port", &port]);
        assert!(!ok && text.contains("try --port 0"), "{v}: {text}");
    }
}

#[test]
fn cpus_pins_every_thread() {
    let root = tempfile::tempdir().unwrap();
    for v in VARIANTS.iter().map(|v| v.name) {
        let opts = ServerOpts {
            extra: vec!["--cpus".into(), "0".into()],
            ..ServerOpts::default()
        };
        let mut server = Server::start(v, root.path(), &opts);
        server
            .conn()
            .get("/plaintext")
            .expect_status(200, "pinned server answers");
        let tasks = std::fs::read_dir(format!("/proc/{}/task", server.pid)).unwrap();
        for task in tasks {
            let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
            let allowed = status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .unwrap()
                .trim()
                .to_string();
            assert_eq!(allowed, "0", "{v}: a thread is not pinned to CPU 0");
        }
        server.signal(libc::SIGTERM);
        let status = server.wait_exit(std::time::Duration::from_secs(10));
        assert!(
            status.is_some_and(|s| s.success()),
            "{v}: SIGTERM exit {status:?}"
        );
    }
}
