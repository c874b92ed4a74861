//! The module index: `modules.dep` and `modules.alias` parsed, modalias matching and
//! dependency load order.
//!
//! The builder ships a depmod-format index for the modules it copies; the kernel's
//! `kmod` library is not used (it does not link statically). Alias patterns are matched as
//! kmod does, with `fnmatch(3)` semantics ([`fnmatch`]), not compiled: the ~1500 patterns of
//! the platform's index cost ~20 ms to compile under TCG, and a literal prefix rejects most
//! of them for a given modalias without looking further.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Reading or using the module index failed.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    /// An index file could not be read.
    #[error("cannot read module index {path}: {source}")]
    Read {
        /// The file read.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A module was asked for that `modules.dep` does not list.
    #[error("module {0} is not in modules.dep")]
    Unknown(String),
}

/// One module from `modules.dep`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// The `.ko` path relative to the modules directory.
    pub path: PathBuf,
    /// Names of the modules it depends on (the closure, in file order).
    pub deps: Vec<String>,
}

/// The parsed index of one kernel's modules directory.
#[derive(Debug, Default)]
pub struct ModuleIndex {
    /// `/lib/modules/<KVER>`.
    pub dir: PathBuf,
    modules: HashMap<String, ModuleEntry>,
    aliases: Vec<Alias>,
    /// Lines that could not be understood (file name, line number, reason).
    pub warnings: Vec<String>,
}

/// The module name for a `.ko` path: file stem with `-` turned into `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

/// Module names use `_`; `-` is accepted as its synonym, as modprobe does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// One `modules.alias` line.
#[derive(Debug, Clone)]
struct Alias {
    pattern: String,
    /// The pattern's bytes before its first special character: a modalias not starting with
    /// them cannot match.
    literal: usize,
    module: String,
}

/// `fnmatch(3)` without flags, as kmod matches aliases: `*` any run, `?` any byte, `[...]` a
/// class (`!` or `^` negates; ranges; a `]` first is literal; unclosed, the `[` is literal),
/// `\` quotes the next byte. Modaliases are ASCII; the match is on bytes.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: the pattern after it, the text it has eaten to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if pattern.get(p) == Some(&b'*') {
            p += 1;
            star = Some((p, t));
            continue;
        }
        if let Some(next) = one(pattern, p, text[t]) {
            p = next;
            t += 1;
            continue;
        }
        match star {
            Some((after, eaten)) => {
                star = Some((after, eaten + 1));
                p = after;
                t = eaten + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Whether the pattern element at `p` (not `*`) matches `c`; the index after it if so.
fn one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == c).then_some(p + 2),
        b'[' => match class(pattern, p, c) {
            Some((matched, next)) => matched.then_some(next),
            None => (c == b'[').then_some(p + 1),
        },
        literal => (literal == c).then_some(p + 1),
    }
}

/// The class starting at `pattern[p] == b'['`: whether it matches `c`, and the index after
/// its `]`; `None` when it is not closed.
fn class(pattern: &[u8], p: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = p + 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&hi| hi != b']') {
            let hi = pattern[i + 2];
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
}

/// Whether every `[` of a pattern (not quoted) closes a class; fnmatch would take an unclosed
/// one literally, but no kernel alias has one, so it is reported.
fn closed(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b'\\' => i + 2,
            b'[' => match class(bytes, i, 0) {
                Some((_, next)) => next,
                None => return false,
            },
            _ => i + 1,
        };
    }
    true
}

/// Where a pattern's literal prefix ends.
fn literal_prefix(pattern: &str) -> usize {
    pattern.find(['*', '?', '[', '\\']).unwrap_or(pattern.len())
}

