//! The QEMU harness: starts `qemu-system-x86_64`, reads the serial console line by line,
//! waits for expected lines with deadlines, talks to the monitor, and keeps each run's
//! console log under `target/ramkey/logs/`.

mod expect;
mod spec;

pub use spec::{Spec, accel};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The QEMU binary; a boot test fails, never skips, when it is missing.
pub const QEMU: &str = "qemu-system-x86_64";

/// Decodes `pending` as UTF-8 up to a character cut by the end of a read, which stays in
/// `pending` for the next one (a read that splits `—` must not turn it into three `�`).
pub fn decode_complete(pending: &mut Vec<u8>) -> String {
    let keep = match std::str::from_utf8(pending) {
        Ok(_) => 0,
        Err(e) if e.error_len().is_none() => pending.len() - e.valid_up_to(),
        Err(_) => 0,
    };
    let rest = pending.split_off(pending.len() - keep);
    let text = String::from_utf8_lossy(pending).into_owned();
    *pending = rest;
    text
}

/// Where run logs go.
pub fn log_dir() -> PathBuf {
    crate::artifacts::target_dir().join("ramkey/logs")
}

/// A running machine.
#[derive(Debug)]
pub struct Machine {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Receiver<String>,
    start: Instant,
    monitor: PathBuf,
    log: PathBuf,
    /// Complete console lines with the time they arrived.
    lines: Vec<(Duration, String)>,
    /// Index of the first line `expect` has not consumed yet.
    cursor: usize,
    partial: String,
    exited: Option<ExitStatus>,
    /// Texts no console line may contain, for the whole run ([`Machine::forbid`]).
    forbidden: Vec<String>,
    /// The first console line that contained a forbidden text.
    violation: Option<String>,
}

/// What no console line of a healthy boot contains: a kernel panic, a PID 1 error (a
/// `PANIC` is one too), recovery mode, or a supervisor that did not start.
pub const TROUBLE: &[&str] = &[
    "Kernel panic",
    "ramkey: error:",
    "RECOVERY MODE",
    "services: not started",
];

/// The text of a console line after the kernel's `[  12.345678] ` timestamp, if it has one.
pub fn message(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((stamp, text)) if stamp.trim().parse::<f64>().is_ok() => text,
        _ => line,
    }
}

