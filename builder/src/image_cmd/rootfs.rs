//! Building a personality's root filesystem in a directory: from Debian packages
//! (mmdebstrap), from an OCI archive ([`crate::image_cmd::oci`]) or empty, then `files/` on
//! top with fixed owners and modes. Also the host tools it needs and the dpkg status summary.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, FileType, Gid, Uid, chownat, symlinkat};

use super::beneath;
use crate::image_cmd::definition::DebianBase;

/// Paths dpkg leaves out of the image: documentation, manuals, translations (copyrights kept).
pub const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
];

/// The mmdebstrap variant: Essential:yes packages plus the ones asked for (no apt, no
/// Priority:required extras) — the smallest that still runs maintainer scripts.
pub const VARIANT: &str = "essential";

/// Files that record the time or the host of the build, removed for reproducibility.
const NOISE: &[&str] = &[
    "var/log/dpkg.log",
    "var/log/alternatives.log",
    "var/log/bootstrap.log",
    "var/log/apt",
    "var/cache/ldconfig/aux-cache",
    "var/cache/debconf/config.dat-old",
    "var/cache/debconf/templates.dat-old",
    "var/lib/dpkg/status-old",
    "var/lib/dpkg/diversions-old",
    "etc/machine-id",
    "etc/hostname",
    "etc/resolv.conf",
];

/// Errors building a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{program} is missing: install the Debian package {package} (as root the builder does it: apt-get install -y {package})"
    )]
    MissingTool { program: String, package: String },
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "the host's apt sources have no entry for suite {suite} (looked in /etc/apt/sources.list and sources.list.d)"
    )]
    NoSources { suite: String },
    #[error("building from Debian packages needs root (mmdebstrap --mode=root); run as root")]
    NotRoot,
    #[error("{path}: only regular files, folders and symlinks can go in files/")]
    Unsupported { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True when running as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Makes sure `program` (from Debian package `package`) is on the PATH; as root, installs it.
pub fn ensure_tool(program: &str, package: &str) -> Result<(), RootfsError> {
    let found = |p: &str| {
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file()))
            .unwrap_or(false)
    };
    if found(program) {
        return Ok(());
    }
    let missing = || RootfsError::MissingTool {
        program: program.into(),
        package: package.into(),
    };
    if !is_root() {
        return Err(missing());
    }
    let out = Command::new("apt-get")
        .args(["install", "-y", "-q", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|_| missing())?;
    if !out.status.success() || !found(program) {
        return Err(missing());
    }
    Ok(())
}

/// Runs a command, returning its stdout, or a [`RootfsError::Failed`] with what it printed.
pub fn run(cmd: &mut Command) -> Result<Vec<u8>, RootfsError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd.output().map_err(|e| RootfsError::Failed {
        command: shown.clone(),
        status: "not started".into(),
        output: e.to_string(),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(RootfsError::Failed {
            command: shown,
            status: out.status.to_string(),
            output: tail.join("\n"),
        });
    }
    Ok(out.stdout)
}

