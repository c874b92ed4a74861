//! The QEMU machine definition behind `ramkey run` and the xtask boot tests: firmware,
//! disks, NICs and boot source ([`machine_args`]), with the pool disk and the PXE tree
//! rewritten for a config URL that it sets up.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{BOOT_SCRIPT, Boot, Firmware, OVMF_CODE, OVMF_VARS, RunError, RunOptions};

fn need(path: &Path, hint: &'static str) -> Result<(), RunError> {
    if path.exists() {
        Ok(())
    } else {
        Err(RunError::Missing {
            path: path.into(),
            hint,
        })
    }
}

/// QEMU's `-drive`/`-netdev` option values separate with commas; a comma in a path doubles.
pub(super) fn opt_path(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The machine: firmware, disks, NIC and boot source — everything but the accelerator,
/// machine type, CPU, memory, `-nodefaults`, display, serial, monitor and `-no-reboot`,
/// which the caller adds (`command` for an interactive run, the xtask harness for tests).
/// Creates the pool when missing, the OVMF variables copy and the rewritten PXE tree.
pub fn machine_args(opts: &RunOptions) -> Result<Vec<OsString>, RunError> {
    let mut args: Vec<String> = Vec::new();
    let state = opts.state_dir();
    let mkstate = || {
        std::fs::create_dir_all(&state).map_err(|source| RunError::Io {
            what: "creating",
            path: state.clone(),
            source,
        })
    };
    if opts.firmware == Firmware::Uefi {
        need(Path::new(OVMF_CODE), "install the ovmf package")?;
        need(Path::new(OVMF_VARS), "install the ovmf package")?;
        mkstate()?;
        let vars = state.join("OVMF_VARS.fd");
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars).map_err(|source| RunError::Io {
                what: "copying OVMF's variables to",
                path: vars.clone(),
                source,
            })?;
        }
        args.extend([
            "-drive".into(),
            format!("if=pflash,format=raw,readonly=on,file={OVMF_CODE}"),
            "-drive".into(),
            format!("if=pflash,format=raw,file={}", opt_path(&vars)),
        ]);
    }
    let mut netdev = "user,id=n0".to_string();
    match &opts.boot {
        Boot::Usb { image } => {
            need(image, "build it with `ramkey build` or give the right path")?;
            if opts.config_url.is_some() {
                return Err(RunError::ConfigUrlOnUsb);
            }
            args.extend([
                "-device".into(),
                "qemu-xhci,id=xhci".into(),
                "-drive".into(),
                format!("if=none,id=stick,format=raw,file={}", opt_path(image)),
                "-device".into(),
                "usb-storage,bus=xhci.0,drive=stick,removable=on,bootindex=1".into(),
            ]);
        }
        Boot::Pxe { dir } => {
            need(&dir.join(BOOT_SCRIPT), "give a PXE tree built by `ramkey build`")?;
            let root = match &opts.config_url {
                None => dir.clone(),
                Some(url) => {
                    mkstate()?;
                    pxe_with_config(dir, &state.join("tftp"), url)?
                }
            };
            netdev.push_str(&format!(",tftp={},bootfile={BOOT_SCRIPT}", opt_path(&root)));
            args.extend(["-boot".into(), "n".into()]);
        }
        Boot::Kernel { platform } => {
            let (kernel, initrd) = (platform.join("vmlinuz"), platform.join("initrd.img"));
            need(&kernel, "give a platform folder built by `ramkey build`")?;
            need(&initrd, "give a platform folder built by `ramkey build`")?;
            let mut cmdline = "console=ttyS0".to_string();
            if let Some(url) = &opts.config_url {
                cmdline.push_str(&format!(" ramkey.config={url}"));
            }
            if !opts.append.trim().is_empty() {
                cmdline.push(' ');
                cmdline.push_str(opts.append.trim());
            }
            args.extend([
                "-kernel".into(),
                kernel.display().to_string(),
                "-initrd".into(),
                initrd.display().to_string(),
                "-append".into(),
                cmdline,
            ]);
        }
    }
    for f in &opts.forwards {
        let address = f.address.map(|a| a.to_string()).unwrap_or_default();
        netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-{address}:{}", f.host, f.guest));
    }
    args.extend([
        "-netdev".into(),
        netdev,
        "-device".into(),
        "virtio-net-pci,netdev=n0".into(),
    ]);
    for (i, link) in opts.links.iter().enumerate() {
        let id = format!("link{i}");
        args.extend([
            "-netdev".into(),
            link.netdev(&id),
            "-device".into(),
            format!("virtio-net-pci,netdev={id},mac={}", link.mac()),
        ]);
    }
    if let Some(pool) = &opts.pool {
        create_pool(pool, opts.pool_size)?;
        args.extend([
            "-drive".into(),
            format!("if=none,id=pool,format=raw,file={}", opt_path(pool)),
            "-device".into(),
            "virtio-blk-pci,drive=pool,serial=ramkey-pool".into(),
        ]);
    }
    Ok(args.into_iter().map(OsString::from).collect())
}

/// A sparse file of `size` bytes, unless `path` exists.
fn create_pool(path: &Path, size: u64) -> Result<(), RunError> {
    if path.exists() {
        return Ok(());
    }
    let err = |source| RunError::Io {
        what: "creating the pool",
        path: path.into(),
        source,
    };
    std::fs::File::create_new(path)
        .and_then(|f| f.set_len(size))
        .map_err(err)
}

/// A TFTP root that is `dir` (symlinked) with `boot.ipxe`'s `kernel` lines given
/// `ramkey.config=URL`. Rebuilt every run.
fn pxe_with_config(dir: &Path, root: &Path, url: &str) -> Result<PathBuf, RunError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RunError::Io { what, path, source }
    };
    let dir = std::fs::canonicalize(dir).map_err(io("reading", dir))?;
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io("removing", root))?;
    }
    std::fs::create_dir_all(root).map_err(io("creating", root))?;
    for entry in std::fs::read_dir(&dir).map_err(io("reading", &dir))? {
        let entry = entry.map_err(io("reading", &dir))?;
        if entry.file_name() != BOOT_SCRIPT {
            let link = root.join(entry.file_name());
            std::os::unix::fs::symlink(entry.path(), &link).map_err(io("linking", &link))?;
        }
    }
    let script_path = dir.join(BOOT_SCRIPT);
    let script = std::fs::read_to_string(&script_path).map_err(io("reading", &script_path))?;
    let (script, found) = add_to_kernel_lines(&script, &format!("ramkey.config={url}"));
    if !found {
        return Err(RunError::NoKernelLine { path: script_path });
    }
    let out = root.join(BOOT_SCRIPT);
    std::fs::write(&out, script).map_err(io("writing", &out))?;
    Ok(root.to_path_buf())
}

/// Appends `word` to every iPXE `kernel`/`imgargs` line; says whether there was one.
fn add_to_kernel_lines(script: &str, word: &str) -> (String, bool) {
    let mut found = false;
    let mut out = String::new();
    for line in script.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if matches!(first, "kernel" | "imgargs") {
            found = true;
            out.push_str(line.trim_end());
            out.push(' ');
            out.push_str(word);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out, found)
}
