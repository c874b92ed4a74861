//! Platform extras: Debian packages whose files go into the platform (e.g. `busybox-static`
//! for a rescue shell), taken from their `.deb`s (checked against apt's index); busybox applet links; and, for dynamically
//! linked programs, the ELF interpreter and the shared libraries named by `DT_NEEDED`,
//! resolved recursively (from the extras first, then from the build host's Debian libraries).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use object::elf::{DT_NEEDED, FileHeader64, PT_INTERP};
use object::read::elf::{Dyn, FileHeader, ProgramHeader};

use crate::deb::{self, DebError};
use crate::records::{Kind, Tree};

/// Folders of a package that an appliance never needs.
const DROPPED: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/lintian",
    "usr/share/bug",
];
/// Where libraries are looked for, in order, below a root.
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// What can go wrong adding extras.
#[derive(Debug, thiserror::Error)]
pub enum ExtrasError {
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{program} needs {library}, found neither in the extras nor in {host_dirs}; add the package that has it to [platform] extras"
    )]
    Unresolved {
        program: String,
        library: String,
        host_dirs: String,
    },
    #[error("listing busybox applets with {path}: {message}")]
    Busybox { path: PathBuf, message: String },
}

/// Adds each package's files under `/`, then applet links and libraries. Returns what was
/// added beyond the packages' own files (libraries), for the build report.
pub fn add(tree: &mut Tree, packages: &[String], cache: &Path) -> Result<Vec<String>, ExtrasError> {
    let mut roots = Vec::new();
    for package in packages {
        let deb = deb::download(package, cache)?;
        let root = deb::unpack_cached(&deb, cache)?;
        add_package_files(tree, &root, Path::new(""))?;
        if root.join("bin/busybox").is_file() {
            add_busybox_links(tree, &root.join("bin/busybox"))?;
        }
        roots.push(root);
    }
    roots.push(PathBuf::from("/"));
    add_libraries(tree, &roots)
}

fn add_package_files(tree: &mut Tree, root: &Path, rel: &Path) -> Result<(), ExtrasError> {
    let dir = root.join(rel);
    let io = |source| ExtrasError::Io {
        path: dir.clone(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let name = rel.to_string_lossy().into_owned();
        if DROPPED.iter().any(|d| name == *d) || name == ".unpacked" {
            continue;
        }
        let io = |source| ExtrasError::Io {
            path: path.clone(),
            source,
        };
        let meta = std::fs::symlink_metadata(&path).map_err(io)?;
        if meta.file_type().is_symlink() {
            tree.symlink(&name, &std::fs::read_link(&path).map_err(io)?.to_string_lossy());
        } else if meta.is_dir() {
            add_package_files(tree, root, &rel)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            tree.file(&name, std::fs::read(&path).map_err(io)?, mode);
        }
    }
    Ok(())
}

/// Links every applet busybox knows (`busybox --list-full`) to it, unless the path exists.
fn add_busybox_links(tree: &mut Tree, busybox: &Path) -> Result<(), ExtrasError> {
    let err = |message: String| ExtrasError::Busybox {
        path: busybox.into(),
        message,
    };
    let out = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!("exit {}", out.status)));
    }
    for applet in String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        if tree.get(applet).is_none() {
            tree.symlink(applet, "/bin/busybox");
        }
    }
    Ok(())
}

/// The interpreter and `DT_NEEDED` names of an ELF file; `None` if it is not a dynamic ELF.
pub fn dynamic_needs(data: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let header = FileHeader64::<object::Endianness>::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let mut interp = None;
    for ph in header.program_headers(endian, data).ok()? {
        if ph.p_type(endian) == PT_INTERP {
            let bytes = ph.data(endian, data).ok()?;
            interp = Some(String::from_utf8_lossy(bytes).trim_end_matches('\0').to_string());
        }
    }
    let sections = header.sections(endian, data).ok()?;
    let mut needed = Vec::new();
    if let Some((dyns, link)) = sections.dynamic(endian, data).ok()? {
        let strings = sections.strings(endian, data, link).ok()?;
        for d in dyns {
            if d.tag(endian) == DT_NEEDED {
                needed.push(String::from_utf8_lossy(d.string(endian, strings).ok()?).into_owned());
            }
        }
    }
    (interp.is_some() || !needed.is_empty()).then_some((interp, needed))
}

