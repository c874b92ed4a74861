//! The kernel module subset: an index of every module in the package (from each `.ko`'s
//! `.modinfo` ELF section), the closure of a chosen set over `depends=` and `softdep=pre:`,
//! and the `modules.dep` / `modules.alias` files for that subset (the `.deb` has neither).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use object::read::elf::ElfFile64;
use object::{Object, ObjectSection};

/// The modules a Ramkey platform carries unless the appliance says otherwise, by purpose.
pub const DEFAULT_MODULES: &[(&str, &[&str])] = &[
    (
        "virtio",
        &[
            "virtio_pci",
            "virtio_blk",
            "virtio_scsi",
            "virtio_net",
            "virtio_console",
            "virtio_rng",
        ],
    ),
    (
        "storage",
        &[
            "ahci",
            "ata_piix",
            "nvme",
            "sd_mod",
            "sr_mod",
            "mmc_block",
            "sdhci_pci",
            "sdhci_acpi",
        ],
    ),
    (
        "usb",
        &[
            "xhci_pci",
            "ehci_pci",
            "ohci_pci",
            "uhci_hcd",
            "usb_storage",
            "uas",
            "usbhid",
            "hid_generic",
        ],
    ),
    (
        "filesystems",
        &[
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "nls_iso8859_1",
            "nls_utf8",
            "ext4",
            "squashfs",
            "overlay",
            "loop",
        ],
    ),
    (
        "nics",
        &[
            "e1000", "e1000e", "igb", "igc", "ixgbe", "r8169", "tg3", "bnx2", "atlantic",
        ],
    ),
    (
        "networking",
        &["bridge", "macvlan", "veth", "8021q", "tun", "sch_ingress", "cls_bpf"],
    ),
    ("platform", &["button", "evdev", "rtc_cmos"]),
    // VM personalities: KVM, the macvtap a VM's NIC hangs off, and what the guest loads
    // from the box's modules (virtio over MMIO; the rest is above).
    (
        "vms",
        &["kvm_amd", "kvm_intel", "macvtap", "virtio_mmio", "crc32c_generic"],
    ),
];

/// One module of the kernel package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name as the kernel knows it (`_`, never `-`).
    pub name: String,
    /// Path relative to `lib/modules/<release>`, e.g. `kernel/fs/fat/vfat.ko`.
    pub path: String,
    /// Hard dependencies (module names).
    pub depends: Vec<String>,
    /// `softdep=pre:` names (module names or aliases such as `crc32c`).
    pub pre: Vec<String>,
    /// Device and feature aliases (fnmatch patterns).
    pub aliases: Vec<String>,
}

/// What can go wrong indexing or selecting modules.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a 64-bit ELF module: {source}")]
    Elf { path: PathBuf, source: object::Error },
    #[error("kernel {release} has no module named {}; check the spelling (names use `_`) or drop them from the module set", .names.join(", "))]
    Unknown { release: String, names: Vec<String> },
    #[error("module {module} depends on {dependency}, which the kernel package does not have")]
    MissingDependency { module: String, dependency: String },
}

/// Normalises a module name the way the kernel does.
pub fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

/// Parses the NUL-separated `key=value` strings of a `.modinfo` section.
pub fn parse_modinfo(path: &str, modinfo: &[u8]) -> Module {
    let stem = path.rsplit('/').next().unwrap_or(path).trim_end_matches(".ko");
    let mut module = Module {
        name: normalise(stem),
        path: path.to_string(),
        depends: Vec::new(),
        pre: Vec::new(),
        aliases: Vec::new(),
    };
    for field in modinfo.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let field = String::from_utf8_lossy(field);
        let Some((key, value)) = field.split_once('=') else {
            continue;
        };
        match key {
            "name" => module.name = normalise(value),
            "depends" => module
                .depends
                .extend(value.split(',').filter(|d| !d.is_empty()).map(normalise)),
            "alias" => module.aliases.push(value.to_string()),
            "softdep" => module.pre.extend(softdep_pre(value)),
            _ => {}
        }
    }
    module
}

/// The names after `pre:` in a softdep value such as `pre: crc32c post: foo`.
fn softdep_pre(value: &str) -> Vec<String> {
    let mut pre = false;
    let mut names = Vec::new();
    for word in value.split_whitespace() {
        match word {
            "pre:" => pre = true,
            "post:" => pre = false,
            name if pre => names.push(name.to_string()),
            _ => {}
        }
    }
    names
}

/// Every module of one kernel release, by name.
#[derive(Debug, Default)]
pub struct Index {
    pub release: String,
    pub modules: BTreeMap<String, Module>,
    /// Names compiled into the kernel (from `modules.builtin`): always satisfied.
    pub builtin: BTreeSet<String>,
}

