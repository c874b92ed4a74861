//! The USB/CF stick image (`usb.img`): GPT with a protective MBR carrying syslinux's
//! `gptmbr.bin`, one FAT32 partition labelled `RAMKEY` (EFI system partition type, legacy
//! BIOS bootable attribute), systemd-boot for UEFI, syslinux for BIOS, `/platform/a/`,
//! `/config.toml` and `/personalities/`. Built without root or loop devices: the partition
//! table with `gptman`, the filesystem with `mkfs.vfat --offset --invariant`, files with
//! mtools (which honours `SOURCE_DATE_EPOCH`), and `syslinux --offset`.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use gptman::{GPT, GPTPartitionEntry};
use sha2::{Digest, Sha256};

use crate::platform::VERSION;
use crate::tools::{self, ToolError};

/// The label the init looks for.
pub const LABEL: &str = ramkey_config::USBKEY_LABEL;
/// Sector size of the image.
const SECTOR: u64 = 512;
/// The FAT partition starts at 1 MiB, as partitioning tools align it.
const FIRST_LBA: u64 = 2048;
/// GPT attribute bit 2: legacy BIOS bootable (what `gptmbr.bin` looks for).
const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;
/// The EFI system partition type GUID, C12A7328-F81F-11D2-BA4B-00A0C93EC93B, as stored.
const ESP_TYPE: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
/// Where Debian's packages put the boot loaders.
pub const GPTMBR: &str = "/usr/lib/syslinux/mbr/gptmbr.bin";
pub const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// What goes on the stick.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// A platform folder: `vmlinuz`, `initrd.img`, `version`, `SHA256SUMS`.
    pub platform: &'a Path,
    /// The usbkey config written as `/config.toml`.
    pub config: &'a str,
    /// Kernel command line of the boot entries (the slot is added).
    pub cmdline: &'a str,
    /// Personality images copied into `/personalities/`.
    pub personalities: &'a [PathBuf],
    /// Image size; the FAT partition takes all of it but the partition tables.
    pub size_mib: u64,
    pub epoch: u32,
}

/// What can go wrong writing the image.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the UEFI boot loader {path}: {source}; install Debian's systemd-boot-efi (cargo xtask deps does)")]
    BootLoader { path: PathBuf, source: std::io::Error },
    #[error("partition table of {path}: {source}")]
    Gpt { path: PathBuf, source: gptman::Error },
    #[error("image size {size_mib} MiB is too small: the files need {need_mib} MiB; raise [usb] size_mib")]
    TooSmall { size_mib: u64, need_mib: u64 },
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// Where the FAT partition is, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub offset: u64,
    pub size: u64,
}

/// Writes `out` (replacing it) and returns where the FAT partition is.
pub fn write(out: &Path, inputs: &Inputs<'_>) -> Result<Partition, UsbError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| UsbError::Io { path, source }
    };
    let boot_loader = std::fs::read(SYSTEMD_BOOT).map_err(|source| UsbError::BootLoader {
        path: SYSTEMD_BOOT.into(),
        source,
    })?;
    let files = stick_files(inputs, boot_loader).map_err(io(inputs.platform))?;
    let need: u64 = files.iter().map(|(_, data)| data.len() as u64).sum();
    let need_mib = need.div_ceil(1 << 20) + 40; // FAT32 needs about 33 MiB of clusters at least
    if inputs.size_mib < need_mib {
        return Err(UsbError::TooSmall {
            size_mib: inputs.size_mib,
            need_mib,
        });
    }
    let tmp = out.with_extension("img.partial");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.set_len(inputs.size_mib << 20).map_err(io(&tmp))?;
    let partition = partition_table(&mut file, &tmp, &files)?;
    drop(file);

    let blocks_kib = (partition.size / 1024).to_string();
    let volume_id = format!(
        "{:08x}",
        u32::from_be_bytes(seed(&files)[..4].try_into().expect("4 bytes"))
    );
    tools::run(
        "mkfs.vfat",
        "dosfstools",
        [
            "-F",
            "32",
            "-n",
            LABEL,
            "-i",
            &volume_id,
            "--invariant",
            "-h",
            &FIRST_LBA.to_string(),
            "--offset",
            &FIRST_LBA.to_string(),
            path_str(&tmp),
            &blocks_kib,
        ],
        &[],
    )?;
    copy_files(&tmp, partition, &files, inputs.epoch)?;
    tools::run(
        "syslinux",
        "syslinux",
        [
            "--offset",
            &partition.offset.to_string(),
            "--install",
            "--directory",
            "/syslinux",
            path_str(&tmp),
        ],
        &mtools_env(inputs.epoch),
    )?;
    mirror_boot_sector(&tmp, partition).map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(partition)
}

