//! Loading a module with its dependency closure, behind the [`ModuleLoader`] trait.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::devices::modules::{ModuleIndex, ModulesError, normalize};

/// Loading a module failed.
#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    /// The module or one of its dependencies is not in the index.
    #[error(transparent)]
    Index(#[from] ModulesError),
    /// The `.ko` file could not be opened.
    #[error("cannot open {path} for module {module}: {source}")]
    Open {
        /// The module.
        module: String,
        /// Its `.ko` file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The parameter string holds a NUL byte.
    #[error("module {module}: parameters contain a NUL byte")]
    Params {
        /// The module.
        module: String,
    },
    /// `finit_module` failed.
    #[error("finit_module {module} ({path}) failed: {source}")]
    Load {
        /// The module.
        module: String,
        /// Its `.ko` file.
        path: PathBuf,
        /// The errno.
        source: Errno,
    },
    /// A dependency failed earlier, so the module was not tried.
    #[error("module {module} not loaded: its dependency {dependency} failed to load")]
    Dependency {
        /// The module.
        module: String,
        /// The dependency that failed.
        dependency: String,
    },
    /// The thread loading the module panicked (the panic is on the console above).
    #[error("loading module {module} panicked (see the PANIC line above)")]
    Panicked {
        /// The module.
        module: String,
    },
}

/// What a successful load did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The kernel loaded the module now.
    Loaded,
    /// The kernel already had it (`EEXIST`).
    AlreadyLoaded,
}

/// Puts one module into the kernel.
pub trait ModuleLoader {
    /// Loads `name` from `path` (absolute) with the `finit_module` parameter string.
    fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError>;

    /// What coldplug needs to let loads overlap (see [`crate::devices::overlap`]): a loader
    /// the loading threads share and the kernel's announcements of new devices and of modules
    /// that have run their init. `None` (the default, and when the announcements cannot be
    /// had): coldplug loads one module at a time on the caller's thread.
    fn parallel(&self) -> Option<Parallel> {
        None
    }
}

/// A loader that several threads may call at once (`finit_module(2)` may be).
pub trait SharedLoader: Send + Sync {
    /// As [`ModuleLoader::load`].
    fn load(&self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError>;
}

/// What overlapping loads need, from [`ModuleLoader::parallel`].
pub struct Parallel {
    /// Loads in the loading threads.
    pub loader: Box<dyn SharedLoader>,
    /// Announces new devices and finished module inits, opened before coldplug scans sysfs.
    pub feed: Box<dyn DeviceFeed>,
}

impl std::fmt::Debug for Parallel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parallel")
    }
}

/// One thing the kernel announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announced {
    /// A device was added; its modalias.
    Device(String),
    /// A module has run its init (its state is live, so modules needing its symbols may load),
    /// even if its `finit_module` has not returned yet.
    Module(String),
}

/// Reading the announcements failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedError {
    /// Some were lost (the socket's buffer overflowed): sysfs must be scanned again.
    Lost,
    /// The feed cannot be read any more.
    Broken(Errno),
}

/// The kernel's announcements (the uevent socket on the box, a pipe in tests).
pub trait DeviceFeed: std::os::fd::AsFd {
    /// Every announcement pending now, without blocking.
    fn drain(&mut self) -> Result<Vec<Announced>, FeedError>;
}

impl std::fmt::Debug for dyn ModuleLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleLoader")
    }
}

/// The real loader: `finit_module(2)` on the opened `.ko` file.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelLoader;

impl ModuleLoader for KernelLoader {
    fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError> {
        SharedLoader::load(self, name, path, params)
    }

    fn parallel(&self) -> Option<Parallel> {
        match crate::devices::uevent::UeventSocket::open() {
            Ok(socket) => Some(Parallel {
                loader: Box::new(KernelLoader),
                feed: Box::new(socket),
            }),
            Err(e) => {
                crate::warn!("{e}; coldplug loads one module at a time");
                None
            }
        }
    }
}

