//! The power button: evdev devices that report `KEY_POWER`, and their key presses.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sys::{self, EV_KEY, KEY_POWER};

/// Size of `struct input_event` on x86_64: timeval (16), type u16, code u16, value i32.
pub const INPUT_EVENT_SIZE: usize = 24;

/// True when `buf` holds a `KEY_POWER` press (value 1) among whole input events.
pub fn has_power_press(buf: &[u8]) -> bool {
    buf.chunks_exact(INPUT_EVENT_SIZE).any(|ev| {
        let u16_at = |i: usize| u16::from_ne_bytes([ev[i], ev[i + 1]]);
        let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
        u16_at(16) == EV_KEY && u16_at(18) == KEY_POWER && value == 1
    })
}

/// The open power-button devices, by path.
#[derive(Debug, Default)]
pub struct PowerButtons {
    devices: BTreeMap<PathBuf, File>,
}

impl PowerButtons {
    /// Opens every `<dev_root>/input/event*` that reports `KEY_POWER` and is not open yet.
    ///
    /// Returns the newly opened paths. Devices without the key are closed again.
    pub fn scan(&mut self, dev_root: &Path) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dev_root.join("input")) else {
            return Vec::new();
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("event"))
            .map(|e| e.path())
            .filter(|p| !self.devices.contains_key(p))
            .collect();
        paths.sort();
        let mut added = Vec::new();
        for path in paths {
            let file = match OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) => {
                    crate::warn!("cannot open {}: {e}", path.display());
                    continue;
                }
            };
            match sys::evdev_has_key(&file, KEY_POWER) {
                Ok(true) => {
                    crate::info!("power button: watching {}", path.display());
                    self.devices.insert(path.clone(), file);
                    added.push(path);
                }
                Ok(false) => {}
                Err(e) => crate::debug!("{}: {e}", path.display()),
            }
        }
        added
    }

    /// The open devices, for polling.
    pub fn devices(&self) -> impl Iterator<Item = (&Path, &File)> {
        self.devices.iter().map(|(p, f)| (p.as_path(), f))
    }

    /// True when no power button is open.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Reads what is pending on `path`; true on a power key press. A device that
    /// fails (unplugged) is closed.
    pub fn read_pressed(&mut self, path: &Path) -> bool {
        let Some(file) = self.devices.get(path) else {
            return false;
        };
        let mut buf = [0u8; INPUT_EVENT_SIZE * 16];
        let mut pressed = false;
        loop {
            match sys::read(file.as_fd(), &mut buf) {
                Ok(Some(0)) | Ok(None) => break,
                Ok(Some(n)) => pressed |= buf.get(..n).is_some_and(has_power_press),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    crate::warn!("power button {}: {e}; closing it", path.display());
                    self.devices.remove(path);
                    break;
                }
            }
        }
        pressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut ev = vec![0u8; 16];
        ev.extend_from_slice(&kind.to_ne_bytes());
        ev.extend_from_slice(&code.to_ne_bytes());
        ev.extend_from_slice(&value.to_ne_bytes());
        ev
    }

    #[test]
    fn press_is_detected_among_events() {
        let mut buf = event(EV_KEY, KEY_POWER, 1);
        buf.extend(event(0, 0, 0)); // EV_SYN
        assert!(has_power_press(&buf));
        let mut buf = event(0, 0, 0);
        buf.extend(event(EV_KEY, KEY_POWER, 1));
        assert!(has_power_press(&buf));
    }

    #[test]
    fn release_repeat_and_other_keys_are_ignored() {
        assert!(!has_power_press(&event(EV_KEY, KEY_POWER, 0)));
        assert!(!has_power_press(&event(EV_KEY, KEY_POWER, 2)));
        assert!(!has_power_press(&event(EV_KEY, 28, 1)));
        assert!(!has_power_press(&event(4, KEY_POWER, 1)));
        let partial = event(EV_KEY, KEY_POWER, 1);
        assert!(!has_power_press(&partial[..20]));
    }

    #[test]
    fn scan_without_input_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut buttons = PowerButtons::default();
        assert!(buttons.scan(dir.path()).is_empty());
        // Regular files are not evdev devices: the ioctl fails and they are not kept.
        std::fs::create_dir(dir.path().join("input")).unwrap();
        std::fs::write(dir.path().join("input/event0"), b"").unwrap();
        std::fs::write(dir.path().join("input/mice"), b"").unwrap();
        assert!(buttons.scan(dir.path()).is_empty());
        assert!(buttons.is_empty());
    }
}
