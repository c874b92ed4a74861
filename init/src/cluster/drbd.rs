//! DRBD as the kernel reports it (`/proc/drbd`, version 8.4's format) and as `drbdadm`
//! drives it, with our configuration file.

use std::path::Path;
use std::process::Command;

/// One DRBD device's state, from `/proc/drbd`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Device {
    /// The minor.
    pub minor: u32,
    /// The connection state (`Connected`, `WFConnection`, `StandAlone`, `SyncSource`, ...).
    pub cstate: String,
    /// This node's role and the peer's (`Primary`, `Secondary`, `Unknown`).
    pub roles: (String, String),
    /// This node's disk state and the peer's (`UpToDate`, `Inconsistent`, `DUnknown`, ...).
    pub disks: (String, String),
    /// KiB this node knows to be out of sync with the peer.
    pub out_of_sync_kib: u64,
    /// The resync's progress, when one runs (`12.5%`).
    pub synced: Option<String>,
}

/// The devices in `/proc/drbd`'s text.
pub fn parse(text: &str) -> Vec<Device> {
    let mut out: Vec<Device> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((minor, rest)) = trimmed.split_once(": ")
            && let Ok(minor) = minor.parse::<u32>()
            && rest.starts_with("cs:")
        {
            let mut device = Device {
                minor,
                ..Device::default()
            };
            for field in rest.split_whitespace() {
                let pair = |v: &str| {
                    let (a, b) = v.split_once('/').unwrap_or((v, ""));
                    (a.to_string(), b.to_string())
                };
                if let Some(v) = field.strip_prefix("cs:") {
                    device.cstate = v.to_string();
                } else if let Some(v) = field.strip_prefix("ro:") {
                    device.roles = pair(v);
                } else if let Some(v) = field.strip_prefix("ds:") {
                    device.disks = pair(v);
                }
            }
            out.push(device);
            continue;
        }
        let Some(device) = out.last_mut() else { continue };
        for field in trimmed.split_whitespace() {
            if let Some(v) = field.strip_prefix("oos:") {
                device.out_of_sync_kib = v.parse().unwrap_or(0);
            }
        }
        if let Some((_, rest)) = trimmed.split_once("sync'ed:") {
            device.synced = rest.split_whitespace().next().map(str::to_string);
        }
    }
    out
}

/// The device `minor` as the kernel reports it now (`proc` is `/proc`).
pub fn device(proc: &Path, minor: u32) -> Option<Device> {
    let text = std::fs::read_to_string(proc.join("drbd")).ok()?;
    parse(&text).into_iter().find(|d| d.minor == minor)
}

/// `drbdadm -c CONF ARGS...`; the error is the command and what it printed.
pub fn adm(conf: &Path, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new("drbdadm");
    command.arg("-c").arg(conf).args(args);
    // The agent blocks SIGTERM for its signalfd; drbdadm and its helpers must not.
    crate::sys::unblock_signals_on_exec(&mut command);
    let out = command
        .output()
        .map_err(|e| format!("drbdadm: {e} (drbd-utils is missing from the platform)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim();
        Err(format!("drbdadm {} failed ({}): {said}", args.join(" "), out.status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNCING: &str = "version: 8.4.11 (api:1/proto:86-101)
srcversion: 211FB288A383ED945B83420
 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:1024 nr:0 dw:2048 dr:4096 al:8 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:52224
\t[==>.................] sync'ed: 17.3% (52224/65536)K
\tfinish: 0:00:03 speed: 13,312 (13,312) K/sec
 1: cs:StandAlone ro:Secondary/Unknown ds:UpToDate/DUnknown   r-----
    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:12
";

    #[test]
    fn reads_each_devices_state_and_resync() {
        let devices = parse(SYNCING);
        assert_eq!(devices.len(), 2);
        let d = &devices[0];
        assert_eq!((d.minor, d.cstate.as_str()), (0, "SyncSource"));
        assert_eq!(d.roles, ("Primary".into(), "Secondary".into()));
        assert_eq!(d.disks, ("UpToDate".into(), "Inconsistent".into()));
        assert_eq!((d.out_of_sync_kib, d.synced.as_deref()), (52224, Some("17.3%")));
        let s = &devices[1];
        assert_eq!(
            (s.cstate.as_str(), s.out_of_sync_kib, s.synced.as_deref()),
            ("StandAlone", 12, None)
        );
    }
}
