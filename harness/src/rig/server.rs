//! One server under test (a variant or nginx) as a child process: started
//! pinned to the server CPUs with its output in files, ready once GET /health
//! answers 200, stopped with SIGTERM (SIGKILL after a grace period). Dropping
//! a [`Server`] kills whatever is left of it.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::process;

/// How to start a server.
#[derive(Debug, Clone)]
pub struct ServerCmd {
    /// `epoll`, `nginx`, ...: for messages.
    pub name: String,
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// The CPUs it is confined to (before exec, so every thread and child inherits them).
    pub cpus: Vec<usize>,
    /// The port when fixed in advance (nginx); None: read it from the
    /// `listening on ADDR:PORT` line the variants print first.
    pub port: Option<u16>,
    /// Another log worth showing when it fails (nginx's error.log).
    pub extra_log: Option<PathBuf>,
}

/// Why a server is not ready.
#[derive(Debug)]
pub enum StartError {
    /// Ctrl-C while waiting.
    Interrupted,
    /// It exited with [`servers::variants::EXIT_UNAVAILABLE`]: the kernel
    /// refuses the interface it is built on (io_uring disabled, say). Its
    /// one stderr line says why; a sweep skips it rather than fail.
    Unavailable(String),
    /// What went wrong, and the tail of its stderr (and extra log).
    Failed {
        /// What went wrong.
        why: String,
        /// The end of its stderr, where the reason usually is.
        tail: String,
    },
}

/// How a stop went.
#[derive(Debug, PartialEq)]
pub enum Stopped {
    /// Exited with status 0 after SIGTERM.
    Clean,
    /// Exited after SIGTERM, but not with 0.
    Status(ExitStatus),
    /// Still there after the grace period: killed.
    Killed,
    /// Had exited before it was asked to.
    AlreadyGone(ExitStatus),
}

/// A server under test, started and ready; dropping it kills what is left of it.
pub struct Server {
    /// `epoll`, `nginx`, ...: for messages.
    pub name: String,
    child: Child,
    /// The port it listens on.
    pub port: u16,
    stderr_path: PathBuf,
    extra_log: Option<PathBuf>,
    gone: Option<ExitStatus>,
}

/// Longest wait for the `listening on` line, and then for /health.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

