//! A running QEMU with its console captured.
//!
//! [`Session`] starts QEMU with stdout and stderr piped: two reader threads
//! copy every byte to the log file (`build/logs/<name>.log` by convention,
//! headed by the command line) and split it into lines that
//! [`Session::wait_for`] searches with a deadline. Stdin is a pipe that
//! [`Session::send`] writes to. A session owns its QEMU: dropping it kills
//! QEMU, and on Linux QEMU also gets `SIGKILL` when the thread that started
//! it dies (`PR_SET_PDEATHSIG`), so a test harness killed by a timeout or
//! Ctrl-C leaves no QEMU behind. Start and drop a session on the same thread.
//!
//! Every error carries the log path and the last console lines.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::console::{LineSplitter, find_in};
use crate::error::TAIL_LINES;
use crate::{Error, ErrorKind, Match, Pattern, QemuCommand, check_qemu};

/// How a session treats its console besides capturing it.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionOptions {
    /// Also copy QEMU's stdout and stderr to ours, live.
    pub echo: bool,
}

/// A QEMU process and its captured console. Dropping it kills QEMU.
pub struct Session {
    name: String,
    log_path: PathBuf,
    child: Child,
    status: Option<ExitStatus>,
    stdin: Option<ChildStdin>,
    shared: Arc<Shared>,
    log: Arc<Mutex<File>>,
    readers: Vec<JoinHandle<()>>,
    cursor: usize,
    started: Instant,
}

/// What the reader threads share with the session.
struct Shared {
    state: Mutex<Console>,
    changed: Condvar,
}