/// The host's own apt source entries for `suite` (and its -updates and -security), in
/// deb822 form, for mmdebstrap: the image comes from the same archive as the host's packages.
pub fn host_sources(etc_apt: &Path, suite: &str) -> Result<String, RootfsError> {
    let wanted = |s: &str| {
        [
            suite.to_string(),
            format!("{suite}-updates"),
            format!("{suite}-security"),
        ]
        .contains(&s.into())
    };
    let mut out = String::new();
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(dir) = fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else { continue };
        let name = file.to_string_lossy();
        if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let mut suites = Vec::new();
                let mut other = Vec::new();
                let mut enabled = true;
                let mut has_deb = false;
                for line in stanza.lines().filter(|l| !l.trim_start().starts_with('#')) {
                    match line.split_once(':') {
                        Some((k, v)) if k.eq_ignore_ascii_case("suites") => {
                            suites = v.split_whitespace().filter(|s| wanted(s)).map(String::from).collect();
                        }
                        Some((k, v)) if k.eq_ignore_ascii_case("enabled") => enabled = v.trim() != "no",
                        Some((k, v)) if k.eq_ignore_ascii_case("types") => {
                            has_deb = v.split_whitespace().any(|t| t == "deb");
                        }
                        _ if !line.trim().is_empty() => other.push(line.to_string()),
                        _ => {}
                    }
                }
                if enabled && has_deb && !suites.is_empty() {
                    out.push_str("Types: deb\n");
                    out.push_str(&other.join("\n"));
                    out.push_str(&format!("\nSuites: {}\n\n", suites.join(" ")));
                }
            }
        } else if name.ends_with(".list") {
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                let suite_at = if words.get(1).is_some_and(|w| w.starts_with('[')) {
                    3
                } else {
                    2
                };
                if words.first() == Some(&"deb") && words.get(suite_at).is_some_and(|s| wanted(s)) {
                    let opts = if suite_at == 3 {
                        format!("{} ", words[1])
                    } else {
                        String::new()
                    };
                    let rest = words[suite_at - 1..].join(" ");
                    // One-line entries become a minimal deb822 stanza.
                    let mut it = rest.split_whitespace();
                    let (uri, s) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                    let comps: Vec<&str> = it.collect();
                    let signed = opts
                        .trim_matches(|c| c == '[' || c == ']' || c == ' ')
                        .split_whitespace()
                        .find_map(|o| o.strip_prefix("signed-by="))
                        .map(|k| format!("Signed-By: {k}\n"))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "Types: deb\nURIs: {uri}\nSuites: {s}\nComponents: {}\n{signed}\n",
                        comps.join(" ")
                    ));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(RootfsError::NoSources { suite: suite.into() });
    }
    Ok(out)
}

/// The package set apt resolves for `base` (Essential:yes plus the packages asked for and
/// their dependencies) from the host's indices, one `name version` per line, sorted. `None`
/// if the host's apt cannot answer (other suite, no lists): then nothing is cached.
pub fn resolve(base: &DebianBase) -> Option<String> {
    let host_suite = fs::read_to_string("/etc/os-release").ok()?.lines().find_map(|l| {
        l.strip_prefix("VERSION_CODENAME=")
            .map(|s| s.trim_matches('"').to_string())
    })?;
    if host_suite != base.suite {
        return None;
    }
    let out = Command::new("apt-get")
        .args([
            "-s",
            "-q",
            "-o",
            "Dir::State::Status=/dev/null",
            "-o",
            "APT::Install-Recommends=false",
            "-o",
            "Debug::NoLocking=true",
            "install",
            "?essential",
        ])
        .args(&base.packages)
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut set: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(" (")?;
            Some(format!("{name} {}", rest.split_whitespace().next()?))
        })
        .collect();
    set.sort();
    (!set.is_empty()).then(|| set.join("\n") + "\n")
}

/// Installs `base` into the empty or missing directory `dest` with mmdebstrap.
pub fn debian(base: &DebianBase, dest: &Path, epoch: u64, work: &Path) -> Result<(), RootfsError> {
    if !is_root() {
        return Err(RootfsError::NotRoot);
    }
    ensure_tool("mmdebstrap", "mmdebstrap")?;
    let sources = work.join("host.sources");
    fs::write(&sources, host_sources(Path::new("/etc/apt"), &base.suite)?).map_err(io(&sources))?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--format=directory", "--quiet"])
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", base.packages.join(",")))
        .arg("--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr")
        .arg("--aptopt=APT::Install-Recommends \"false\"");
    for opt in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    cmd.arg(&base.suite)
        .arg(dest)
        .arg(&sources)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .env_remove("TMPDIR");
    run(&mut cmd)?;
    scrub(dest)
}