impl Index {
    /// Reads every `.ko` under `modules_dir/kernel` and `modules_dir/modules.builtin`.
    pub fn load(modules_dir: &Path, release: &str) -> Result<Index, ModuleError> {
        let mut index = Index {
            release: release.to_string(),
            ..Index::default()
        };
        let builtin = modules_dir.join("modules.builtin");
        if let Ok(text) = std::fs::read_to_string(&builtin) {
            index.builtin = text
                .lines()
                .filter_map(|l| l.rsplit('/').next())
                .map(|f| normalise(f.trim_end_matches(".ko")))
                .collect();
        }
        let mut stack = vec![modules_dir.join("kernel")];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|source| ModuleError::Io {
                path: dir.clone(),
                source,
            })?;
            for entry in entries {
                let path = entry
                    .map_err(|source| ModuleError::Io {
                        path: dir.clone(),
                        source,
                    })?
                    .path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "ko") {
                    let module = read_module(modules_dir, &path)?;
                    index.modules.insert(module.name.clone(), module);
                }
            }
        }
        Ok(index)
    }

    /// Resolves a softdep or request token: a module name, or an alias some module carries.
    fn resolve(&self, token: &str) -> Vec<&Module> {
        if let Some(m) = self.modules.get(&normalise(token)) {
            return vec![m];
        }
        self.modules
            .values()
            .filter(|m| m.aliases.iter().any(|a| a == token))
            .collect()
    }

    /// The closure of `requested` over hard dependencies and `pre:` softdeps.
    pub fn select(&self, requested: &[&str]) -> Result<Selection<'_>, ModuleError> {
        let unknown: Vec<String> = requested
            .iter()
            .map(|n| normalise(n))
            .filter(|n| !self.modules.contains_key(n) && !self.builtin.contains(n))
            .collect();
        if !unknown.is_empty() {
            return Err(ModuleError::Unknown {
                release: self.release.clone(),
                names: unknown,
            });
        }
        let mut chosen = BTreeMap::new();
        let mut todo: Vec<String> = requested.iter().map(|n| normalise(n)).collect();
        while let Some(name) = todo.pop() {
            let Some(module) = self.modules.get(&name) else {
                continue;
            };
            if chosen.insert(name.clone(), module).is_some() {
                continue;
            }
            for dep in &module.depends {
                if !self.modules.contains_key(dep) && !self.builtin.contains(dep) {
                    return Err(ModuleError::MissingDependency {
                        module: name.clone(),
                        dependency: dep.clone(),
                    });
                }
                todo.push(dep.clone());
            }
            // A softdep is a wish, not a requirement: take what the package has.
            todo.extend(module.pre.iter().flat_map(|t| self.resolve(t)).map(|m| m.name.clone()));
        }
        Ok(Selection { modules: chosen })
    }
}