impl SharedLoader for KernelLoader {
    fn load(&self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError> {
        let file = File::open(path).map_err(|source| ModprobeError::Open {
            module: name.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        let params = CString::new(params).map_err(|_| ModprobeError::Params {
            module: name.to_owned(),
        })?;
        match crate::sys::finit_module(&file, &params) {
            Ok(()) => Ok(LoadOutcome::Loaded),
            Err(Errno::EEXIST) => Ok(LoadOutcome::AlreadyLoaded),
            Err(source) => Err(ModprobeError::Load {
                module: name.to_owned(),
                path: path.to_owned(),
                source,
            }),
        }
    }
}

/// A loader for tests: records each call and answers as configured.
#[derive(Debug, Default)]
#[cfg(test)]
pub struct RecordingLoader {
    /// `(module, params)` for every call, in order.
    pub calls: Vec<(String, String)>,
    /// Modules answered with `EEXIST`.
    pub already_loaded: Vec<String>,
    /// Modules answered with this errno.
    pub failing: HashMap<String, Errno>,
}

#[cfg(test)]
impl ModuleLoader for RecordingLoader {
    fn load(&mut self, name: &str, path: &Path, params: &str) -> Result<LoadOutcome, ModprobeError> {
        self.calls.push((name.to_owned(), params.to_owned()));
        if let Some(&source) = self.failing.get(name) {
            return Err(ModprobeError::Load {
                module: name.to_owned(),
                path: path.to_owned(),
                source,
            });
        }
        if self.already_loaded.iter().any(|m| m == name) {
            return Ok(LoadOutcome::AlreadyLoaded);
        }
        Ok(LoadOutcome::Loaded)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Loaded,
    Failed,
}

/// Loads modules with their dependencies, remembering what is loaded or failed.
#[derive(Debug)]
pub struct Modprobe {
    index: ModuleIndex,
    params: BTreeMap<String, String>,
    state: HashMap<String, State>,
    /// Modaliases whose modules were asked for already.
    seen: HashSet<String>,
}

impl Modprobe {
    /// A modprobe over `index`, with per-module parameter strings (from the cmdline).
    pub fn new(index: ModuleIndex, params: BTreeMap<String, String>) -> Self {
        Modprobe {
            index,
            params,
            state: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    /// The module index.
    pub fn index(&self) -> &ModuleIndex {
        &self.index
    }

    /// Records modules the kernel already has, from `/proc/modules` text.
    pub fn seed_loaded(&mut self, proc_modules: &str) {
        for name in proc_modules.lines().filter_map(|l| l.split_whitespace().next()) {
            self.state.insert(normalize(name), State::Loaded);
        }
    }

    /// True when `name` is known to be in the kernel.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.state.get(&normalize(name)) == Some(&State::Loaded)
    }

    /// True when loading `name` failed (it is not tried again).
    pub fn is_failed(&self, name: &str) -> bool {
        self.state.get(&normalize(name)) == Some(&State::Failed)
    }

    /// Records what loading `name` did.
    pub fn record(&mut self, name: &str, loaded: bool) {
        let state = if loaded { State::Loaded } else { State::Failed };
        self.state.insert(normalize(name), state);
    }

    /// True the first time a modalias is seen: its modules are looked up once.
    pub fn first_sight(&mut self, modalias: &str) -> bool {
        self.seen.insert(modalias.to_owned())
    }

    /// The modules to load for `name`, dependencies first, without those loaded already;
    /// empty when `name` is loaded or failed before. An unknown module, or a dependency that
    /// failed before, is an error, and `name` is not tried again.
    pub fn plan(&mut self, name: &str) -> Result<Vec<String>, ModprobeError> {
        let name = normalize(name);
        if self.state.contains_key(&name) {
            return Ok(Vec::new());
        }
        let order = match self.index.load_order(&name) {
            Ok(order) => order,
            Err(e) => {
                self.state.insert(name, State::Failed);
                return Err(e.into());
            }
        };
        if let Some(dependency) = self.failed_dependency(&name) {
            self.state.insert(name.clone(), State::Failed);
            return Err(ModprobeError::Dependency {
                module: name,
                dependency,
            });
        }
        Ok(order.into_iter().filter(|m| !self.is_loaded(m)).collect())
    }

    /// A module of `name`'s dependency closure whose load failed.
    pub fn failed_dependency(&self, name: &str) -> Option<String> {
        let order = self.index.load_order(name).ok()?;
        order
            .into_iter()
            .filter(|m| *m != normalize(name))
            .find(|m| self.is_failed(m))
    }

    /// The `.ko` file and the parameter string of an indexed module.
    pub fn file_and_params(&self, name: &str) -> Option<(PathBuf, String)> {
        let entry = self.index.get(name)?;
        let params = self.params.get(&normalize(name)).cloned().unwrap_or_default();
        Some((self.index.dir.join(&entry.path), params))
    }

    /// Loads `name` and its dependency closure, deepest first.
    ///
    /// Returns how many modules the kernel loaded now. Modules already loaded are
    /// skipped; a module that failed once is not tried again (and yields `Ok(0)`).
    pub fn modprobe(&mut self, name: &str, loader: &mut dyn ModuleLoader) -> Result<usize, ModprobeError> {
        let name = normalize(name);
        match self.state.get(&name) {
            Some(State::Loaded | State::Failed) => return Ok(0),
            None => {}
        }
        let order = match self.index.load_order(&name) {
            Ok(order) => order,
            Err(e) => {
                self.state.insert(name, State::Failed);
                return Err(e.into());
            }
        };
        let mut loaded = 0;
        for module in order {
            match self.state.get(&module) {
                Some(State::Loaded) => continue,
                Some(State::Failed) => {
                    self.state.insert(name.clone(), State::Failed);
                    return Err(ModprobeError::Dependency {
                        module: name,
                        dependency: module,
                    });
                }
                None => {}
            }
            let Some(entry) = self.index.get(&module) else {
                continue; // load_order only returns indexed modules
            };
            let path = self.index.dir.join(&entry.path);
            let params = self.params.get(&module).map_or("", String::as_str);
            match loader.load(&module, &path, params) {
                Ok(outcome) => {
                    if outcome == LoadOutcome::Loaded {
                        loaded += 1;
                        crate::debug!("loaded module {module} [{params}]");
                    }
                    self.state.insert(module, State::Loaded);
                }
                Err(e) => {
                    self.state.insert(module, State::Failed);
                    self.state.insert(name, State::Failed);
                    return Err(e);
                }
            }
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A diamond: top -> left, right; left -> base; right -> base.
    const DEP: &str = "\
kernel/top.ko: kernel/right.ko kernel/base.ko kernel/left.ko
kernel/left.ko: kernel/base.ko
kernel/right.ko: kernel/base.ko
kernel/base.ko:
kernel/other-mod.ko: kernel/base.ko
kernel/broken.ko: kernel/missing.ko
";

    fn modprobe(params: &[(&str, &str)]) -> Modprobe {
        let mut index = ModuleIndex::parse(DEP, "");
        index.dir = PathBuf::from("/lib/modules/6.1.0-test");
        let params = params.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
        Modprobe::new(index, params)
    }

    fn names(loader: &RecordingLoader) -> Vec<&str> {
        loader.calls.iter().map(|(m, _)| m.as_str()).collect()
    }

    #[test]
    fn diamond_loads_each_module_once_deepest_first() {
        let mut mp = modprobe(&[]);
        let mut loader = RecordingLoader::default();
        assert_eq!(mp.modprobe("top", &mut loader).unwrap(), 4);
        assert_eq!(names(&loader), vec!["base", "right", "left", "top"]);
        assert_eq!(mp.modprobe("top", &mut loader).unwrap(), 0);
        assert_eq!(loader.calls.len(), 4);
    }

    #[test]
    fn already_loaded_modules_are_skipped() {
        let mut mp = modprobe(&[]);
        mp.seed_loaded("base 16384 3 left,right, Live 0x0000000000000000\n");
        let mut loader = RecordingLoader::default();
        assert_eq!(mp.modprobe("other-mod", &mut loader).unwrap(), 1);
        assert_eq!(names(&loader), vec!["other_mod"]);
        assert!(mp.is_loaded("other-mod"));
    }

    #[test]
    fn eexist_counts_as_loaded_but_not_new() {
        let mut mp = modprobe(&[]);
        let mut loader = RecordingLoader {
            already_loaded: vec!["base".into()],
            ..Default::default()
        };
        assert_eq!(mp.modprobe("left", &mut loader).unwrap(), 1);
        assert!(mp.is_loaded("base"));
    }

    #[test]
    fn params_and_paths_are_passed() {
        struct PathRecorder(Vec<PathBuf>);
        impl ModuleLoader for PathRecorder {
            fn load(&mut self, _: &str, path: &Path, _: &str) -> Result<LoadOutcome, ModprobeError> {
                self.0.push(path.to_owned());
                Ok(LoadOutcome::Loaded)
            }
        }
        let mut mp = modprobe(&[("left", "x=1 y=\"a b\"")]);
        let mut loader = RecordingLoader::default();
        mp.modprobe("left", &mut loader).unwrap();
        assert_eq!(
            loader.calls,
            vec![("base".into(), String::new()), ("left".into(), "x=1 y=\"a b\"".into())]
        );
        let mut paths = PathRecorder(Vec::new());
        modprobe(&[]).modprobe("base", &mut paths).unwrap();
        assert_eq!(paths.0, vec![PathBuf::from("/lib/modules/6.1.0-test/kernel/base.ko")]);
    }

    #[test]
    fn failed_dependency_stops_dependents_and_is_not_retried() {
        let mut mp = modprobe(&[]);
        let mut loader = RecordingLoader::default();
        loader.failing.insert("base".into(), Errno::ENOEXEC);
        let err = mp.modprobe("top", &mut loader).unwrap_err();
        assert!(matches!(err, ModprobeError::Load { ref module, source: Errno::ENOEXEC, .. } if module == "base"));
        assert_eq!(names(&loader), vec!["base"]);
        let err = mp.modprobe("left", &mut loader).unwrap_err();
        assert!(matches!(err, ModprobeError::Dependency { ref dependency, .. } if dependency == "base"));
        assert_eq!(mp.modprobe("top", &mut loader).unwrap(), 0);
        assert_eq!(loader.calls.len(), 1);
    }

    #[test]
    fn plan_lists_what_is_missing_dependencies_first() {
        let mut mp = modprobe(&[("left", "x=1")]);
        mp.seed_loaded("base 16384 0 - Live 0x0\n");
        assert_eq!(mp.plan("top").unwrap(), ["right", "left", "top"]);
        assert_eq!(
            mp.file_and_params("left"),
            Some((PathBuf::from("/lib/modules/6.1.0-test/kernel/left.ko"), "x=1".into()))
        );
        mp.record("right", false);
        assert_eq!(mp.failed_dependency("top").as_deref(), Some("right"));
        assert!(matches!(mp.plan("top"), Err(ModprobeError::Dependency { .. })));
        assert!(mp.is_failed("top"));
        assert!(mp.plan("top").unwrap().is_empty());
        assert!(matches!(mp.plan("nope"), Err(ModprobeError::Index(_))));
        assert!(mp.first_sight("pci:v1") && !mp.first_sight("pci:v1"));
    }

    #[test]
    fn unknown_module_or_dependency() {
        let mut mp = modprobe(&[]);
        let mut loader = RecordingLoader::default();
        assert!(matches!(mp.modprobe("nope", &mut loader), Err(ModprobeError::Index(_))));
        assert!(matches!(
            mp.modprobe("broken", &mut loader),
            Err(ModprobeError::Index(_))
        ));
        assert!(loader.calls.is_empty());
    }

    #[test]
    fn kernel_loader_reports_missing_file() {
        let err = KernelLoader.load("x", Path::new("/nonexistent/x.ko"), "").unwrap_err();
        assert!(matches!(err, ModprobeError::Open { .. }));
        let dir = tempfile::tempdir().unwrap();
        let ko = dir.path().join("x.ko");
        std::fs::write(&ko, b"").unwrap();
        let err = KernelLoader.load("x", &ko, "a\0b").unwrap_err();
        assert!(matches!(err, ModprobeError::Params { .. }));
    }
}
