//! The QEMU harness: starts `qemu-system-x86_64`, reads the serial console line by line,
//! waits for expected lines with deadlines, talks to the monitor, and keeps each run's
//! console log under `target/ramkey/logs/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The QEMU binary; a boot test fails, never skips, when it is missing.
pub const QEMU: &str = "qemu-system-x86_64";

/// What to boot and how.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Names the log file: `target/ramkey/logs/<name>.log`.
    pub name: String,
    pub memory_mb: u32,
    /// Direct kernel boot: kernel, initrd, command line.
    pub kernel: Option<(PathBuf, PathBuf, String)>,
    /// Further QEMU arguments (disks, NICs, firmware).
    pub args: Vec<String>,
}

impl Spec {
    /// A direct kernel boot of a built platform with the test console settings.
    pub fn direct(name: &str, platform: &Path, extra_cmdline: &str) -> Spec {
        let cmdline = format!("console=ttyS0 panic=-1 quiet {extra_cmdline}")
            .trim()
            .to_string();
        Spec {
            name: name.to_string(),
            memory_mb: 1024,
            kernel: Some((platform.join("vmlinuz"), platform.join("initrd.img"), cmdline)),
            args: Vec::new(),
        }
    }

    /// A machine described by `ramkey run`'s options — the same machine users get.
    pub fn run(name: &str, opts: &ramkey_builder::run::RunOptions) -> Result<Spec> {
        let args = ramkey_builder::run::machine_args(opts)?;
        Ok(Spec {
            name: name.to_string(),
            memory_mb: opts.memory_mb,
            kernel: None,
            args: args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect(),
        })
    }

    /// Adds a virtio NIC on QEMU's user network, optionally with host port forwards.
    pub fn user_net(mut self, forwards: &[(u16, u16)]) -> Spec {
        let mut netdev = "user,id=n0".to_string();
        for (host, guest) in forwards {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
        }
        self.args.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            "virtio-net-pci,netdev=n0".into(),
        ]);
        self
    }
}

/// The QEMU accelerator: `RAMKEY_ACCEL` if set, else `kvm` only when a probe showed that
/// KVM really boots the platform on this machine, else `tcg`. On this project's machines
/// `/dev/kvm` is there but stock kernels do not boot on it (FACTS.md), so the presence of the
/// device proves nothing. The probe's answer is cached in `target/ramkey/kvm-probe`.
pub fn accel() -> String {
    static ACCEL: OnceLock<String> = OnceLock::new();
    ACCEL
        .get_or_init(|| {
            if let Ok(accel) = std::env::var("RAMKEY_ACCEL") {
                return accel;
            }
            if !Path::new("/dev/kvm").exists() {
                return "tcg".into();
            }
            let cache = crate::artifacts::target_dir().join("ramkey/kvm-probe");
            if let Ok(answer) = std::fs::read_to_string(&cache) {
                return answer.trim().to_string();
            }
            let answer = if probe_kvm() { "kvm" } else { "tcg" };
            let _ = std::fs::create_dir_all(cache.parent().unwrap_or(Path::new(".")));
            let _ = std::fs::write(&cache, answer);
            eprintln!("xtask: KVM probe: using {answer} (cached in {})", cache.display());
            answer.into()
        })
        .clone()
}

/// Boots the platform into recovery mode under KVM; KVM works if PID 1 says so in time.
fn probe_kvm() -> bool {
    let Ok(platform) = crate::artifacts::platform() else {
        return false;
    };
    let Ok(mut child) = Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-M",
            "q35",
            "-cpu",
            "host",
            "-m",
            "512",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-no-reboot", "-serial", "stdio"])
        .arg("-kernel")
        .arg(platform.join("vmlinuz"))
        .arg("-initrd")
        .arg(platform.join("initrd.img"))
        .args(["-append", "console=ttyS0 panic=-1 quiet ramkey.recovery"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let stdout = child.stdout.take();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let Some(stdout) = stdout else { return };
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ramkey: RECOVERY MODE") {
                let _ = tx.send(());
                return;
            }
        }
    });
    let works = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    works
}

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

    fn check_violation(&self) -> Result<()> {
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
