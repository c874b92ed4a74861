//! The platform's services: the console login, and extra definitions read from
//! `/etc/ramkey/services.d/*.toml` (shipped in the platform) and `/usbkey/services.d/*.toml`
//! (put on the stick, e.g. by a test with mtools, without rebuilding the platform).
//!
//! Each file holds one [`ServiceSpec`] in TOML; files are read in name order, the platform's
//! first. A file that cannot be read or parsed is logged and skipped; the others still run.

use std::fs;
use std::path::{Path, PathBuf};

use ramkey_image::service::ServiceSpec;

use crate::runtime::login::{self, Console};
use crate::supervisor::LoadProblem;

/// Where the platform ships service definitions (under the root).
pub const PLATFORM_DIR: &str = "etc/ramkey/services.d";
/// Where the stick may add some (under the usbkey's mount point).
pub const USBKEY_DIR: &str = "services.d";
/// Where each service's log goes (under the root).
pub const LOG_DIR: &str = "var/log/ramkey";

/// A definition file that was skipped.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    /// The file could not be read.
    #[error("{path}: cannot read it: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a service definition.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What TOML or serde said, with the line.
        message: String,
    },
}

/// What the supervisor gets at boot.
#[derive(Debug, Default)]
pub struct Definitions {
    /// Every service, the console login first.
    pub specs: Vec<ServiceSpec>,
    /// Services defined but kept disabled (e.g. the console login without a password).
    pub disabled: Vec<String>,
    /// Files that were skipped.
    pub errors: Vec<DefinitionError>,
}

/// One service definition file.
pub fn parse(path: &Path, text: &str) -> Result<ServiceSpec, DefinitionError> {
    toml::from_str(text).map_err(|e| DefinitionError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

/// Every `*.toml` in `dir` (absent is empty), in name order.
pub fn read_dir(dir: &Path, out: &mut Definitions) {
    let pattern = dir.join("*.toml");
    let Ok(paths) = glob::glob(&pattern.to_string_lossy()) else {
        return;
    };
    let mut paths: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    paths.sort();
    for path in paths {
        match fs::read_to_string(&path) {
            Ok(text) => match parse(&path, &text) {
                Ok(spec) => out.specs.push(spec),
                Err(e) => out.errors.push(e),
            },
            Err(source) => out.errors.push(DefinitionError::Read { path, source }),
        }
    }
}

/// The platform's services for a root (`/`), the console and the usbkey's mount point
/// (when mounted). Writes the account files as a side effect, since the login needs them.
pub fn platform(root: &Path, sys_root: &Path, console: &Console, usbkey: Option<&Path>) -> Definitions {
    let mut defs = Definitions::default();
    let hash = match console {
        Console::Enabled { hash } => Some(hash.as_str()),
        Console::Disabled { .. } => None,
    };
    if let Err(e) = login::write_accounts(root, hash) {
        crate::warn!("{e}");
    }
    defs.specs.push(login::service(&login::console_tty(sys_root)));
    if let Console::Disabled { message } = console {
        crate::notice!("{message}");
        defs.disabled.push(login::SERVICE.to_string());
    }
    read_dir(&root.join(PLATFORM_DIR), &mut defs);
    if let Some(key) = usbkey {
        read_dir(&key.join(USBKEY_DIR), &mut defs);
    }
    defs
}

/// The console line for a load problem, naming who is in maintenance because of it.
pub fn problem_line(problem: &LoadProblem) -> String {
    let down = match problem {
        LoadProblem::Cycle { path } => path[..path.len().saturating_sub(1)].join(", "),
        LoadProblem::Invalid { service, .. }
        | LoadProblem::MissingRequires { service, .. }
        | LoadProblem::BrokenDependency { service, .. } => service.clone(),
        LoadProblem::MissingAfter { .. } | LoadProblem::Duplicate { .. } => return format!("services: {problem}"),
    };
    format!("services: {problem} ({down} in maintenance)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_definitions_in_name_order_and_skips_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(
            d.join("b.toml"),
            "name = \"b\"\nargv = [\"/bin/true\"]\nrequires = [\"a\"]\n",
        )
        .unwrap();
        fs::write(
            d.join("a.toml"),
            "name = \"a\"\nargv = [\"/bin/sleep\", \"9\"]\nrestart = \"always\"\n",
        )
        .unwrap();
        fs::write(d.join("bad.toml"), "name = \"c\"\nargv = [\"/x\"]\nbogus = 1\n").unwrap();
        fs::write(d.join("ignored.txt"), "not toml").unwrap();
        let mut defs = Definitions::default();
        read_dir(d, &mut defs);
        read_dir(&d.join("absent"), &mut defs);
        let names: Vec<_> = defs.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(defs.errors.len(), 1);
        let err = defs.errors[0].to_string();
        assert!(err.contains("bad.toml") && err.contains("bogus"), "{err}");
    }

    #[test]
    fn platform_has_the_login_disabled_without_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("usbkey");
        fs::create_dir_all(key.join(USBKEY_DIR)).unwrap();
        fs::write(key.join("services.d/x.toml"), "name = \"x\"\nargv = [\"/bin/true\"]\n").unwrap();
        let defs = platform(dir.path(), dir.path(), &login::decide(None), Some(&key));
        let names: Vec<_> = defs.specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [login::SERVICE, "x"]);
        assert_eq!(defs.disabled, [login::SERVICE]);
        assert!(dir.path().join("etc/shadow").exists());
    }

    #[test]
    fn problem_lines_name_who_is_in_maintenance() {
        let cycle = LoadProblem::Cycle {
            path: vec!["a".into(), "b".into(), "a".into()],
        };
        assert_eq!(
            problem_line(&cycle),
            "services: cycle: a -> b -> a (a, b in maintenance)"
        );
        let missing = LoadProblem::MissingRequires {
            service: "c".into(),
            missing: "d".into(),
        };
        assert_eq!(
            problem_line(&missing),
            "services: service `c` requires `d`, which is not defined (c in maintenance)"
        );
    }
}