impl Machine {
    /// Starts QEMU; its serial console is our stdin/stdout, its monitor a unix socket.
    pub fn start(spec: &Spec) -> Result<Machine> {
        let logs = log_dir();
        std::fs::create_dir_all(&logs)?;
        let monitor = logs.join(format!("{}.monitor", spec.name));
        let _ = std::fs::remove_file(&monitor);
        let mut cmd = Command::new(QEMU);
        let accel = accel();
        let cpu = if accel == "kvm" { "host" } else { "max" };
        cmd.args([
            "-accel",
            &accel,
            "-M",
            "q35",
            "-cpu",
            cpu,
            "-smp",
            "1",
            "-m",
            &spec.memory_mb.to_string(),
        ]);
        cmd.args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            "stdio",
        ]);
        cmd.arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", monitor.display()));
        if let Some((kernel, initrd, cmdline)) = &spec.kernel {
            cmd.arg("-kernel")
                .arg(kernel)
                .arg("-initrd")
                .arg(initrd)
                .arg("-append")
                .arg(cmdline);
        }
        cmd.args(&spec.args);
        Machine::spawn(&spec.name, cmd, monitor).map_err(|e| {
            anyhow::anyhow!(
                "cannot start {QEMU}: {e}\nthe boot tests need QEMU: run `cargo xtask deps` as root (Debian 12), \
                 or install qemu-system-x86 from bookworm-backports"
            )
        })
    }

    /// Runs `cmd` as the machine: its stdout is the console, its stdin the keyboard.
    /// (QEMU in the boot tests; a shell script in the harness's own tests.)
    fn spawn(name: &str, mut cmd: Command, monitor: PathBuf) -> Result<Machine> {
        let logs = log_dir();
        std::fs::create_dir_all(&logs)?;
        let log = logs.join(format!("{name}.log"));
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let start = Instant::now();
        let (tx, output) = channel();
        let mut stdout = child.stdout.take().context("console output")?;
        let mut log_file = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut pending = Vec::new();
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                let _ = log_file.write_all(&buf[..n]);
                pending.extend_from_slice(&buf[..n]);
                if tx.send(decode_complete(&mut pending)).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().context("stderr")?;
        let label = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("qemu[{label}]: {line}");
            }
        });
        let stdin = child.stdin.take();
        Ok(Machine {
            child,
            stdin,
            output,
            start,
            monitor,
            log,
            lines: Vec::new(),
            cursor: 0,
            partial: String::new(),
            exited: None,
            forbidden: Vec::new(),
            violation: None,
        })
    }

    fn absorb(&mut self, chunk: &str) {
        let at = self.start.elapsed();
        for c in chunk.chars() {
            match c {
                '\n' => {
                    let line = std::mem::take(&mut self.partial);
                    if self.violation.is_none() && self.forbidden.iter().any(|f| line.contains(f.as_str())) {
                        self.violation = Some(line.clone());
                    }
                    self.lines.push((at, line));
                }
                '\r' => {}
                c => self.partial.push(c),
            }
        }
    }

    /// Types on the serial console.
    pub fn send(&mut self, text: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("console input closed")?;
        stdin.write_all(text.as_bytes())?;
        stdin.flush()?;
        Ok(())
    }

    /// Runs a QEMU monitor command (e.g. `system_powerdown`) and returns its answer.
    pub fn monitor(&self, command: &str) -> Result<String> {
        let mut sock = UnixStream::connect(&self.monitor)
            .with_context(|| format!("connecting to the QEMU monitor at {}", self.monitor.display()))?;
        sock.set_read_timeout(Some(Duration::from_secs(10)))?;
        read_until_prompt(&mut sock)?;
        sock.write_all(format!("{command}\n").as_bytes())?;
        read_until_prompt(&mut sock)
    }

    /// Waits for QEMU to exit by itself (a guest power-off with `-no-reboot`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(chunk) = self.output.try_recv() {
                self.absorb(&chunk);
            }
            if let Some(status) = self.child.try_wait()? {
                // Drain what the console printed last.
                while let Ok(chunk) = self.output.recv_timeout(Duration::from_millis(200)) {
                    self.absorb(&chunk);
                }
                self.exited = Some(status);
                self.check_violation()?;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: QEMU still running {timeout:?} after the power-off request\n{}",
                    self.name(),
                    self.tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pulls the plug: SIGKILL to QEMU. Unlike the monitor's `quit`, which drains and
    /// flushes the disks before QEMU exits, nothing in flight is finished; what the guest
    /// had not written out is lost. Writes QEMU had already handed to the host stay (a disk
    /// whose write cache survives power loss); a volatile disk cache is not simulated.
    pub fn pull_the_plug(&mut self) -> Result<()> {
        self.child.kill()?;
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(())
    }

    /// Every console line so far, with arrival times.
    pub fn lines(&self) -> &[(Duration, String)] {
        &self.lines
    }

    fn name(&self) -> String {
        self.log.file_stem().unwrap_or_default().to_string_lossy().into_owned()
    }

    /// The last console lines and where the whole log is, for failure messages.
    pub fn tail(&self) -> String {
        let from = self.lines.len().saturating_sub(40);
        let mut out = format!("--- last console lines (full log: {}) ---\n", self.log.display());
        for (at, line) in &self.lines[from..] {
            out.push_str(&format!("{:>7.2}s | {line}\n", at.as_secs_f64()));
        }
        if !self.partial.is_empty() {
            out.push_str(&format!("        | {}\n", self.partial));
        }
        out
    }
}