fn read_module(modules_dir: &Path, path: &Path) -> Result<Module, ModuleError> {
    let data = std::fs::read(path).map_err(|source| ModuleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let elf = ElfFile64::<object::Endianness>::parse(&*data).map_err(|source| ModuleError::Elf {
        path: path.to_path_buf(),
        source,
    })?;
    let modinfo = elf
        .section_by_name(".modinfo")
        .and_then(|s| s.data().ok())
        .unwrap_or_default();
    let rel = path
        .strip_prefix(modules_dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    Ok(parse_modinfo(&rel, modinfo))
}

/// A closed set of modules, ready to be written out.
#[derive(Debug)]
pub struct Selection<'a> {
    pub modules: BTreeMap<String, &'a Module>,
}

impl Selection<'_> {
    /// Dependencies of `name` (hard and `pre:`), each listed before anything that needs it.
    fn load_order(&self, name: &str) -> Vec<&str> {
        fn visit<'m>(sel: &'m Selection<'_>, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<&'m str>) {
            let Some(module) = sel.modules.get(name) else { return };
            if !seen.insert(name.to_string()) {
                return;
            }
            for dep in module.depends.iter().chain(&module.pre) {
                let dep = sel
                    .modules
                    .get(&normalise(dep))
                    .map_or(dep.as_str(), |m| m.name.as_str());
                visit(sel, dep, seen, out);
            }
            out.push(module.name.as_str());
        }
        let mut out = Vec::new();
        visit(self, name, &mut BTreeSet::new(), &mut out);
        out.pop(); // the module itself
        out
    }

    /// `modules.dep` in depmod's format: `path: dep-paths`, where loading the dependencies
    /// from the last to the first, then the module, is a valid order.
    pub fn modules_dep(&self) -> String {
        let mut lines: Vec<String> = self
            .modules
            .values()
            .map(|m| {
                let deps: Vec<&str> = self
                    .load_order(&m.name)
                    .iter()
                    .rev()
                    .map(|d| self.modules[*d].path.as_str())
                    .collect();
                format!(
                    "{}:{}{}",
                    m.path,
                    if deps.is_empty() { "" } else { " " },
                    deps.join(" ")
                )
            })
            .collect();
        lines.sort();
        lines.join("\n") + "\n"
    }

    /// `modules.alias`: `alias PATTERN NAME`, sorted.
    pub fn modules_alias(&self) -> String {
        let mut lines: Vec<String> = self
            .modules
            .values()
            .flat_map(|m| m.aliases.iter().map(move |a| format!("alias {a} {}", m.name)))
            .collect();
        lines.sort();
        lines.dedup();
        let mut text = String::from("# Aliases of the modules in this platform, generated by ramkey.\n");
        for line in lines {
            text.push_str(&line);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, depends: &[&str], pre: &[&str], aliases: &[&str]) -> Module {
        Module {
            name: name.into(),
            path: format!("kernel/{name}.ko"),
            depends: depends.iter().map(|s| s.to_string()).collect(),
            pre: pre.iter().map(|s| s.to_string()).collect(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn index(modules: Vec<Module>) -> Index {
        Index {
            release: "6.1.0-test".into(),
            modules: modules.into_iter().map(|m| (m.name.clone(), m)).collect(),
            builtin: ["unix".to_string()].into(),
        }
    }

    #[test]
    fn parses_modinfo_fields() {
        let info = b"alias=pci:v00001AF4d00001000sv*sd*bc*sc*i*\0depends=virtio,virtio_ring,net_failover\0name=virtio_net\0softdep=pre: crc32c post: x\0vermagic=6.1\0";
        let m = parse_modinfo("kernel/drivers/net/virtio_net.ko", info);
        assert_eq!(m.name, "virtio_net");
        assert_eq!(m.depends, ["virtio", "virtio_ring", "net_failover"]);
        assert_eq!(m.pre, ["crc32c"]);
        assert_eq!(m.aliases, ["pci:v00001AF4d00001000sv*sd*bc*sc*i*"]);
        assert_eq!(parse_modinfo("kernel/a/usb-storage.ko", b"").name, "usb_storage");
    }

    #[test]
    fn closure_follows_depends_and_softdeps_by_alias() {
        let idx = index(vec![
            module("ext4", &["jbd2", "mbcache"], &["crc32c"], &["fs-ext4"]),
            module("jbd2", &[], &[], &[]),
            module("mbcache", &[], &[], &[]),
            module("crc32c_generic", &[], &[], &["crc32c", "crypto-crc32c"]),
            module("unrelated", &[], &[], &[]),
        ]);
        let sel = idx.select(&["ext4", "unix"]).unwrap();
        let names: Vec<&str> = sel.modules.keys().map(String::as_str).collect();
        assert_eq!(names, ["crc32c_generic", "ext4", "jbd2", "mbcache"]);
    }

    #[test]
    fn modules_dep_lists_dependents_before_their_dependencies() {
        // a -> b -> d, a -> c -> d (a diamond): loading the list backwards must load d first.
        let idx = index(vec![
            module("a", &["b", "c"], &[], &[]),
            module("b", &["d"], &[], &[]),
            module("c", &["d"], &[], &[]),
            module("d", &[], &[], &["pci:v1234*"]),
        ]);
        let dep = idx.select(&["a"]).unwrap().modules_dep();
        let line_a = dep.lines().find(|l| l.starts_with("kernel/a.ko:")).unwrap();
        let deps: Vec<&str> = line_a.split_whitespace().skip(1).collect();
        assert_eq!(deps.len(), 3);
        assert_eq!(*deps.last().unwrap(), "kernel/d.ko");
        assert!(dep.contains("kernel/d.ko:\n"));
        let alias = idx.select(&["a"]).unwrap().modules_alias();
        assert!(alias.contains("alias pci:v1234* d\n"));
    }

    #[test]
    fn unknown_names_are_reported_together() {
        let idx = index(vec![module("a", &[], &[], &[])]);
        let err = idx.select(&["a", "nope", "missing-too"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel 6.1.0-test has no module named nope, missing_too; check the spelling (names use `_`) or drop them from the module set"
        );
    }

    #[test]
    fn a_missing_hard_dependency_is_an_error() {
        let idx = index(vec![module("a", &["ghost"], &[], &[])]);
        assert!(matches!(idx.select(&["a"]), Err(ModuleError::MissingDependency { .. })));
    }
}