/// Adds the interpreter and libraries every ELF file in the tree needs, recursively.
fn add_libraries(tree: &mut Tree, roots: &[PathBuf]) -> Result<Vec<String>, ExtrasError> {
    let mut added = Vec::new();
    let mut seen = BTreeSet::new();
    loop {
        let mut wanted: Vec<(String, String)> = Vec::new(); // (program, library path or name)
        for (path, record) in tree.iter() {
            let Kind::File(data) = &record.kind else { continue };
            let Some((interp, needed)) = dynamic_needs(data) else {
                continue;
            };
            wanted.extend(interp.map(|i| (path.to_string(), i)));
            wanted.extend(needed.into_iter().map(|n| (path.to_string(), n)));
        }
        let mut progress = false;
        for (program, lib) in wanted {
            if !seen.insert(lib.clone()) || in_tree(tree, &lib) {
                continue;
            }
            let (dest, data) = find_library(&lib, roots).ok_or_else(|| ExtrasError::Unresolved {
                program: program.clone(),
                library: lib.clone(),
                host_dirs: LIB_DIRS.iter().map(|d| format!("/{d}")).collect::<Vec<_>>().join(", "),
            })?;
            tree.file(&dest, data, 0o755);
            added.push(dest);
            progress = true;
        }
        if !progress {
            return Ok(added);
        }
    }
}

fn in_tree(tree: &Tree, lib: &str) -> bool {
    if lib.starts_with('/') {
        return tree.get(lib).is_some();
    }
    LIB_DIRS.iter().any(|d| tree.get(&format!("{d}/{lib}")).is_some())
}

/// Finds a library (a name, or an absolute path for the interpreter) below the roots and
/// returns where it goes in the platform and its contents (symlinks followed).
fn find_library(lib: &str, roots: &[PathBuf]) -> Option<(String, Vec<u8>)> {
    for root in roots {
        let candidates: Vec<String> = if let Some(abs) = lib.strip_prefix('/') {
            vec![abs.to_string()]
        } else {
            LIB_DIRS.iter().map(|d| format!("{d}/{lib}")).collect()
        };
        for rel in candidates {
            if let Ok(data) = std::fs::read(root.join(&rel)) {
                // Merged /usr on the host: keep the path programs ask for, in /lib.
                let dest = rel.strip_prefix("usr/").map_or(rel.clone(), str::to_string);
                let dest = if lib.starts_with('/') { rel } else { dest };
                return Some((dest, data));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_interpreter_and_needed_of_a_host_program() {
        // The build host is Debian: /bin/ls is a dynamic PIE needing libc.
        let data = std::fs::read("/bin/ls").unwrap();
        let (interp, needed) = dynamic_needs(&data).unwrap();
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(needed.iter().any(|n| n == "libc.so.6"), "{needed:?}");
        assert_eq!(dynamic_needs(b"#!/bin/sh\n"), None);
    }

    #[test]
    fn libraries_are_resolved_recursively() {
        let mut tree = Tree::new();
        tree.file("usr/bin/ls", std::fs::read("/bin/ls").unwrap(), 0o755);
        let added = add_libraries(&mut tree, &[PathBuf::from("/")]).unwrap();
        assert!(tree.get("lib64/ld-linux-x86-64.so.2").is_some(), "{added:?}");
        assert!(tree.get("lib/x86_64-linux-gnu/libc.so.6").is_some(), "{added:?}");
        // libselinux needs libpcre2: found through the second round.
        assert!(added.iter().any(|a| a.contains("libpcre2")), "{added:?}");
    }
}