/// Removes what records the build's time or host, and empties `/dev` (the zone makes its own).
/// Works beneath `root` without following a symlink (an OCI image may hold `var -> /var`):
/// a symlink where a folder was expected is left as it is, with nothing beneath it removed.
pub fn scrub(root: &Path) -> Result<(), RootfsError> {
    let tree = beneath::open(root).map_err(io(root))?;
    for rel in NOISE {
        let path = root.join(rel);
        let (parent, name) = beneath::split(Path::new(rel)).expect("a relative path");
        match beneath::dir(&tree, parent, false) {
            Ok(dir) => beneath::remove(&dir, name).map_err(io(&path))?,
            Err(e) if beneath::absent(&e) => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    for rel in ["dev", "var/lib/apt/lists", "var/cache/apt", "tmp", "run"] {
        let path = root.join(rel);
        match beneath::dir(&tree, Path::new(rel), false) {
            Ok(dir) => beneath::clear(&dir).map_err(io(&path))?,
            Err(e) if beneath::absent(&e) => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(())
}

/// Copies `files/` over the root: folders 0755, files 0755 if executable else 0644, symlinks
/// as they are; owned by root when running as root. Replaces whatever was there, a symlink
/// too: the root is written beneath itself, never through a symlink in it.
pub fn overlay(files: &Path, root: &Path) -> Result<(), RootfsError> {
    let tree = beneath::open(root).map_err(io(root))?;
    let owner = is_root().then_some((Uid::ROOT, Gid::ROOT));
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let src = files.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&src)
            .map_err(io(&src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<OsString>, _>>()
            .map_err(io(&src))?;
        entries.sort();
        // The root, or a real folder made (or kept) one level up.
        let dir = beneath::dir(&tree, &rel, false).map_err(io(&root.join(&rel)))?;
        for name in entries {
            let rel = rel.join(&name);
            let (from, to) = (files.join(&rel), root.join(&rel));
            let meta = fs::symlink_metadata(&from).map_err(io(&from))?;
            if let Some(old) = beneath::kind(&dir, &name).map_err(io(&to))?
                && !(old == FileType::Directory && meta.is_dir())
            {
                beneath::remove(&dir, &name).map_err(io(&to))?;
            }
            if meta.is_dir() {
                let fd = beneath::make_dir(&dir, &name).map_err(io(&to))?;
                beneath::set_owner_mode(&fd, owner, 0o755).map_err(io(&to))?;
                stack.push(rel);
            } else if meta.file_type().is_symlink() {
                let target = fs::read_link(&from).map_err(io(&from))?;
                symlinkat(&target, &dir, &name).map_err(|e| io(&to)(e.into()))?;
                if let Some((uid, gid)) = owner {
                    chownat(&dir, &name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io(&to)(e.into()))?;
                }
            } else if meta.is_file() {
                let mut out = beneath::create(&dir, &name).map_err(io(&to))?;
                std::io::copy(&mut fs::File::open(&from).map_err(io(&from))?, &mut out).map_err(io(&to))?;
                let mode = if meta.mode() & 0o111 != 0 { 0o755 } else { 0o644 };
                beneath::set_owner_mode(&out, owner, mode).map_err(io(&to))?;
            } else {
                return Err(RootfsError::Unsupported { path: from });
            }
        }
    }
    Ok(())
}

/// Packages installed in a root filesystem: name → Installed-Size in KiB, from dpkg's status.
pub fn installed_packages(root: &Path) -> BTreeMap<String, u64> {
    let text = fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap_or_default();
    let mut out = BTreeMap::new();
    for stanza in text.split("\n\n") {
        let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k).map(str::trim));
        if let (Some(name), Some(status)) = (field("Package:"), field("Status:"))
            && status.ends_with(" installed")
        {
            let size = field("Installed-Size:").and_then(|s| s.parse().ok()).unwrap_or(0);
            out.insert(name.to_string(), size);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_sources_keep_only_the_suite() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("sources.list.d")).unwrap();
        fs::write(
            d.join("sources.list.d/a.sources"),
            "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
             Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-backports\nComponents: main\n",
        )
        .unwrap();
        fs::write(
            d.join("sources.list"),
            "deb [signed-by=/k.gpg] http://other.invalid/d bookworm-security main\n",
        )
        .unwrap();
        let s = host_sources(d, "bookworm").unwrap();
        assert!(s.contains("Suites: bookworm bookworm-updates\n"), "{s}");
        assert!(!s.contains("backports"), "{s}");
        assert!(
            s.contains("Suites: bookworm-security\nComponents: main\nSigned-By: /k.gpg"),
            "{s}"
        );
        assert!(matches!(host_sources(d, "trixie"), Err(RootfsError::NoSources { .. })));
    }

    #[test]
    fn overlay_normalises_modes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (files, root) = (dir.path().join("files"), dir.path().join("root"));
        fs::create_dir_all(files.join("etc")).unwrap();
        fs::write(files.join("etc/a"), "new").unwrap();
        fs::set_permissions(files.join("etc/a"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("a", files.join("etc/b")).unwrap();
        fs::create_dir_all(root.join("etc/a")).unwrap();
        overlay(&files, &root).unwrap();
        assert_eq!(fs::read_to_string(root.join("etc/a")).unwrap(), "new");
        assert_eq!(fs::metadata(root.join("etc/a")).unwrap().mode() & 0o777, 0o644);
        assert_eq!(fs::read_link(root.join("etc/b")).unwrap(), Path::new("a"));
    }

    /// A folder outside the root with a file in it, as the host's files would be.
    fn sentinel(dir: &Path) -> PathBuf {
        let s = dir.join("sentinel");
        fs::create_dir_all(s.join("log")).unwrap();
        fs::write(s.join("file"), "keep").unwrap();
        fs::write(s.join("log/dpkg.log"), "keep").unwrap();
        s
    }

    /// The sentinel folder is as it was made.
    fn untouched(s: &Path) {
        let mut names: Vec<_> = fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["file", "log"], "the folder outside the root was changed");
        assert_eq!(fs::read_to_string(s.join("file")).unwrap(), "keep");
        assert_eq!(fs::read_to_string(s.join("log/dpkg.log")).unwrap(), "keep");
    }

    #[test]
    fn scrub_does_not_follow_symlinks_out_of_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let (s, root) = (sentinel(dir.path()), dir.path().join("root"));
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("dev")).unwrap();
        fs::write(root.join("etc/machine-id"), "id").unwrap();
        fs::write(root.join("dev/console"), "").unwrap();
        std::os::unix::fs::symlink(&s, root.join("tmp")).unwrap();
        std::os::unix::fs::symlink(&s, root.join("var")).unwrap();
        std::os::unix::fs::symlink(s.join("file"), root.join("run")).unwrap();
        scrub(&root).unwrap();
        untouched(&s);
        assert!(!root.join("etc/machine-id").exists());
        assert_eq!(fs::read_dir(root.join("dev")).unwrap().count(), 0);
        // The symlinks themselves stay: they are part of the image, just not followed.
        assert_eq!(fs::read_link(root.join("tmp")).unwrap(), s);
    }

    #[test]
    fn overlay_does_not_write_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (s, root, files) = (sentinel(dir.path()), dir.path().join("root"), dir.path().join("files"));
        fs::create_dir_all(root.join("usr")).unwrap();
        std::os::unix::fs::symlink(&s, root.join("etc")).unwrap();
        std::os::unix::fs::symlink(&s, root.join("usr/share")).unwrap();
        fs::create_dir(root.join("var")).unwrap();
        std::os::unix::fs::symlink(s.join("file"), root.join("var/file")).unwrap();
        for f in ["etc/file", "usr/share/log/dpkg.log", "var/file"] {
            fs::create_dir_all(files.join(f).parent().unwrap()).unwrap();
            fs::write(files.join(f), "new").unwrap();
        }
        overlay(&files, &root).unwrap();
        untouched(&s);
        for f in ["etc/file", "usr/share/log/dpkg.log", "var/file"] {
            assert_eq!(fs::read_to_string(root.join(f)).unwrap(), "new", "{f}");
            assert!(fs::symlink_metadata(root.join(f)).unwrap().is_file(), "{f}");
        }
    }

    #[test]
    fn reads_installed_sizes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/lib/dpkg")).unwrap();
        fs::write(
            dir.path().join("var/lib/dpkg/status"),
            "Package: a\nStatus: install ok installed\nInstalled-Size: 10\n\nPackage: b\nStatus: deinstall ok config-files\nInstalled-Size: 5\n",
        )
        .unwrap();
        assert_eq!(installed_packages(dir.path()), BTreeMap::from([("a".to_string(), 10)]));
    }
}
