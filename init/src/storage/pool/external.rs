//! The platform's own probes, asked right before any mkfs: `wipefs --no-act DEV` and
//! `blkid -p -o export DEV` (util-linux), when the platform has them. The default platform
//! does not (see `docs/pool.md`): then PID 1's probes ([`super::signatures`]) decide alone.
//!
//! `mke2fs` itself is no guard: without a terminal it formats over anything.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::create::{CreateError, find_tool};
use super::signatures::{Found, Remedy};

/// The tool `name` under `root`, unless missing or a busybox applet (busybox's blkid has no
/// `-p`, and it has no wipefs).
fn util_linux(root: &Path, name: &str) -> Option<PathBuf> {
    let path = find_tool(root, name)?;
    let target = std::fs::read_link(&path).ok();
    if target.is_some_and(|t| t.file_name().is_some_and(|n| n == "busybox")) {
        return None;
    }
    Some(path)
}

fn run(tool: &Path, name: &str, args: &[&str], device: &Path) -> Result<(String, Output), CreateError> {
    let command = format!("{name} {} {}", args.join(" "), device.display());
    let out = Command::new(tool)
        .args(args)
        .arg(device)
        .stdin(Stdio::null())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .map_err(|source| CreateError::Spawn {
            tool: tool.to_owned(),
            source,
        })?;
    Ok((command, out))
}

fn failed(command: String, out: &Output) -> CreateError {
    let mut output = String::from_utf8_lossy(&out.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stdout));
    let output = output.trim().replace('\n', "; ");
    CreateError::Failed {
        command,
        status: out.status.to_string(),
        output: if output.is_empty() { "no output".into() } else { output },
    }
}

fn wipefs_says(what: String, offset: Option<u64>) -> Option<Found> {
    Some(Found {
        what,
        offset,
        remedy: Remedy::Wipefs,
    })
}

/// What `wipefs --no-act` printed: every line but its header names a signature (`DEVICE
/// OFFSET TYPE ...`; older ones print `0x438 ext4 [filesystem]`).
pub fn parse_wipefs(text: &str) -> Option<Found> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(i) = words.iter().position(|w| w.starts_with("0x")) else {
            continue;
        };
        let offset = u64::from_str_radix(&words[i][2..], 16).ok();
        let kind = words.get(i + 1).copied().unwrap_or("unknown");
        return wipefs_says(format!("a {kind:?} signature, as wipefs says"), offset);
    }
    let first = lines
        .iter()
        .find(|l| !l.starts_with("DEVICE") && !l.starts_with("offset"))?;
    wipefs_says(format!("a signature, as wipefs says ({first})"), None)
}

/// What `blkid -p -o export` printed with exit 0 (something found): its `PTTYPE` or
/// `TYPE` (blkid gives no offset).
pub fn parse_blkid(text: &str) -> Found {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let what = if let Some(pt) = value("PTTYPE") {
        format!("a {pt:?} partition table, as blkid -p says")
    } else if let Some(t) = value("TYPE") {
        match value("LABEL") {
            Some(label) => format!("a {t:?} signature labelled {label:?}, as blkid -p says"),
            None => format!("a {t:?} signature, as blkid -p says"),
        }
    } else {
        format!("something, as blkid -p says ({})", text.trim().replace('\n', " "))
    };
    Found {
        what,
        offset: None,
        remedy: Remedy::Wipefs,
    }
}

/// Asks `wipefs --no-act` then `blkid -p` (those the platform under `root` has) about
/// `device`: `Ok(None)` when neither finds anything or neither is there; a failed probe is
/// an error (the disk is not formatted).
pub fn probe(root: &Path, device: &Path) -> Result<Option<Found>, CreateError> {
    let (wipefs, blkid) = (util_linux(root, "wipefs"), util_linux(root, "blkid"));
    if wipefs.is_none() && blkid.is_none() {
        crate::notice!(
            "pool: the platform has neither blkid nor wipefs (util-linux): only PID 1's own probes looked at {}",
            device.display()
        );
        return Ok(None);
    }
    if let Some(tool) = &wipefs {
        let (command, out) = run(tool, "wipefs", &["--no-act"], device)?;
        if !out.status.success() {
            return Err(failed(command, &out));
        }
        if let Some(found) = parse_wipefs(&String::from_utf8_lossy(&out.stdout)) {
            return Ok(Some(found));
        }
    }
    if let Some(tool) = &blkid {
        let (command, out) = run(tool, "blkid", &["-p", "-o", "export"], device)?;
        match out.status.code() {
            Some(2) => {}
            Some(0) => return Ok(Some(parse_blkid(&String::from_utf8_lossy(&out.stdout)))),
            Some(8) => {
                return Ok(Some(Found {
                    what: "several signatures (blkid -p: ambivalent result)".into(),
                    offset: None,
                    remedy: Remedy::Wipefs,
                }));
            }
            _ => return Err(failed(command, &out)),
        }
    }
    let names: Vec<&str> = [("wipefs", &wipefs), ("blkid", &blkid)]
        .iter()
        .filter(|(_, t)| t.is_some())
        .map(|(n, _)| *n)
        .collect();
    crate::info!("pool: {} find nothing on {}", names.join(" and "), device.display());
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wipefs_lines() {
        assert_eq!(parse_wipefs(""), None);
        let f = parse_wipefs("DEVICE OFFSET TYPE UUID LABEL\nvdb    0x438  ext4 fd98-11 data\n").unwrap();
        assert_eq!(
            (f.what.as_str(), f.offset),
            ("a \"ext4\" signature, as wipefs says", Some(0x438))
        );
        let old = "offset               type\n----------------\n0x200  gpt   [partition table]\n";
        assert_eq!(parse_wipefs(old).unwrap().offset, Some(0x200));
        let odd = parse_wipefs("something new\n").unwrap();
        assert_eq!(
            (odd.what.as_str(), odd.offset),
            ("a signature, as wipefs says (something new)", None)
        );
    }

    #[test]
    fn blkid_export() {
        let f = parse_blkid("DEVNAME=/dev/vdb\nLABEL=data\nUUID=1\nTYPE=ext4\nUSAGE=filesystem\n");
        assert_eq!(f.what, "a \"ext4\" signature labelled \"data\", as blkid -p says");
        assert_eq!(
            parse_blkid("DEVNAME=/dev/vdb\nPTUUID=x\nPTTYPE=dos\n").what,
            "a \"dos\" partition table, as blkid -p says"
        );
    }

    #[test]
    fn a_busybox_applet_is_not_util_linux() {
        let dir = tempfile::tempdir().unwrap();
        let sbin = dir.path().join("sbin");
        std::fs::create_dir_all(&sbin).unwrap();
        std::os::unix::fs::symlink("../busybox", sbin.join("blkid")).unwrap();
        std::fs::write(dir.path().join("busybox"), "").unwrap();
        assert_eq!(util_linux(dir.path(), "blkid"), None);
        assert_eq!(
            probe(dir.path(), Path::new("/dev/null")).unwrap(),
            None,
            "no tools: nothing said"
        );
    }
}