/// syslinux rewrites the FAT32 boot sector but not its backup (`BPB_BkBootSec`); copy it
/// so that `fsck.vfat` finds them equal.
fn mirror_boot_sector(img: &Path, part: Partition) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = OpenOptions::new().read(true).write(true).open(img)?;
    let mut sector = [0u8; SECTOR as usize];
    f.seek(SeekFrom::Start(part.offset))?;
    f.read_exact(&mut sector)?;
    let backup = u64::from(u16::from_le_bytes([sector[50], sector[51]]));
    if backup != 0 {
        f.seek(SeekFrom::Start(part.offset + backup * SECTOR))?;
        f.write_all(&sector)?;
    }
    f.sync_all()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// A seed for the disk's GUIDs and volume id: a hash of everything on it, so that the same
/// inputs give the same image and different images get different identities.
fn seed(files: &[(String, Vec<u8>)]) -> [u8; 32] {
    let mut h = Sha256::new();
    for (path, data) in files {
        h.update(path.as_bytes());
        h.update(Sha256::digest(data));
    }
    h.finalize().into()
}

fn guid(seed: &[u8; 32], which: u8) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(seed);
    h.update([which]);
    let d = h.finalize();
    let mut g: [u8; 16] = d[..16].try_into().expect("16 bytes");
    g[7] = (g[7] & 0x0f) | 0x40; // version 4 (mixed-endian field 3)
    g[8] = (g[8] & 0x3f) | 0x80; // RFC 4122 variant
    g
}

fn partition_table(file: &mut File, path: &Path, files: &[(String, Vec<u8>)]) -> Result<Partition, UsbError> {
    let gpt_err = |source| UsbError::Gpt {
        path: path.to_path_buf(),
        source,
    };
    let seed = seed(files);
    let mut gpt = GPT::new_from(file, SECTOR, guid(&seed, 0)).map_err(gpt_err)?;
    // End on a 1 MiB boundary so that the filesystem size is whole.
    let last = ((gpt.header.last_usable_lba + 1) / FIRST_LBA) * FIRST_LBA - 1;
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: ESP_TYPE,
        unique_partition_guid: guid(&seed, 1),
        starting_lba: FIRST_LBA,
        ending_lba: last,
        attribute_bits: LEGACY_BIOS_BOOTABLE,
        partition_name: LABEL.into(),
    };
    gpt.write_into(file).map_err(gpt_err)?;
    GPT::write_protective_mbr_into(file, SECTOR).map_err(gpt_err)?;
    let mbr = std::fs::read(GPTMBR).map_err(|source| {
        UsbError::Tool(ToolError::Missing {
            program: GPTMBR.into(),
            package: "syslinux-common",
            source,
        })
    })?;
    let io = |source| UsbError::Io {
        path: path.to_path_buf(),
        source,
    };
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&mbr[..mbr.len().min(440)]).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Partition {
        offset: FIRST_LBA * SECTOR,
        size: (last - FIRST_LBA + 1) * SECTOR,
    })
}

fn mtools_env(epoch: u32) -> Vec<(&'static str, String)> {
    vec![
        ("MTOOLS_SKIP_CHECK", "1".into()),
        ("SOURCE_DATE_EPOCH", epoch.to_string()),
        ("TZ", "UTC".into()),
    ]
}

