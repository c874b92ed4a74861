//! `ramkeyctl image avail|import|list|delete`: images like SmartOS's `imgadm`. `avail` reads
//! the `index.json` of each `[images] sources` repository (`ramkey image publish` writes
//! them) and marks what is installed; `import NAME[@VERSION]` takes the newest (or that
//! version) and imports it like any image ([`super::import`]), refusing bytes that differ
//! from the index; `list` shows the images on the pool and the stick and which zone uses
//! which; `delete NAME@VERSION` removes one from the pool unless a zone runs it, goes back
//! to it on rollback, or keeps it as its last good image.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ramkey_image::repo::{Entry, INDEX_FILE, Index, version_order};

use super::import::{self, Expected, Source};
use crate::base::paths::Paths;
use crate::net::conn::Client;
use crate::net::http;
use crate::zone::{PREVIOUS, ZoneSpec, binding};

const USAGE: &str = "usage: ramkeyctl image avail | import NAME[@VERSION] | list | delete NAME@VERSION";

/// Carries out `image ARGS` on a box whose root is `root`; returns what to print.
pub fn run(root: &Path, args: &[String]) -> Result<String, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["avail"] => avail(root),
        ["import", wanted] => {
            let (name, version) = split(wanted);
            pull(root, name, version)
        }
        ["list"] | [] => Ok(list(root)),
        ["delete", wanted] => match split(wanted) {
            (name, Some(version)) => delete(root, name, version),
            (_, None) => Err(format!("delete needs NAME@VERSION; {USAGE}")),
        },
        _ => Err(USAGE.into()),
    }
}

fn split(wanted: &str) -> (&str, Option<&str>) {
    match wanted.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (wanted, None),
    }
}

/// The config's sources, and the client that reaches them.
fn sources(root: &Path) -> Result<(Vec<String>, Client), String> {
    let config = import::config(root)?;
    if config.image_sources.is_empty() {
        return Err(
            "no [images] sources in the usbkey config; add one with: ramkeyctl config set \
             'images.sources=[\"http://192.0.2.10:8080/images\"]'"
                .into(),
        );
    }
    Ok((config.image_sources.clone(), Client::on_box(root, &config)))
}

/// A source's index.
fn index(source: &str, client: &Client) -> Result<Index, String> {
    let text = format!("{source}/{INDEX_FILE}");
    let url = client.url(&text).map_err(|e| e.to_string())?;
    let body = http::get(&url, Duration::from_secs(10), Duration::from_secs(30), &client.trust)
        .map_err(|e| format!("{text}: {e}"))?;
    Index::parse(&body).map_err(|e| format!("{text}: {e}"))
}

/// Where an entry lives on the pool once imported.
fn installed(root: &Path, entry: &Entry) -> PathBuf {
    root.join("pool/images")
        .join(import::kept_name(&entry.name, &entry.version, &entry.payload_sha256))
}