/// The console so far.
#[derive(Default)]
struct Console {
    /// Complete lines from stdout and stderr, in arrival order.
    lines: Vec<String>,
    /// The incomplete last line of stdout.
    partial: Option<String>,
    /// Reader threads still running (a stream not yet at end of file).
    open_streams: usize,
    /// The first read error, if any.
    read_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Session {
    /// Checks QEMU's version and the machine, then starts `cmd` logging to
    /// `log_path` (its directory is created).
    pub fn spawn(cmd: &QemuCommand, log_path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::spawn_with(cmd, log_path, SessionOptions::default())
    }

    /// [`Self::spawn`] with options.
    pub fn spawn_with(
        cmd: &QemuCommand,
        log_path: impl AsRef<Path>,
        options: SessionOptions,
    ) -> Result<Self, Error> {
        check_qemu()?;
        cmd.machine
            .validate()
            .map_err(|e| Error::new(ErrorKind::Spawn, e))?;
        cmd.prepare()
            .map_err(|e| Error::new(ErrorKind::Spawn, format!("cannot prepare the boot: {e}")))?;
        Self::spawn_program(cmd.command(), &cmd.display(), log_path.as_ref(), options)
    }

    /// Starts any program as a session (QEMU through [`Self::spawn`]; other
    /// programs in tests). `shown` is the command line written to the log.
    pub fn spawn_program(
        mut cmd: Command,
        shown: &str,
        log_path: &Path,
        options: SessionOptions,
    ) -> Result<Self, Error> {
        let spawn_err = |what: String| Error::new(ErrorKind::Spawn, what);
        if let Some(dir) = log_path.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| spawn_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut log = File::create(log_path)
            .map_err(|e| spawn_err(format!("cannot create {}: {e}", log_path.display())))?;
        writeln!(log, "# {shown}")
            .map_err(|e| spawn_err(format!("cannot write {}: {e}", log_path.display())))?;

        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| spawn_err(format!("cannot start `{shown}`: {e}")))?;

        let shared = Arc::new(Shared {
            state: Mutex::new(Console {
                open_streams: 2,
                ..Console::default()
            }),
            changed: Condvar::new(),
        });
        let log = Arc::new(Mutex::new(log));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(
                out,
                Stream::Stdout,
                &shared,
                &log,
                options.echo,
            ));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(
                err,
                Stream::Stderr,
                &shared,
                &log,
                options.echo,
            ));
        }
        let stdin = child.stdin.take();
        let name = log_path
            .file_stem()
            .map_or_else(|| "qemu".to_string(), |s| s.to_string_lossy().into_owned());
        Ok(Session {
            name,
            log_path: log_path.to_path_buf(),
            child,
            status: None,
            stdin,
            shared,
            log,
            readers,
            cursor: 0,
            started: Instant::now(),
        })
    }

    /// The session's name (the log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The console log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// QEMU's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a console line after the previous match contains / matches
    /// `pattern`, for at most `timeout`. Fails when QEMU exits first.
    pub fn wait_for(
        &mut self,
        pattern: impl Into<Pattern>,
        timeout: Duration,
    ) -> Result<Match, Error> {
        let pattern = pattern.into();
        self.wait_for_any(std::slice::from_ref(&pattern), timeout)
            .map(|(_, m)| m)
    }

    /// Waits for the first console line after the previous match that matches
    /// any of `patterns`; returns the index of the pattern and the match.
    /// Later matches continue after this line.
    pub fn wait_for_any(
        &mut self,
        patterns: &[Pattern],
        timeout: Duration,
    ) -> Result<(usize, Match), Error> {
        let deadline = Instant::now() + timeout;
        let mut console = lock(&self.shared.state);
        loop {
            while self.cursor < console.lines.len() {
                let line = &console.lines[self.cursor];
                let index = self.cursor;
                self.cursor += 1;
                for (i, p) in patterns.iter().enumerate() {
                    if let Some(captures) = p.captures(line) {
                        return Ok((
                            i,
                            Match {
                                line: line.clone(),
                                index,
                                captures,
                            },
                        ));
                    }
                }
            }
            let wanted = describe(patterns);
            if console.open_streams == 0 {
                drop(console);
                let status = self.reap();
                let status = status.map_or_else(|| "still running".to_string(), |s| s.to_string());
                return Err(self.error(
                    ErrorKind::Exited,
                    format!(
                        "{}: QEMU's console ended ({status}) after {:.1} s without {wanted}",
                        self.name,
                        self.elapsed().as_secs_f64()
                    ),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                drop(console);
                return Err(self.error(
                    ErrorKind::Timeout,
                    format!(
                        "{}: timed out after {:.1} s waiting for {wanted}",
                        self.name,
                        timeout.as_secs_f64()
                    ),
                ));
            }
            console = self
                .shared
                .changed
                .wait_timeout(console, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The first console line so far (from the very beginning, regardless of
    /// previous waits) that matches `pattern`.
    pub fn find(&self, pattern: impl Into<Pattern>) -> Option<Match> {
        let pattern = pattern.into();
        find_in(&lock(&self.shared.state).lines, 0, &pattern)
    }

    /// Waits for QEMU to exit by itself, for at most `timeout`, and for the
    /// rest of its output.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.error(
                    ErrorKind::Timeout,
                    format!(
                        "{}: QEMU did not exit within {:.1} s (it is killed now)",
                        self.name,
                        timeout.as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// QEMU's exit status if it has exited (then also all its output is in).
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, Error> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(status)) => self.exited(status, "exited"),
                Ok(None) => {}
                Err(e) => {
                    return Err(self.error(
                        ErrorKind::Io,
                        format!("{}: waiting for QEMU: {e}", self.name),
                    ));
                }
            }
        }
        Ok(self.status)
    }

    /// Sends `text` to QEMU's stdin (the serial console; `Ctrl-A` is the
    /// monitor escape).
    pub fn send(&mut self, text: &str) -> Result<(), Error> {
        let result = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(text.as_bytes())
                .and_then(|()| stdin.flush()),
            None => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stdin is closed")),
        };
        result.map_err(|e| {
            self.error(
                ErrorKind::Io,
                format!("{}: writing to QEMU: {e}", self.name),
            )
        })
    }

    /// Kills QEMU (if still running) and collects the rest of its output.
    pub fn kill(&mut self) {
        if self.status.is_some() {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            kill_group(self.child.id());
            let _ = self.child.kill();
        }
        match self.child.wait() {
            Ok(status) => self.exited(status, "killed by the runner"),
            Err(_) => self.join_readers(),
        }
    }

    /// A copy of every complete console line so far.
    pub fn lines(&self) -> Vec<String> {
        lock(&self.shared.state).lines.clone()
    }

    /// The last `n` console lines (and the incomplete line after them), as text.
    pub fn tail(&self, n: usize) -> String {
        let console = lock(&self.shared.state);
        let start = console.lines.len().saturating_sub(n);
        let mut text = String::new();
        for line in &console.lines[start..] {
            text.push_str(line);
            text.push('\n');
        }
        if let Some(partial) = &console.partial {
            text.push_str(partial);
            text.push('\n');
        }
        if let Some(e) = &console.read_error {
            text.push_str(&format!("[runner: reading the console failed: {e}]\n"));
        }
        text
    }

    /// An error of kind [`ErrorKind::Check`] with this session's console: for
    /// callers' own checks on the output.
    pub fn failure(&self, message: impl Into<String>) -> Error {
        self.error(ErrorKind::Check, message.into())
    }

    fn error(&self, kind: ErrorKind, message: String) -> Error {
        Error::new(kind, message).with_console(&self.log_path, self.tail(TAIL_LINES))
    }

    /// After the console closed: waits briefly for the exit status, killing
    /// QEMU if it keeps running without a console.
    fn reap(&mut self) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.try_exit_status() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(_) => break,
            }
        }
        self.kill();
        self.status
    }

    fn exited(&mut self, status: ExitStatus, how: &str) {
        self.status = Some(status);
        self.stdin = None;
        self.join_readers();
        let mut log = lock(&self.log);
        let _ = writeln!(
            log,
            "\n# QEMU {how} ({status}) after {:.1} s",
            self.elapsed().as_secs_f64()
        );
    }

    /// Joins the reader threads once both streams ended; leaves them
    /// detached if some other process still holds QEMU's pipes after a while.
    fn join_readers(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut console = lock(&self.shared.state);
        while console.open_streams > 0 {
            let now = Instant::now();
            if now >= deadline {
                self.readers.clear();
                return;
            }
            console = self
                .shared
                .changed
                .wait_timeout(console, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(console);
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `patterns` for a message.
fn describe(patterns: &[Pattern]) -> String {
    let shown: Vec<String> = patterns.iter().map(ToString::to_string).collect();
    match shown.len() {
        1 => shown.concat(),
        _ => format!("any of {}", shown.join(", ")),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

fn spawn_reader(
    mut source: impl Read + Send + 'static,
    stream: Stream,
    shared: &Arc<Shared>,
    log: &Arc<Mutex<File>>,
    echo: bool,
) -> JoinHandle<()> {
    let shared = Arc::clone(shared);
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        let mut splitter = LineSplitter::default();
        let mut buf = [0u8; 8192];
        let mut error = None;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            };
            let bytes = &buf[..n];
            {
                let mut log = lock(&log);
                if let Err(e) = log.write_all(bytes).and_then(|()| log.flush()) {
                    error.get_or_insert(format!("writing the log: {e}"));
                }
            }
            if echo {
                let _ = match stream {
                    Stream::Stdout => io::stdout()
                        .lock()
                        .write_all(bytes)
                        .and_then(|()| io::stdout().flush()),
                    Stream::Stderr => io::stderr().lock().write_all(bytes),
                };
            }
            let lines = splitter.push(bytes);
            let mut console = lock(&shared.state);
            console.lines.extend(lines);
            if stream == Stream::Stdout {
                console.partial = splitter.partial();
            }
            if let Some(e) = error.take() {
                console.read_error.get_or_insert(e);
            }
            shared.changed.notify_all();
        }
        let mut console = lock(&shared.state);
        console.lines.extend(splitter.finish());
        if stream == Stream::Stdout {
            console.partial = None;
        }
        if let Some(e) = error {
            console.read_error.get_or_insert(e);
        }
        console.open_streams -= 1;
        shared.changed.notify_all();
    })
}

/// Puts the child in a process group of its own (so that [`kill_group`]
/// reaches anything it started) and makes the kernel kill it when the thread
/// that spawned it dies (Linux `PR_SET_PDEATHSIG`; elsewhere only `Drop`
/// protects).
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let set_pdeathsig = || {
        // SAFETY: `PR_SET_PDEATHSIG` takes a signal number and touches no
        // memory of ours.
        let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the hook runs in the forked child before `exec`; it only calls
    // `prctl`, which is async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(set_pdeathsig) };
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

/// Sends `SIGKILL` to the process group led by `pid`.
#[cfg(target_os = "linux")]
fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: `kill` only sends a signal; the group is the one our child
        // leads (`process_group(0)`), which it cannot leave or reuse while it
        // is not yet reaped.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_group(_pid: u32) {}

#[cfg(test)]
mod tests {
    //! The session machinery against `sh`, not QEMU: fast and host-only.

    use super::*;

    fn sh(script: &str, name: &str) -> Session {
        let dir = std::env::temp_dir().join(format!("kcore-qemu-test-{}", std::process::id()));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        match Session::spawn_program(
            cmd,
            script,
            &dir.join(format!("{name}.log")),
            SessionOptions::default(),
        ) {
            Ok(s) => s,
            Err(e) => unreachable!("sh starts: {e}"),
        }
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn waits_for_lines_in_order_and_exit() {
        let mut s = sh(
            "echo 'kcore: KCore v0.1.0 at EL2'; sleep 0.1; printf 'Booting Linux\\r\\nKSERV-DONE: 1 passed, 0 failed\\n'; exit 3",
            "order",
        );
        let banner = s.wait_for("kcore: KCore", T).map_err(|e| e.to_string());
        assert_eq!(banner.map(|m| m.index), Ok(0));
        let done = s.wait_for(
            Pattern::regex(r"KSERV-DONE: (\d+) passed").unwrap_or_else(|e| unreachable!("{e}")),
            T,
        );
        assert_eq!(
            done.ok()
                .and_then(|m| m.get(1).map(String::from))
                .as_deref(),
            Some("1")
        );
        // The banner is before the cursor now.
        let again = s.wait_for("kcore: KCore", T);
        assert_eq!(again.map_err(|e| e.kind()).err(), Some(ErrorKind::Exited));
        let status = s.wait_exit(T).map_err(|e| e.to_string());
        assert_eq!(status.map(|s| s.code()), Ok(Some(3)));
        assert_eq!(
            s.find("Booting").map(|m| m.line),
            Some("Booting Linux".to_string())
        );
        let log = fs::read_to_string(s.log_path()).unwrap_or_default();
        assert!(log.starts_with("# echo"), "{log}");
        assert!(log.contains("Booting Linux\r\n"), "{log}");
        assert!(log.contains("# QEMU exited (exit status: 3)"), "{log}");
    }

    #[test]
    fn timeout_error_has_tail_and_log_path() {
        let mut s = sh(
            "for i in $(seq 1 400); do echo line $i; done; sleep 30",
            "timeout",
        );
        let started = Instant::now();
        let e = s.wait_for("never", Duration::from_millis(500)).err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = e.map(|e| (e.kind(), e.to_string()));
        let Some((kind, text)) = e else {
            unreachable!("must time out")
        };
        assert_eq!(kind, ErrorKind::Timeout);
        assert!(
            text.contains("timed out after 0.5 s waiting for \"never\""),
            "{text}"
        );
        assert!(text.contains("line 400\n"), "{text}");
        assert!(
            text.contains(&format!("line {}\n", 400 - TAIL_LINES + 1)),
            "{text}"
        );
        assert!(
            !text.contains(&format!("line {}\n", 400 - TAIL_LINES)),
            "{text}"
        );
        assert!(text.contains("timeout.log"), "{text}");
    }

    #[test]
    fn wait_for_any_reports_which() {
        let mut s = sh("echo 'Kernel panic - not syncing: x'; sleep 30", "any");
        let r = s.wait_for_any(&["KSERV-DONE".into(), "Kernel panic".into()], T);
        assert_eq!(r.map(|(i, m)| (i, m.index)).ok(), Some((1, 0)));
    }

    #[test]
    fn exit_timeout_and_kill_on_drop() {
        let mut s = sh("sleep 60", "drop");
        let pid = s.id();
        assert_eq!(
            s.wait_exit(Duration::from_millis(100))
                .map_err(|e| e.kind())
                .err(),
            Some(ErrorKind::Timeout)
        );
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(s);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} survived the drop"
        );
    }

    #[test]
    fn stdin_reaches_the_program_and_stderr_is_captured() {
        let mut s = sh("read x; echo got $x; echo oops >&2", "stdin");
        assert!(s.send("hello\n").is_ok());
        assert!(s.wait_for("got hello", T).is_ok());
        // stdout and stderr are read apart: their relative order is not kept.
        assert_eq!(s.wait_exit(T).map(|s| s.success()).ok(), Some(true));
        assert!(s.find("oops").is_some());
    }

    #[test]
    fn partial_line_shows_in_the_tail() {
        let mut s = sh("printf '~ # '; sleep 30", "partial");
        assert!(s.wait_for("x", Duration::from_millis(300)).is_err());
        assert_eq!(s.tail(5), "~ # \n");
    }
}
