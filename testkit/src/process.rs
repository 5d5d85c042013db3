//! Child processes of a test: killed when the test ends, whichever way.

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::process::{Child, ChildStdout, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use crate::wait::poll_until;

/// A child process that is killed (SIGKILL) and reaped when the guard is
/// dropped: a failing test leaves no push, viewer or browser behind. It
/// derefs to the [`Child`], so `wait`, `try_wait`, `kill` and the pipes are
/// at hand.
pub struct ChildGuard(Option<Child>);

impl ChildGuard {
    /// Guards `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(Some(child))
    }

    /// Waits for the child and collects what is left of its output (see
    /// [`Child::wait_with_output`]).
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0.take().expect("a guarded child").wait_with_output()
    }

    /// Waits up to `timeout` for the child to end; kills it and answers
    /// `None` when it has not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = poll_until(timeout, || self.try_wait().expect("try_wait"));
        if status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
        status
    }

    /// Kills the child now (SIGKILL, as the drop does) and reaps it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a guarded child")
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a guarded child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to its end and returns what it printed; panics with the
/// command line and its standard error when it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Starts a push (a command from [`Server::push_cmd`](crate::Server::push_cmd))
/// and returns it, guarded, with the session id once the push has printed
/// it, and the rest of its standard output.
pub fn spawn_push(mut cmd: Command) -> (ChildGuard, String, BufReader<ChildStdout>) {
    let mut child = ChildGuard::new(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning push"),
    );
    let mut out = BufReader::new(child.stdout.take().expect("push stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("reading push output");
        if n == 0 {
            let status = child.wait();
            panic!("push ended ({status:?}) before printing its session");
        }
        if let Some(id) = line.trim().strip_prefix("session ") {
            return (child, id.to_string(), out);
        }
    }
}
