//! A DNS server on the host for the boot tests: Debian's `dnsmasq` on 127.0.0.1:53, which
//! QEMU's user network shows the box as 10.0.2.2:53. It answers only the names it is given
//! (an address, or "no such name"), never asks upstream, and is killed when dropped.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running `dnsmasq`.
#[derive(Debug)]
pub struct Dnsmasq {
    child: Child,
}

impl Dnsmasq {
    /// Serves `names`: each with `Some(address)` answers that address, with `None` "no such
    /// name". Fails when port 53 on 127.0.0.1 is taken or dnsmasq is missing.
    pub fn start(names: &[(&str, Option<&str>)]) -> Result<Dnsmasq> {
        let mut command = Command::new("dnsmasq");
        command.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--port=53",
            "--pid-file=",
            "--log-queries",
            "--log-facility=-",
        ]);
        for (name, address) in names {
            command.arg(format!("--address=/{name}/{}", address.unwrap_or("")));
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("dnsmasq (Debian's dnsmasq-base; `cargo xtask deps` installs it)")?;
        // dnsmasq exits at once when it cannot listen; give it a moment to say so.
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            if let Some(status) = child.try_wait()? {
                let mut said = String::new();
                if let Some(mut err) = child.stderr.take() {
                    let _ = err.read_to_string(&mut said);
                }
                bail!("dnsmasq on 127.0.0.1:53 exited ({status}): {}", said.trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Dnsmasq { child })
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