/// Copies the files in path order, making directories first, so that directory entries
/// are in the same order every time.
fn copy_files(img: &Path, part: Partition, files: &[(String, Vec<u8>)], epoch: u32) -> Result<(), UsbError> {
    let target = format!("{}@@{}", img.display(), part.offset);
    let env = mtools_env(epoch);
    let staging = tempfile::tempdir().map_err(|source| UsbError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let mut made = std::collections::BTreeSet::new();
    for (path, data) in files {
        let mut dir = String::new();
        for part in path
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            dir = format!("{dir}/{part}");
            if made.insert(dir.clone()) {
                tools::run("mmd", "mtools", ["-i", &target, &format!("::{dir}")], &env)?;
            }
        }
        if path.ends_with('/') {
            continue;
        }
        let host = staging.path().join("f");
        std::fs::write(&host, data).map_err(|source| UsbError::Io {
            path: host.clone(),
            source,
        })?;
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.into());
        File::options()
            .write(true)
            .open(&host)
            .and_then(|f| f.set_modified(mtime))
            .map_err(|source| UsbError::Io {
                path: host.clone(),
                source,
            })?;
        tools::run(
            "mcopy",
            "mtools",
            ["-m", "-o", "-i", &target, path_str(&host), &format!("::/{path}")],
            &env,
        )?;
    }
    Ok(())
}

