//! Paths inside a tree a zone controls (its writable root, or `/proc/PID/root` seen from
//! the host), resolved by the kernel (`openat2`) so that a symlink the zone planted can
//! neither lead a host-root process out of that tree nor, where a mount goes, be followed
//! at all. Like runc's `securejoin` and LXC's `safe_mount`, but by the kernel itself.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// Why a path beneath a zone's tree could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BeneathError {
    /// A component is a symlink (or something else that is not a directory) where a
    /// directory must be: the zone's writable layer was tampered with.
    #[error("{path} in the zone is a symlink or not a directory; refusing to follow it")]
    NotADirectory {
        /// The path inside the zone.
        path: String,
    },
    /// The file is not what a reader expects (a FIFO, a device, a directory, a socket).
    #[error("{path} in the zone is not a {expected}")]
    WrongType {
        /// The path inside the zone.
        path: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Another error from the kernel.
    #[error("{path} in the zone: {source}")]
    Io {
        /// The path inside the zone.
        path: String,
        /// The errno.
        source: Errno,
    },
}

fn io(path: &Path) -> impl FnOnce(Errno) -> BeneathError + '_ {
    move |source| BeneathError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn open_root(root: &Path) -> Result<OwnedFd, BeneathError> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io(root))
}

/// Opens directory `path` beneath `root`, creating the missing components (mode 0755),
/// without following any symlink or leaving `root` by `..`. Returns an `O_PATH` descriptor:
/// mount on it through [`fd_path`], so that nothing can swap the path in between.
pub fn make_dir(root: &Path, path: &Path) -> Result<OwnedFd, BeneathError> {
    let mut dir = open_root(root)?;
    let not_a_dir = || BeneathError::NotADirectory {
        path: path.display().to_string(),
    };
    let how = || {
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_BENEATH)
    };
    for component in path.components() {
        let name = match component {
            Component::Normal(name) => name,
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => return Err(not_a_dir()),
        };
        let next = match openat2(dir.as_fd(), name, how()) {
            Err(Errno::ENOENT) => {
                match mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(io(path)(e)),
                }
                openat2(dir.as_fd(), name, how())
            }
            other => other,
        };
        dir = match next {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => return Err(not_a_dir()),
            Err(e) => return Err(io(path)(e)),
        };
    }
    Ok(dir)
}

/// `PROC/self/fd/N` (`proc` is where procfs is mounted, `/proc`): the path of an open
/// descriptor, for calls that take a path (`mount`, `connect`). Valid while `fd` is open.
pub fn fd_path(proc: &Path, fd: &impl AsRawFd) -> PathBuf {
    proc.join("self/fd").join(fd.as_raw_fd().to_string())
}

/// Opens `path` as if `root` were `/` (`RESOLVE_IN_ROOT`: absolute symlinks and `..` stay
/// inside it; no magic links), with `flags` (`O_CLOEXEC | O_NOFOLLOW` are added; pass
/// `O_NONBLOCK` with a read, so that a FIFO the zone planted does not block the reader —
/// `openat2` refuses it with `O_PATH`).
fn open_in_root(root: &Path, path: &Path, flags: OFlag) -> Result<OwnedFd, BeneathError> {
    let root_fd = open_root(root)?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let relative = path.strip_prefix("/").unwrap_or(path);
    openat2(root_fd.as_fd(), relative, how).map_err(io(path))
}

fn kind_of(fd: &OwnedFd, path: &Path) -> Result<SFlag, BeneathError> {
    let stat = fstat(fd).map_err(io(path))?;
    Ok(SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT)
}

/// Opens regular file `path` of the tree at `root` (as if `root` were `/`) for reading; a
/// FIFO, device or directory is refused without blocking.
pub fn open_file(root: &Path, path: &Path) -> Result<File, BeneathError> {
    let fd = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    if kind_of(&fd, path)? != SFlag::S_IFREG {
        return Err(BeneathError::WrongType {
            path: path.display().to_string(),
            expected: "regular file",
        });
    }
    Ok(File::from(fd))
}

/// The names in directory `path` of the tree at `root` (as if `root` were `/`), at most
/// `limit` of them, `.` and `..` left out.
pub fn list_dir(root: &Path, path: &Path, limit: usize) -> Result<Vec<String>, BeneathError> {
    let fd = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let dir = nix::dir::Dir::from_fd(fd).map_err(io(path))?;
    Ok(dir
        .into_iter()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .take(limit)
        .collect())
}

/// Reads regular file `path` of the tree at `root` (as if `root` were `/`), at most
/// `limit` bytes: the end of it when it is longer.
pub fn read(root: &Path, path: &Path, limit: u64) -> Result<String, BeneathError> {
    let mut file = open_file(root, path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > limit {
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(size - limit))
            .map_err(|e| io(path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    }
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(|e| io(path)(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An `O_PATH` descriptor of the unix socket `path` in the tree at `root`; connect to its
/// [`fd_path`] while it is open.
pub fn socket(root: &Path, path: &Path) -> Result<OwnedFd, BeneathError> {
    let fd = open_in_root(root, path, OFlag::O_PATH)?;
    if kind_of(&fd, path)? != SFlag::S_IFSOCK {
        return Err(BeneathError::WrongType {
            path: path.display().to_string(),
            expected: "socket",
        });
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_made_beneath_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let made = make_dir(&root, Path::new("/srv/www")).unwrap();
        assert!(root.join("srv/www").is_dir());
        assert!(std::fs::metadata(fd_path(Path::new("/proc"), &made)).unwrap().is_dir());
        // A planted symlink, absolute or relative, is not followed.
        std::os::unix::fs::symlink(&outside, root.join("var")).unwrap();
        let err = make_dir(&root, Path::new("var/lib/misc")).unwrap_err();
        assert!(matches!(err, BeneathError::NotADirectory { .. }), "{err}");
        std::os::unix::fs::symlink("../outside", root.join("run")).unwrap();
        assert!(make_dir(&root, Path::new("run")).is_err());
        assert!(make_dir(&root, Path::new("../outside/x")).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing made outside");
    }

    #[test]
    fn reads_stay_in_the_root_and_take_the_end_of_long_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::write(dir.path().join("secret"), "host secret").unwrap();
        std::fs::write(root.join("run/address"), "10.0.0.2/24\n").unwrap();
        assert_eq!(read(&root, Path::new("/run/address"), 100).unwrap(), "10.0.0.2/24\n");
        assert_eq!(read(&root, Path::new("/run/address"), 3).unwrap(), "24\n");
        // An absolute symlink resolves inside the root, where there is no such file.
        let secret = dir.path().join("secret");
        std::os::unix::fs::symlink(&secret, root.join("run/link")).unwrap();
        assert!(read(&root, Path::new("/run/link"), 100).is_err());
        // A FIFO does not block the reader, and is refused.
        nix::unistd::mkfifo(&root.join("run/fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        let err = read(&root, Path::new("/run/fifo"), 100).unwrap_err();
        assert!(matches!(err, BeneathError::WrongType { .. }), "{err}");
        let err = socket(&root, Path::new("/run/address")).unwrap_err();
        assert!(matches!(err, BeneathError::WrongType { .. }), "{err}");
    }

    #[test]
    fn a_socket_beneath_the_root_is_reached_through_its_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("run")).unwrap();
        let _server = std::os::unix::net::UnixListener::bind(root.join("run/control.sock")).unwrap();
        let fd = socket(&root, Path::new("/run/control.sock")).unwrap();
        std::os::unix::net::UnixStream::connect(fd_path(Path::new("/proc"), &fd)).unwrap();
    }
}
