//! Where PID 1 finds things, all under one injectable root (`/` on the box).

use std::path::{Path, PathBuf};

/// Where the pool is mounted on the box, as messages name it (`Paths::pool` under a root).
pub const POOL: &str = "/pool";

/// Where the usbkey is mounted on the box, as messages name it (`Paths::usbkey` under a
/// root).
pub const USBKEY: &str = "/usbkey";

/// PID 1's control socket on the box, as `ramkeyctl` reaches it (`Paths::control_socket`
/// under a root; a zone's PID 1 binds its own at the same place in the zone).
pub const CONTROL_SOCKET: &str = "/run/ramkey/control.sock";

/// The packed platform in the initramfs, as the builder writes it and messages name it.
pub const PACKED_IMAGE: &str = "lib/ramkey/platform.sqfs";

/// The filesystem locations PID 1 uses, relative to a root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `/` on the box, a temporary directory in tests.
    pub root: PathBuf,
}

impl Paths {
    /// Paths under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    /// The running system's own root, `/`: the box's for PID 1, `ramkeyctl` and the zone
    /// launcher; a zone's own once its PID 1 entered it.
    pub fn system() -> Self {
        Paths::new("/")
    }

    fn under(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Where sysfs is mounted.
    pub fn sys(&self) -> PathBuf {
        self.under("sys")
    }

    /// Where devtmpfs is mounted.
    pub fn dev(&self) -> PathBuf {
        self.under("dev")
    }

    /// The console device.
    pub fn console(&self) -> PathBuf {
        self.under("dev/console")
    }

    /// Where procfs is mounted.
    pub fn proc(&self) -> PathBuf {
        self.under("proc")
    }

    /// `/proc/PID` (`self` for this process).
    pub fn proc_of(&self, pid: impl std::fmt::Display) -> PathBuf {
        self.proc().join(pid.to_string())
    }

    /// The highest capability number the kernel knows.
    pub fn cap_last_cap(&self) -> PathBuf {
        self.under("proc/sys/kernel/cap_last_cap")
    }

    /// Where the pool is mounted ([`POOL`]).
    pub fn pool(&self) -> PathBuf {
        self.under(POOL.trim_start_matches('/'))
    }

    /// Where the usbkey is mounted ([`USBKEY`]).
    pub fn usbkey(&self) -> PathBuf {
        self.under(USBKEY.trim_start_matches('/'))
    }

    /// The usbkey's config file (the usbkey mounted at `/usbkey`).
    pub fn usbkey_config(&self) -> PathBuf {
        self.usbkey().join("config.toml")
    }

    /// PID 1's control socket ([`CONTROL_SOCKET`]).
    pub fn control_socket(&self) -> PathBuf {
        self.under(CONTROL_SOCKET.trim_start_matches('/'))
    }

    /// The initramfs's `/init`: every file of it carries the platform's build time.
    pub fn init(&self) -> PathBuf {
        self.under("init")
    }

    /// The resolver configuration.
    pub fn resolv_conf(&self) -> PathBuf {
        self.under("etc/resolv.conf")
    }

    /// Root's home directory.
    pub fn root_home(&self) -> PathBuf {
        self.under("root")
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> PathBuf {
        self.under("proc/cmdline")
    }

    /// The mount table.
    pub fn mounts(&self) -> PathBuf {
        self.under("proc/self/mounts")
    }

    /// The running kernel's release (`uname -r`).
    pub fn osrelease(&self) -> PathBuf {
        self.under("proc/sys/kernel/osrelease")
    }

    /// The modules the kernel already has.
    pub fn proc_modules(&self) -> PathBuf {
        self.under("proc/modules")
    }

    /// `/lib/modules/<KVER>`.
    pub fn modules_dir(&self, kernel_release: &str) -> PathBuf {
        self.under("lib/modules").join(kernel_release)
    }

    /// The packed platform: the squashfs in the initramfs that holds the extras and most
    /// modules (`crate::storage::packed`).
    pub fn packed_image(&self) -> PathBuf {
        self.under(PACKED_IMAGE)
    }

    /// Where the packed platform is mounted before its folders are merged into the root.
    pub fn packed_mount(&self) -> PathBuf {
        self.under("run/ramkey/packed")
    }

    /// The platform's `/etc/os-release`.
    pub fn os_release(&self) -> PathBuf {
        self.under("etc/os-release")
    }

    /// A field of `/etc/os-release` (`VERSION_ID`, `PRETTY_NAME`), unquoted.
    pub fn os_release_field(&self, key: &str) -> Option<String> {
        let [value] = self.os_release_fields([key])?;
        value
    }

    /// Fields of `/etc/os-release`, unquoted, from one read; `None` without the file.
    pub fn os_release_fields<const N: usize>(&self, keys: [&str; N]) -> Option<[Option<String>; N]> {
        let text = std::fs::read_to_string(self.os_release()).ok()?;
        Some(keys.map(|key| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_owned())
        }))
    }

    /// The root itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_under_the_root() {
        let p = Paths::new("/tmp/x");
        assert_eq!(p.cmdline(), PathBuf::from("/tmp/x/proc/cmdline"));
        assert_eq!(
            p.modules_dir("6.1.0-28-amd64"),
            PathBuf::from("/tmp/x/lib/modules/6.1.0-28-amd64")
        );
        assert_eq!(Paths::new("/").sys(), PathBuf::from("/sys"));
        assert_eq!(p.proc_of(42).join("root"), PathBuf::from("/tmp/x/proc/42/root"));
        assert_eq!(Paths::system().usbkey_config(), PathBuf::from("/usbkey/config.toml"));
        assert_eq!(Paths::system().usbkey(), PathBuf::from(USBKEY));
        assert_eq!(Paths::system().pool(), PathBuf::from(POOL));
        assert_eq!(p.control_socket(), PathBuf::from("/tmp/x/run/ramkey/control.sock"));
        assert_eq!(Paths::system().control_socket(), PathBuf::from(CONTROL_SOCKET));
    }
}