fn read_until_prompt(sock: &mut UnixStream) -> Result<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"(qemu) ") {
        let n = sock.read(&mut buf).context("reading the QEMU monitor")?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

impl Drop for Machine {
    fn drop(&mut self) {
        if self.exited.is_none() && self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.monitor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine whose console is a shell script's output.
    fn console(name: &str, script: &str) -> Machine {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        Machine::spawn(name, cmd, log_dir().join(format!("{name}.monitor"))).unwrap()
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_forbidden_line_printed_after_the_last_expect_is_caught() {
        let script = "echo 'ramkey: ready'; sleep 0.3; echo 'Kernel panic - not syncing'; echo 'power-off'";
        let mut vm = console("harness-forbid-after", script);
        vm.expect("ramkey: ready", 5 * SECOND).unwrap();
        // What the old `refute` did: only the lines read so far, which are clean.
        assert!(!vm.lines().iter().any(|(_, l)| l.contains("Kernel panic")));
        vm.forbid(&["Kernel panic"]).unwrap();
        let err = vm.expect("power-off", 5 * SECOND).unwrap_err();
        assert!(err.to_string().contains("Kernel panic - not syncing"), "{err}");

        let clean_script = "echo 'ramkey: ready'; sleep 0.3; echo 'power-off'";
        let mut clean = console("harness-forbid-clean", clean_script);
        clean.forbid(&["Kernel panic"]).unwrap();
        clean.expect("power-off", 5 * SECOND).unwrap();
    }

    #[test]
    fn refute_for_reads_on_for_its_duration() {
        let mut vm = console("harness-refute-for", "echo start; sleep 0.3; echo 'login: '; sleep 5");
        vm.expect("start", 5 * SECOND).unwrap();
        let err = vm.refute_for("login:", SECOND).unwrap_err();
        assert!(err.to_string().contains("unexpected console line"), "{err}");

        let mut quiet = console("harness-refute-quiet", "echo start; sleep 5");
        quiet.expect("start", 5 * SECOND).unwrap();
        quiet.refute_for("login:", SECOND).unwrap();
    }

    #[test]
    fn a_forbidden_line_fails_the_next_expect_and_the_exit() {
        let script = "echo one; echo '[    1.000000] ramkey: error: services: not started'; echo two";
        let mut vm = console("harness-forbid", script);
        vm.forbid(TROUBLE).unwrap();
        let err = vm.expect("two", 5 * SECOND).unwrap_err();
        assert!(err.to_string().contains("forbidden console line"), "{err}");
        assert!(vm.wait_exit(5 * SECOND).is_err());
        // A line seen before the call counts too.
        let mut late = console("harness-forbid-late", "echo 'Kernel panic'; echo two");
        late.expect("two", 5 * SECOND).unwrap();
        assert!(late.forbid(TROUBLE).is_err());
    }

    #[test]
    fn a_lazy_detach_is_not_a_clean_unmount() {
        let script = "echo '[   30.100000] ramkey: unmount /pool: ok (busy, remounted read-only, detached)'; sleep 2";
        let mut vm = console("harness-line", script);
        assert!(vm.expect_line("ramkey: unmount /pool: ok", SECOND).is_err());
        let mut clean = console("harness-line-clean", "echo '[   30.100000] ramkey: unmount /pool: ok'");
        let (_, line) = clean.expect_line("ramkey: unmount /pool: ok", 5 * SECOND).unwrap();
        assert!(line.starts_with("[   30.100000]"), "{line}");
        assert_eq!(message("no stamp here"), "no stamp here");
        assert_eq!(message("[abc] text"), "[abc] text");
    }

    #[test]
    fn a_character_split_between_reads_is_decoded_whole() {
        let dash = "—".as_bytes();
        let mut pending = b"DISKLESS ".to_vec();
        pending.extend_from_slice(&dash[..1]);
        assert_eq!(decode_complete(&mut pending), "DISKLESS ");
        assert_eq!(pending, &dash[..1]);
        pending.extend_from_slice(&dash[1..]);
        pending.extend_from_slice(b" data");
        assert_eq!(decode_complete(&mut pending), "— data");
        assert!(pending.is_empty());
        // Invalid bytes are replaced, not held back.
        let mut bad = vec![b'a', 0xff, b'b'];
        assert_eq!(decode_complete(&mut bad), "a\u{fffd}b");
    }
}