impl ModuleIndex {
    /// Reads `modules.dep` and `modules.alias` from `dir` (`/lib/modules/<KVER>`).
    pub fn load(dir: &Path) -> Result<ModuleIndex, ModulesError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ModulesError::Read { path, source })
        };
        let mut index = ModuleIndex::parse(&read("modules.dep")?, &read("modules.alias")?);
        index.dir = dir.to_owned();
        Ok(index)
    }

    /// Builds an index from the text of `modules.dep` and `modules.alias`.
    pub fn parse(dep: &str, alias: &str) -> ModuleIndex {
        let mut index = ModuleIndex::default();
        for (n, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                index
                    .warnings
                    .push(format!("modules.dep line {}: no ':' in {line:?}", n + 1));
                continue;
            };
            let entry = ModuleEntry {
                path: PathBuf::from(path.trim()),
                deps: deps.split_whitespace().map(module_name).collect(),
            };
            index.modules.insert(module_name(path.trim()), entry);
        }
        for (n, line) in alias.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("alias"), Some(pattern), Some(module), None) => {
                    if !closed(pattern) {
                        index.warnings.push(format!(
                            "modules.alias line {}: bad pattern {pattern:?}: a [ is not closed",
                            n + 1
                        ));
                    } else {
                        index.aliases.push(Alias {
                            pattern: pattern.to_owned(),
                            literal: literal_prefix(pattern),
                            module: normalize(module),
                        });
                    }
                }
                _ => index
                    .warnings
                    .push(format!("modules.alias line {}: not understood: {line:?}", n + 1)),
            }
        }
        index
    }

    /// Number of modules in `modules.dep`.
    pub fn len(&self) -> usize {
        self.modules.len()
    }

    #[cfg(test)]
    /// True when `modules.dep` listed no module.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The entry for a module name (`-` or `_`).
    pub fn get(&self, name: &str) -> Option<&ModuleEntry> {
        self.modules.get(&normalize(name))
    }

    /// Module names whose alias pattern matches `modalias`, each once, in file order.
    pub fn match_alias(&self, modalias: &str) -> Vec<String> {
        let mut seen = HashSet::new();
        self.aliases
            .iter()
            .filter(|a| modalias.as_bytes().starts_with(&a.pattern.as_bytes()[..a.literal]))
            .filter(|a| fnmatch(&a.pattern, modalias))
            .filter(|a| seen.insert(a.module.as_str()))
            .map(|a| a.module.clone())
            .collect()
    }

    /// The modules to load for `name`, deepest dependencies first, `name` last.
    ///
    /// Computed by depth-first search over each dependency's own line, so the order
    /// of names on a line does not matter. A dependency missing from the index is an
    /// error naming it; a cycle is broken where it closes.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, ModulesError> {
        let mut order = Vec::new();
        let mut visiting = HashSet::new();
        self.visit(&normalize(name), &mut visiting, &mut order)?;
        Ok(order)
    }

    fn visit(&self, name: &str, visiting: &mut HashSet<String>, order: &mut Vec<String>) -> Result<(), ModulesError> {
        if order.iter().any(|m| m == name) || !visiting.insert(name.to_owned()) {
            return Ok(());
        }
        let entry = self
            .modules
            .get(name)
            .ok_or_else(|| ModulesError::Unknown(name.to_owned()))?;
        for dep in &entry.deps {
            self.visit(dep, visiting, order)?;
        }
        order.push(name.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/usb/storage/usb-storage.ko: kernel/drivers/usb/core/usbcore.ko kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/core/usbcore.ko: kernel/drivers/usb/common/usb-common.ko
kernel/drivers/usb/common/usb-common.ko:
kernel/drivers/acpi/button.ko:
";

    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias virtio:d00000001v* virtio_net
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* usb_storage
alias usb:v*p*d*dc*dsc*dp*ic08isc06ip50in* uas
alias acpi*:LNXPWRBN:* button
alias acpi*:PNP0C0C:* button
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias usb:v05DCpA81[0-9]d*dc*dsc*dp*ic*isc*ip*in* usb_storage
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, ALIAS)
    }

    #[test]
    fn names_from_paths() {
        assert_eq!(module_name("kernel/drivers/usb/storage/usb-storage.ko"), "usb_storage");
        assert_eq!(module_name("kernel/fs/fat/vfat.ko.xz"), "vfat");
        assert_eq!(module_name("button.ko"), "button");
    }

    #[test]
    fn parses_dep_and_alias() {
        let i = index();
        assert_eq!(i.len(), 9);
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        let e = i.get("usb-storage").unwrap();
        assert_eq!(e.path, PathBuf::from("kernel/drivers/usb/storage/usb-storage.ko"));
        assert_eq!(e.deps, vec!["usbcore", "usb_common"]);
    }

    #[test]
    fn alias_match_single() {
        assert_eq!(index().match_alias("virtio:d00000001v00001AF4"), vec!["virtio_net"]);
        assert_eq!(index().match_alias("acpi:LNXPWRBN:"), vec!["button"]);
        assert_eq!(index().match_alias("acpi:PNP0C0C:"), vec!["button"]);
    }

    #[test]
    fn alias_match_several_and_dedup() {
        let m = index().match_alias("usb:v05DCpA812d0100dc00dsc00dp00ic08isc06ip50in00");
        assert_eq!(m, vec!["usb_storage", "uas"]);
    }

    #[test]
    fn alias_character_class() {
        let m = index().match_alias("usb:v05DCpA815d0100dc00dsc00dp00icFFisc00ip00in00");
        assert_eq!(m, vec!["usb_storage"]);
        assert!(
            index()
                .match_alias("usb:v05DCpA81Ad0100dc00dsc00dp00icFFisc00ip00in00")
                .is_empty()
        );
    }

    #[test]
    fn double_star_is_a_single_star() {
        let i = ModuleIndex::parse("m.ko:\n", "alias of:N**Tfoo m\n");
        assert!(i.warnings.is_empty(), "{:?}", i.warnings);
        assert_eq!(i.match_alias("of:NxyzTfoo"), vec!["m"]);
    }

    #[test]
    fn fnmatch_as_glibc_does() {
        assert!(fnmatch("usb:v*p*d*", "usb:v1p2d3"));
        assert!(fnmatch("a*b*c", "aXXbYYbZZc"));
        assert!(!fnmatch("a*b*c", "aXXbYYbZZ"));
        assert!(fnmatch("a?c", "abc") && !fnmatch("a?c", "ac"));
        assert!(fnmatch("x[0-9A-F]y", "xBy") && !fnmatch("x[0-9A-F]y", "xby"));
        assert!(fnmatch("x[!0-9]y", "xay") && !fnmatch("x[^0-9]y", "x5y"));
        assert!(fnmatch("x[]a]y", "x]y") && fnmatch("x[a-]y", "x-y"));
        assert!(fnmatch("x\\*y", "x*y") && !fnmatch("x\\*y", "xzy"));
        assert!(fnmatch("of:N**Tfoo", "of:NxyzTfoo") && fnmatch("**", ""));
        assert!(fnmatch("x[y", "x[y") && !closed("x[y") && closed("x\\[y"));
        assert!(fnmatch("", "") && !fnmatch("", "a") && !fnmatch("abc", "ab"));
    }

    #[test]
    fn fnmatch_agrees_with_glob_on_kernel_aliases() {
        let patterns = [
            "pci:v00008086d00002922sv*sd*bc*sc*i*",
            "pci:v*d*sv*sd*bc01sc06i01*",
            "usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            "usb:v05DCpA81[0-9]d*dc*dsc*dp*ic*isc*ip*in*",
            "usb:v0BC2p3312d0000dc*dsc*dp*ic*isc*ip*in*",
            "cpu:type:x86,ven*fam*mod*:feature:*0089*",
            "acpi*:PNP0C0C:*",
            "acpi*:LNXPWRBN:*",
            "virtio:d00000001v*",
            "input:b*v*p*e*-e*1,*k*74,*r*a*m*l*s*f*w*",
            "scsi:t-0x00*",
            "dmi*:svnQEMU*:pn*:*",
            "platform:i8042",
        ];
        let aliases = [
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01",
            "usb:v05DCpA815d0100dc00dsc00dp00ic08isc06ip50in00",
            "cpu:type:x86,ven0002fam0006mod0006:feature:,0000,0081,0089,009C",
            "acpi:LNXPWRBN:",
            "acpi:PNP0C0C:PNP0C0D:",
            "virtio:d00000001v00001AF4",
            "input:b0019v0000p0001e0000-e0,1,k74,ramlsfw",
            "scsi:t-0x00",
            "dmi:bvnSeaBIOS:bvr1.16:svnQEMU:pnStandardPC:",
            "platform:i8042",
        ];
        for p in patterns {
            let glob = glob::Pattern::new(&p.replace("**", "*")).unwrap();
            for a in aliases {
                assert_eq!(fnmatch(p, a), glob.matches(a), "{p} against {a}");
            }
        }
    }

    #[test]
    fn alias_no_match() {
        assert!(
            index()
                .match_alias("pci:v00008086d00001237sv00001AF4sd00001100bc06sc00i00")
                .is_empty()
        );
        assert!(index().match_alias("").is_empty());
    }

    #[test]
    fn bad_lines_become_warnings() {
        let i = ModuleIndex::parse("no colon here\n", "alias onlytwo\nalias x[ y\nfoo a b\n");
        assert_eq!(i.warnings.len(), 4, "{:?}", i.warnings);
        assert!(i.is_empty());
    }

    #[test]
    fn load_order_deepest_first_regardless_of_line_order() {
        let order = index().load_order("virtio_net").unwrap();
        assert_eq!(
            order,
            vec!["failover", "net_failover", "virtio_ring", "virtio", "virtio_net"]
        );
    }

    #[test]
    fn load_order_unknown_dependency() {
        let i = ModuleIndex::parse("a.ko: b.ko\n", "");
        assert!(matches!(i.load_order("a"), Err(ModulesError::Unknown(m)) if m == "b"));
        assert!(matches!(i.load_order("zz"), Err(ModulesError::Unknown(_))));
    }

    #[test]
    fn load_order_survives_a_cycle() {
        let i = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert_eq!(i.load_order("a").unwrap(), vec!["b", "a"]);
    }

    #[test]
    fn load_from_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        std::fs::write(dir.path().join("modules.alias"), ALIAS).unwrap();
        let i = ModuleIndex::load(dir.path()).unwrap();
        assert_eq!(i.dir, dir.path());
        assert_eq!(i.len(), 9);
        std::fs::remove_file(dir.path().join("modules.alias")).unwrap();
        assert!(matches!(ModuleIndex::load(dir.path()), Err(ModulesError::Read { .. })));
    }
}