/// Every file of the stick, by path, in a fixed order. A path ending in `/` is an empty
/// directory. Slot a holds the platform; slot b's boot entries are there from the start
/// (syslinux's `ramkey-b` label) so that an upgrade only writes `/platform/b/` and arms
/// it (`docs/upgrades.md`); `/platform/b/` itself is not made.
fn stick_files(inputs: &Inputs<'_>, boot_loader: Vec<u8>) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let p = inputs.platform;
    let mut files = vec![
        ("EFI/BOOT/BOOTX64.EFI".to_string(), boot_loader),
        ("config.toml".into(), inputs.config.as_bytes().to_vec()),
        (
            "loader/entries/ramkey-gen-1-a.conf".into(),
            sd_boot_entry(
                &format!("Ramkey {VERSION} (slot a)"),
                "a",
                &slot_cmdline(inputs.cmdline, "a"),
            )
            .into_bytes(),
        ),
        (
            "loader/entries/ramkey-recovery.conf".into(),
            sd_boot_entry(
                &format!("Ramkey {VERSION} recovery"),
                "a",
                &format!("{} ramkey.recovery", slot_cmdline(inputs.cmdline, "a")),
            )
            .into_bytes(),
        ),
        ("loader/loader.conf".into(), LOADER_CONF.as_bytes().to_vec()),
        ("personalities/".into(), Vec::new()),
        (
            "syslinux/syslinux.cfg".into(),
            syslinux_cfg(inputs.cmdline).into_bytes(),
        ),
    ];
    for name in ["SHA256SUMS", "initrd.img", "version", "vmlinuz"] {
        files.push((format!("platform/a/{name}"), std::fs::read(p.join(name))?));
    }
    for image in inputs.personalities {
        let name = image.file_name().unwrap_or_default().to_string_lossy();
        files.push((format!("personalities/{name}"), std::fs::read(image)?));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// systemd-boot's settings: the highest generation `ramkey-gen-N-SLOT[+T].conf` that is not
/// spent boots (boot counting, `docs/upgrades.md`); the recovery entry is outside the glob.
const LOADER_CONF: &str = "default ramkey-gen-*\ntimeout 0\nconsole-mode keep\neditor yes\n";

/// The command line of a slot's entries: the appliance's plus `ramkey.slot=SLOT`.
fn slot_cmdline(cmdline: &str, slot: &str) -> String {
    format!("{cmdline} ramkey.slot={slot}").trim().to_string()
}

fn sd_boot_entry(title: &str, slot: &str, options: &str) -> String {
    format!(
        "title {title}\nversion {VERSION}\nlinux /platform/{slot}/vmlinuz\ninitrd /platform/{slot}/initrd.img\noptions {options}\n"
    )
}

/// syslinux's menu: `DEFAULT` names the committed slot (PID 1 rewrites that line when it
/// commits an upgrade); slot b's label does not name a version, as the upgrade that fills
/// the slot does not rewrite it.
fn syslinux_cfg(cmdline: &str) -> String {
    let (a, b) = (slot_cmdline(cmdline, "a"), slot_cmdline(cmdline, "b"));
    // PROMPT 0: boot the default at once; hold Shift or Alt for the boot: prompt.
    format!(
        "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT ramkey-a\n\n\
         LABEL ramkey-a\n  SAY Booting Ramkey {VERSION} (slot a)\n  LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND {a}\n\n\
         LABEL ramkey-b\n  SAY Booting Ramkey (slot b)\n  LINUX /platform/b/vmlinuz\n  INITRD /platform/b/initrd.img\n  APPEND {b}\n\n\
         LABEL recovery\n  LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND {a} ramkey.recovery\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMDLINE: &str = "console=ttyS0,115200n8 panic=10";

    fn files() -> Vec<(String, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        for name in ["SHA256SUMS", "initrd.img", "version", "vmlinuz"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let inputs = Inputs {
            platform: dir.path(),
            config: "version = 1\n",
            cmdline: CMDLINE,
            personalities: &[],
            size_mib: 1024,
            epoch: 0,
        };
        stick_files(&inputs, b"MZ".to_vec()).unwrap()
    }

    fn text<'a>(files: &'a [(String, Vec<u8>)], path: &str) -> &'a str {
        let (_, data) = files
            .iter()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no {path}"));
        std::str::from_utf8(data).unwrap()
    }

    #[test]
    fn the_stick_has_slot_a_and_the_boot_entries_of_both_slots() {
        let files = files();
        let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "EFI/BOOT/BOOTX64.EFI",
                "config.toml",
                "loader/entries/ramkey-gen-1-a.conf",
                "loader/entries/ramkey-recovery.conf",
                "loader/loader.conf",
                "personalities/",
                "platform/a/SHA256SUMS",
                "platform/a/initrd.img",
                "platform/a/version",
                "platform/a/vmlinuz",
                "syslinux/syslinux.cfg",
            ]
        );
    }

    #[test]
    fn syslinux_boots_the_default_slot_and_has_a_label_per_slot_and_recovery() {
        let v = VERSION;
        let c = CMDLINE;
        assert_eq!(
            text(&files(), "syslinux/syslinux.cfg"),
            format!(
                "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT ramkey-a\n\n\
                 LABEL ramkey-a\n  SAY Booting Ramkey {v} (slot a)\n  LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND {c} ramkey.slot=a\n\n\
                 LABEL ramkey-b\n  SAY Booting Ramkey (slot b)\n  LINUX /platform/b/vmlinuz\n  INITRD /platform/b/initrd.img\n  APPEND {c} ramkey.slot=b\n\n\
                 LABEL recovery\n  LINUX /platform/a/vmlinuz\n  INITRD /platform/a/initrd.img\n  APPEND {c} ramkey.slot=a ramkey.recovery\n"
            )
        );
    }

    #[test]
    fn systemd_boot_takes_the_newest_generation_and_keeps_recovery_outside_the_glob() {
        let files = files();
        let v = VERSION;
        let c = CMDLINE;
        assert_eq!(
            text(&files, "loader/loader.conf"),
            "default ramkey-gen-*\ntimeout 0\nconsole-mode keep\neditor yes\n"
        );
        assert_eq!(
            text(&files, "loader/entries/ramkey-gen-1-a.conf"),
            format!(
                "title Ramkey {v} (slot a)\nversion {v}\nlinux /platform/a/vmlinuz\ninitrd /platform/a/initrd.img\noptions {c} ramkey.slot=a\n"
            )
        );
        assert_eq!(
            text(&files, "loader/entries/ramkey-recovery.conf"),
            format!(
                "title Ramkey {v} recovery\nversion {v}\nlinux /platform/a/vmlinuz\ninitrd /platform/a/initrd.img\noptions {c} ramkey.slot=a ramkey.recovery\n"
            )
        );
    }
}