impl Server {
    /// Start `cmd` with stdout and stderr in `log_dir/LABEL.{stdout,stderr}`
    /// and wait until GET /health answers 200.
    pub fn start(cmd: &ServerCmd, log_dir: &Path, label: &str) -> Result<Server, StartError> {
        let stdout_path = log_dir.join(format!("{label}.stdout"));
        let stderr_path = log_dir.join(format!("{label}.stderr"));
        let fail = |why: String| StartError::Failed {
            why,
            tail: String::new(),
        };
        if !cmd.program.is_file() {
            return Err(fail(format!("{} not found", cmd.program.display())));
        }
        let stdout = File::create(&stdout_path)
            .map_err(|e| fail(format!("creating {}: {e}", stdout_path.display())))?;
        let stderr = File::create(&stderr_path)
            .map_err(|e| fail(format!("creating {}: {e}", stderr_path.display())))?;
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        process::confine(&mut command, &cmd.cpus)
            .map_err(|e| fail(format!("preparing CPU pinning: {e}")))?;
        let child = command
            .spawn()
            .map_err(|e| fail(format!("starting {}: {e}", cmd.program.display())))?;
        let mut server = Server {
            name: cmd.name.clone(),
            child,
            port: cmd.port.unwrap_or(0),
            stderr_path,
            extra_log: cmd.extra_log.clone(),
            gone: None,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        if cmd.port.is_none() {
            server.port = server.wait_listen_line(&stdout_path, deadline)?;
        }
        server.wait_health(Instant::now() + START_TIMEOUT)?;
        Ok(server)
    }

    /// The server's pid (its process group id too).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// 127.0.0.1 and its port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The exit status if it has exited (reaped once, remembered).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.gone.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.gone = Some(st);
            }
        }
        self.gone
    }

    /// Whether it is still running (it may die under load).
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// A failure with this server's stderr tail attached.
    pub fn failed(&self, why: String) -> StartError {
        StartError::Failed {
            why,
            tail: self.stderr_tail(),
        }
    }

    fn gone_error(&mut self, waiting_for: &str) -> Option<StartError> {
        let st = self.exit_status()?;
        if st.code() == Some(servers::variants::EXIT_UNAVAILABLE) {
            let text = fs::read_to_string(&self.stderr_path).unwrap_or_default();
            let line = text.lines().rev().find(|l| !l.trim().is_empty());
            let why = line
                .unwrap_or("unavailable on this machine")
                .trim()
                .to_string();
            return Some(StartError::Unavailable(why));
        }
        Some(self.failed(format!("exited ({st}) before {waiting_for}")))
    }

    fn wait_listen_line(&mut self, stdout: &Path, deadline: Instant) -> Result<u16, StartError> {
        loop {
            let text = fs::read_to_string(stdout).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("listening on ")) {
                let port = line
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.trim().parse::<u16>().ok());
                return port.ok_or_else(|| self.failed(format!("unreadable first line {line:?}")));
            }
            if let Some(e) = self.gone_error("printing `listening on ADDR:PORT`") {
                return Err(e);
            }
            if process::interrupted() {
                return Err(StartError::Interrupted);
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "no `listening on ADDR:PORT` line on stdout within {START_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_health(&mut self, deadline: Instant) -> Result<(), StartError> {
        loop {
            let last = match http_get(self.addr(), "/health", Duration::from_secs(2)) {
                Ok((200, _)) => return Ok(()),
                Ok((status, _)) => format!("status {status}"),
                Err(e) => e.to_string(),
            };
            if let Some(e) = self.gone_error("GET /health answered") {
                return Err(e);
            }
            if process::interrupted() {
                return Err(StartError::Interrupted);
            }
            if Instant::now() >= deadline {
                return Err(self.failed(format!(
                    "GET /health on port {} did not answer 200 within {START_TIMEOUT:?} (last: {last})",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's pid and those of its live descendants (nginx's workers,
    /// a process-based variant's children), parents first: what a profiler
    /// attaches to.
    pub fn tree_pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        let mut seen = 0;
        while seen < pids.len() {
            let pid = pids[seen];
            seen += 1;
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                if let Ok(kids) = fs::read_to_string(task.path().join("children")) {
                    for kid in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                        if !pids.contains(&kid) {
                            pids.push(kid);
                        }
                    }
                }
            }
        }
        pids
    }

    /// Threads of the server's processes allowed outside `cpus`, described
    /// (None when every thread is confined as intended).
    pub fn check_affinity(&self, cpus: &[usize]) -> Option<String> {
        for pid in self.tree_pids() {
            let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let status = fs::read_to_string(task.path().join("status")).unwrap_or_default();
                let allowed = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .map(str::trim)
                    .unwrap_or("");
                if let Ok(list) = servers::sys::affinity::parse_cpu_list(allowed) {
                    if list.iter().any(|c| !cpus.contains(c)) {
                        return Some(format!(
                            "thread {} of pid {pid} may run on CPUs {allowed}",
                            task.file_name().to_string_lossy()
                        ));
                    }
                }
            }
        }
        None
    }

    /// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL the whole process
    /// group (nginx's workers included).
    pub fn stop(&mut self) -> Stopped {
        if let Some(st) = self.exit_status() {
            process::signal_group(self.pid(), libc::SIGKILL);
            return Stopped::AlreadyGone(st);
        }
        process::signal(self.pid(), libc::SIGTERM);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(st) = self.exit_status() {
                // Anything left in its group (a worker that outlived its
                // master) goes too.
                process::signal_group(self.pid(), libc::SIGKILL);
                return if st.success() {
                    Stopped::Clean
                } else {
                    Stopped::Status(st)
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        process::signal_group(self.pid(), libc::SIGKILL);
        let _ = self.child.kill();
        if let Ok(st) = self.child.wait() {
            self.gone = Some(st);
        }
        Stopped::Killed
    }

    /// The end of its stderr (and of the extra log), for failure reports:
    /// the first lines (where a panic message is) and the last ones.
    pub fn stderr_tail(&self) -> String {
        let mut out = tail_of(&self.stderr_path, 12);
        if let Some(extra) = &self.extra_log {
            let t = tail_of(extra, 12);
            if !t.is_empty() {
                out.push_str(&format!("{}:\n{t}", extra.display()));
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            process::signal_group(self.pid(), libc::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The first 4 and the last `lines` lines of a file (all of it when short),
/// each indented, or "" when empty or unreadable.
pub fn tail_of(path: &Path, lines: usize) -> String {
    let mut data = Vec::new();
    if File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&data);
    let all: Vec<&str> = text.lines().collect();
    let pick: Vec<String> = if all.len() <= lines + 4 {
        all.iter().map(|l| l.to_string()).collect()
    } else {
        let mut v: Vec<String> = all[..4].iter().map(|l| l.to_string()).collect();
        v.push(format!("[... {} lines ...]", all.len() - 4 - lines));
        v.extend(all[all.len() - lines..].iter().map(|l| l.to_string()));
        v
    };
    pick.iter().map(|l| format!("  | {l}\n")).collect()
}

/// GET `path` over a fresh connection (`Connection: close`): the status and
/// the body length.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, usize)> {
    http_fetch(addr, path, timeout).map(|(status, body)| (status, body.len()))
}

/// GET `path` over a fresh connection (`Connection: close`): the status and
/// the body (everything after the head; the servers answer such a GET with
/// a Content-Length body and close).
pub fn http_fetch(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no complete response head"))?;
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("no status line"))?;
    Ok((status, buf.split_off(head_end + 4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_head_and_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        let text: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        fs::write(&p, text).unwrap();
        let t = tail_of(&p, 5);
        assert!(t.contains("line 1\n") && t.contains("line 4\n"), "{t}");
        assert!(!t.contains("line 5\n"), "{t}");
        assert!(t.contains("[... 31 lines ...]"), "{t}");
        assert!(t.contains("line 36\n") && t.contains("line 40\n"), "{t}");
        assert_eq!(tail_of(&dir.path().join("missing"), 5), "");
    }

    #[test]
    fn a_missing_binary_fails_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = ServerCmd {
            name: "nope".into(),
            program: dir.path().join("nope"),
            args: vec![],
            cpus: vec![0],
            port: None,
            extra_log: None,
        };
        match Server::start(&cmd, dir.path(), "nope") {
            Err(StartError::Failed { why, .. }) => assert!(why.contains("not found"), "{why}"),
            other => panic!("{:?}", other.map(|s| s.port)),
        }
    }

    #[test]
    fn a_server_that_exits_early_is_reported_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let cmd = ServerCmd {
            name: "sh".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "echo 'cannot bind: boom' >&2; exit 3".into()],
            cpus: vec![0],
            port: None,
            extra_log: None,
        };
        match Server::start(&cmd, dir.path(), "sh") {
            Err(StartError::Failed { why, tail }) => {
                assert!(why.contains("exited"), "{why}");
                assert!(tail.contains("cannot bind: boom"), "{tail}");
            }
            other => panic!("{:?}", other.map(|s| s.port)),
        }
    }

    #[test]
    fn a_server_refused_its_kernel_interface_is_unavailable_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "echo 'io_uring is unavailable: kernel.io_uring_disabled = 2' >&2; exit {}",
            servers::variants::EXIT_UNAVAILABLE
        );
        let cmd = ServerCmd {
            name: "sh".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cpus: vec![0],
            port: None,
            extra_log: None,
        };
        match Server::start(&cmd, dir.path(), "sh") {
            Err(StartError::Unavailable(why)) => {
                assert_eq!(why, "io_uring is unavailable: kernel.io_uring_disabled = 2")
            }
            other => panic!("{:?}", other.map(|s| s.port)),
        }
    }
}
