//! The PXE tree (`pxe/`): kernel, initrd, an iPXE script and a pxelinux config, to be served
//! by TFTP (dnsmasq on a real network, QEMU's built-in TFTP for `ramkey run --pxe`).

use std::path::{Path, PathBuf};

use crate::platform::VERSION;

/// syslinux's network boot loader and its core module (Debian: pxelinux, syslinux-common).
pub const PXELINUX: &str = "/usr/lib/PXELINUX/pxelinux.0";
pub const LDLINUX: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";

/// What can go wrong writing the tree.
#[derive(Debug, thiserror::Error)]
pub enum PxeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is missing ({source}): install the Debian packages pxelinux and syslinux-common")]
    Loader { path: PathBuf, source: std::io::Error },
}

/// Writes `dir/{vmlinuz,initrd.img,boot.ipxe,pxelinux.0,ldlinux.c32,pxelinux.cfg/default}`.
pub fn write(dir: &Path, platform: &Path, cmdline: &str, config_url: Option<&str>) -> Result<(), PxeError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PxeError::Io { path, source }
    };
    std::fs::create_dir_all(dir.join("pxelinux.cfg")).map_err(io(dir))?;
    for name in ["vmlinuz", "initrd.img"] {
        std::fs::copy(platform.join(name), dir.join(name)).map_err(io(&platform.join(name)))?;
    }
    for (src, name) in [(PXELINUX, "pxelinux.0"), (LDLINUX, "ldlinux.c32")] {
        std::fs::copy(src, dir.join(name)).map_err(|source| PxeError::Loader {
            path: src.into(),
            source,
        })?;
    }
    let cmdline = match config_url {
        Some(url) => format!("{cmdline} ramkey.config={url}"),
        None => cmdline.to_string(),
    };
    let cmdline = cmdline.trim();
    std::fs::write(dir.join("boot.ipxe"), ipxe_script(cmdline)).map_err(io(&dir.join("boot.ipxe")))?;
    let default = dir.join("pxelinux.cfg/default");
    std::fs::write(&default, pxelinux_cfg(cmdline)).map_err(io(&default))?;
    Ok(())
}

/// The iPXE script. iPXE itself expands `${mac}` (and any `${...}`) in the command line to
/// the booting NIC's address, the same form the init substitutes when pxelinux boots.
pub fn ipxe_script(cmdline: &str) -> String {
    format!(
        "#!ipxe\necho Ramkey {VERSION}: booting from ${{net0/mac}}\n\
         kernel vmlinuz initrd=initrd.img {cmdline}\ninitrd initrd.img\nboot\n"
    )
}

/// The pxelinux config; pxelinux leaves `${mac}` alone, and the init substitutes it.
pub fn pxelinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT ramkey\nPROMPT 0\n\nLABEL ramkey\n  SAY Booting Ramkey {VERSION}\n  \
         LINUX vmlinuz\n  INITRD initrd.img\n  APPEND {cmdline}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_the_command_line_and_config_url() {
        let s = ipxe_script("console=ttyS0 ramkey.config=http://10.0.2.2:8080/${mac}.toml");
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel vmlinuz initrd=initrd.img console=ttyS0 ramkey.config=http://10.0.2.2:8080/${mac}.toml\n"
        ));
        assert!(s.contains("initrd initrd.img\nboot\n"));
        let p = pxelinux_cfg("console=ttyS0");
        assert!(p.contains("LINUX vmlinuz\n  INITRD initrd.img\n  APPEND console=ttyS0\n"));
    }
}