fn avail(root: &Path) -> Result<String, String> {
    let mut out = format!(
        "{:<16} {:<12} {:>10} {:<10} {}\n",
        "NAME", "VERSION", "SIZE", "INSTALLED", "SOURCE"
    );
    let mut reached = 0;
    let mut problems = String::new();
    let (sources, client) = sources(root)?;
    for source in sources {
        match index(&source, &client) {
            Ok(index) => {
                reached += 1;
                for e in &index.images {
                    let here = if installed(root, e).is_file() { "yes" } else { "-" };
                    let _ = writeln!(
                        out,
                        "{:<16} {:<12} {:>10} {here:<10} {source}",
                        e.name,
                        e.version,
                        format!("{} MiB", e.size.div_ceil(1 << 20))
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(problems, "unavailable: {e}");
            }
        }
    }
    if reached == 0 {
        return Err(problems.trim_end().to_owned());
    }
    Ok(out + &problems)
}

/// The newest entry named `name` (or that version) across the sources, with its source.
fn pull(root: &Path, name: &str, version: Option<&str>) -> Result<String, String> {
    let mut best: Option<(Entry, String)> = None;
    let mut problems = Vec::new();
    let (sources, client) = sources(root)?;
    for source in sources {
        match index(&source, &client) {
            Ok(index) => {
                if let Some(e) = index.find(name, version) {
                    let newer = best
                        .as_ref()
                        .is_none_or(|(b, _)| version_order(&e.version, &b.version).is_gt());
                    if newer {
                        best = Some((e.clone(), source.clone()));
                    }
                }
            }
            Err(e) => problems.push(e),
        }
    }
    let wanted = version.map_or_else(|| name.to_owned(), |v| format!("{name}@{v}"));
    let Some((entry, source)) = best else {
        let also = if problems.is_empty() {
            String::new()
        } else {
            format!(" ({})", problems.join("; "))
        };
        return Err(format!(
            "no source offers {wanted}{also}; `ramkeyctl image avail` lists what they offer"
        ));
    };
    let url = format!("{source}/{}", entry.file);
    let expected = Expected {
        sha256: entry.sha256.clone(),
        size: entry.size,
    };
    import::import_checked(root, &Source::Url(url), Some(&expected))
}

/// One image file's line: name, version, where, who uses it.
fn list(root: &Path) -> String {
    let zones = ZoneSpec::all(root);
    let mut out = format!("{:<16} {:<12} {:<24} {}\n", "NAME", "VERSION", "USED BY", "FILE");
    for dir in [root.join("pool/images"), root.join("usbkey/personalities")] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == ramkey_image::EXTENSION))
            .collect();
        files.sort();
        for file in files {
            let (name, version) = match ramkey_image::read::open(&file) {
                Ok(image) => (image.manifest.name, image.manifest.version),
                Err(_) => ("?".into(), "?".into()),
            };
            let users = users(root, &zones, &file).join(", ");
            let users = if users.is_empty() { "-".to_owned() } else { users };
            let shown = Paths::system().root().join(file.strip_prefix(root).unwrap_or(&file));
            let _ = writeln!(out, "{name:<16} {version:<12} {users:<24} {}", shown.display());
        }
    }
    out
}

/// Which zones hold on to `file`, and how: `web` (running it), `web (rollback)`,
/// `web (last good)`.
fn users(root: &Path, zones: &[ZoneSpec], file: &Path) -> Vec<String> {
    let same = |image: &Path| root.join(image.strip_prefix(Paths::system().root()).unwrap_or(image)) == file;
    let mut out = Vec::new();
    for zone in zones {
        if same(&zone.image) {
            out.push(zone.name.clone());
        }
        if ZoneSpec::load(&ZoneSpec::file(root, &zone.name, PREVIOUS)).is_ok_and(|p| same(&p.image)) {
            out.push(format!("{} (rollback)", zone.name));
        }
        if binding::last_good(zone).is_some_and(|g| same(&g.image)) {
            out.push(format!("{} (last good)", zone.name));
        }
    }
    out
}

fn delete(root: &Path, name: &str, version: &str) -> Result<String, String> {
    let dir = root.join("pool/images");
    let prefix = format!("{name}-{version}-");
    let files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|f| f.to_string_lossy().starts_with(&prefix)))
        .collect();
    if files.is_empty() {
        return Err(format!(
            "no {name}@{version} in /pool/images; `ramkeyctl image list` shows what is there"
        ));
    }
    let zones = ZoneSpec::all(root);
    let mut out = String::new();
    for file in files {
        let users = users(root, &zones, &file);
        if !users.is_empty() {
            return Err(format!(
                "refused: {} is used by {}; swap those zones to another image first",
                file.display(),
                users.join(", ")
            ));
        }
        fs::remove_file(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let _ = writeln!(out, "deleted {}", file.display());
    }
    Ok(out)
}
