//! Reading the console of a running [`Machine`]: waiting for lines with deadlines
//! ([`Machine::expect`]), forbidding and refuting lines, and logging in on the getty.

use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Machine, TROUBLE, message};

impl Machine {
    /// Waits until a console line (or the unfinished last line, e.g. a prompt) contains
    /// `needle`; returns the time since QEMU started and the line. Lines before it are
    /// consumed, so successive calls check order.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<(Duration, String)> {
        self.wait_for(&format!("{needle:?}"), |line| line.contains(needle), true, timeout)
    }

    /// A healthy boot: no [`TROUBLE`] line from the start to the end of the run, then
    /// `ramkey: ready` and `ramkey: services: running` (every enabled service up and
    /// healthy). Returns when `ready` came; later expectations read on from the `ready`
    /// line, since what services print may come before or after `services: running`.
    pub fn expect_running(&mut self, timeout: Duration) -> Result<Duration> {
        self.forbid(TROUBLE)?;
        let (at, _) = self.expect("ramkey: ready in ", timeout)?;
        let after_ready = self.cursor;
        self.expect("ramkey: services: running (", timeout)?;
        self.cursor = after_ready;
        Ok(at)
    }

    /// Like [`Machine::expect`], but a line matches only when its whole text (after the
    /// kernel's timestamp) is `text`: `unmount /pool: ok` does not match
    /// `unmount /pool: ok (busy, remounted read-only, detached)`.
    pub fn expect_line(&mut self, text: &str, timeout: Duration) -> Result<(Duration, String)> {
        self.wait_for(
            &format!("the line {text:?}"),
            |line| message(line) == text,
            false,
            timeout,
        )
    }

    /// From now until the end of the run, any console line containing one of `needles`
    /// fails the next [`Machine::expect`], refute or [`Machine::wait_exit`]; lines already
    /// seen count too.
    pub fn forbid(&mut self, needles: &[&str]) -> Result<()> {
        self.forbidden.extend(needles.iter().map(|n| n.to_string()));
        if self.violation.is_none() {
            self.violation = self
                .lines
                .iter()
                .find(|(_, l)| needles.iter().any(|n| l.contains(n)))
                .map(|(_, l)| l.clone());
        }
        self.check_violation()
    }

    pub(super) fn check_violation(&self) -> Result<()> {
        match &self.violation {
            Some(line) => bail!("{}: forbidden console line: {line}\n{}", self.name(), self.tail()),
            None => Ok(()),
        }
    }

    /// Reads the console for `duration` and fails if any line from the start of the run
    /// to then contains `needle`.
    pub fn refute_for(&mut self, needle: &str, duration: Duration) -> Result<()> {
        let deadline = Instant::now() + duration;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.absorb(&chunk),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(left);
                    break;
                }
            }
        }
        self.check_violation()?;
        self.refute_seen(needle)
    }

    fn refute_seen(&self, needle: &str) -> Result<()> {
        if let Some((_, line)) = self.lines.iter().find(|(_, l)| l.contains(needle)) {
            bail!("{}: unexpected console line: {line}\n{}", self.name(), self.tail());
        }
        Ok(())
    }

    /// Reads the console until a line satisfies `matches` (also the unfinished last line,
    /// a prompt, when `partial`), failing on a forbidden line or at the deadline.
    fn wait_for(
        &mut self,
        what: &str,
        matches: impl Fn(&str) -> bool,
        partial: bool,
        timeout: Duration,
    ) -> Result<(Duration, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_violation()?;
            if let Some(i) = self.lines[self.cursor..].iter().position(|(_, l)| matches(l)) {
                let found = self.lines[self.cursor + i].clone();
                self.cursor += i + 1;
                return Ok(found);
            }
            if partial && matches(&self.partial) {
                // Either the line is still arriving, or it is a prompt that will not end:
                // wait for the rest of it until the console has been quiet for a moment.
                match self.output.recv_timeout(Duration::from_millis(500)) {
                    Ok(chunk) => {
                        self.absorb(&chunk);
                        continue;
                    }
                    Err(_) => return Ok((self.start.elapsed(), self.partial.clone())),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: no console line with {what} within {timeout:?}\n{}",
                    self.name(),
                    self.tail()
                );
            }
            match self.output.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(chunk) => self.absorb(&chunk),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait()?;
                    self.exited = Some(status);
                    self.check_violation()?;
                    bail!(
                        "{}: the machine exited ({status}) before {what}\n{}",
                        self.name(),
                        self.tail()
                    );
                }
            }
        }
    }

    /// Logs in as `user` on the serial console's getty (asking for a fresh prompt, which may
    /// have gone by among PID 1's lines) and waits until `user`'s shell answers.
    pub fn login(&mut self, user: &str, password: &str, timeout: Duration) -> Result<()> {
        let mut prompted = false;
        for _ in 0..20 {
            self.send("\n")?;
            if self.expect("login:", Duration::from_secs(5)).is_ok() {
                prompted = true;
                break;
            }
        }
        anyhow::ensure!(prompted, "{}: no login prompt\n{}", self.name(), self.tail());
        self.send(&format!("{user}\n"))?;
        self.expect("Password:", timeout)?;
        self.send(&format!("{password}\n"))?;
        // The typed line reads `logged-""in`; only the shell's answer reads `logged-in`.
        self.send("echo logged-\"\"in\n")?;
        self.expect("logged-in", timeout).map(drop)
    }
}
