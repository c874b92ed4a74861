//! Changing a tree that may hold hostile symlinks (an OCI image being flattened, a root
//! filesystem being scrubbed or overlaid) only through folders the kernel opened beneath its
//! root (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), one name at a time: a
//! symlink in the tree, wherever it points, is never followed as a folder, so nothing outside
//! the tree is read, written or removed. The last name of a path is acted on itself: a
//! symlink there is created, replaced or removed, never followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Uid, fchmod, fchown, mkdirat, openat, openat2, statat,
    unlinkat,
};
use rustix::io::Errno;

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// `path` as plain names (`.` dropped), or `None` if it is absolute or has a `..`.
pub fn relative(path: &Path) -> Option<PathBuf> {
    path.components().try_fold(PathBuf::new(), |mut out, c| match c {
        Component::Normal(name) => {
            out.push(name);
            Some(out)
        }
        Component::CurDir => Some(out),
        _ => None,
    })
}

/// The folder and the last name of a [`relative`] path; `None` for the root itself.
pub fn split(path: &Path) -> Option<(&Path, &OsStr)> {
    Some((path.parent()?, path.file_name()?))
}

/// Opens the root of a tree (the build's own folder: the path itself is trusted).
pub fn open(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, DIR.difference(OFlags::NOFOLLOW), Mode::empty())?)
}

/// Opens folder `path` (a [`relative`] path) beneath `dir`, making the missing ones (0755) if
/// `create`. A name that is a symlink or not a folder fails with
/// [`io::ErrorKind::NotADirectory`], naming it; a missing one with `NotFound`.
pub fn dir(dir: impl AsFd, path: &Path, create: bool) -> io::Result<OwnedFd> {
    let mut fd = openat(dir, c".", DIR, Mode::empty())?;
    let mut walked = PathBuf::new();
    for c in path.components() {
        let name = match c {
            Component::Normal(name) => name,
            Component::CurDir => continue,
            _ => {
                let message = format!("`{}` is not a relative path without `..`", path.display());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
        };
        walked.push(name);
        let open = |fd: &OwnedFd| {
            openat2(
                fd,
                name,
                DIR,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
            )
        };
        let next = match open(&fd) {
            Err(Errno::NOENT) if create => match mkdirat(&fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => open(&fd),
                Err(e) => Err(e),
            },
            other => other,
        };
        fd = match next {
            Ok(next) => next,
            Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => {
                let what = match kind(&fd, name)? {
                    Some(FileType::Symlink) => "a symlink, not followed",
                    _ => "not a folder",
                };
                let message = format!("`{}` is {what}", walked.display());
                return Err(io::Error::new(io::ErrorKind::NotADirectory, message));
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(fd)
}

/// Whether an error from [`dir`] means there is nothing beneath that path in the tree
/// (missing, or a symlink or a file in the way).
pub fn absent(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory)
}

/// What `name` in `dir` is (a symlink is not followed), or `None` if nothing is there.
pub fn kind(dir: impl AsFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes `name` from `dir` whatever it is, a folder with its contents; nothing there is fine.
pub fn remove(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    match kind(dir, name)? {
        None => return Ok(()),
        Some(FileType::Directory) => {
            clear(self::dir(dir, Path::new(name), false)?)?;
            unlinkat(dir, name, AtFlags::REMOVEDIR)?;
        }
        Some(_) => unlinkat(dir, name, AtFlags::empty())?,
    }
    Ok(())
}

/// Removes everything in folder `dir`.
pub fn clear(dir: impl AsFd) -> io::Result<()> {
    let dir = dir.as_fd();
    let mut names = Vec::new();
    for entry in Dir::read_from(dir)? {
        let name = OsStr::from_bytes(entry?.file_name().to_bytes()).to_os_string();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    names.iter().try_for_each(|name: &OsString| remove(dir, name))
}

/// Creates the new file `name` in `dir` (mode 0600 until set): fails if anything is there.
pub fn create(dir: impl AsFd, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(openat(dir, name, flags, Mode::from_raw_mode(0o600))?))
}

/// Makes folder `name` in `dir` (0755) unless it is there, and opens it.
pub fn make_dir(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    self::dir(dir, Path::new(name), true)
}

/// Sets the owner (if given, first: that clears set-id bits) and the mode (`0o7777` of it)
/// of an open file.
pub fn set_owner_mode(fd: impl AsFd, owner: Option<(Uid, Gid)>, mode: u32) -> io::Result<()> {
    if let Some((uid, gid)) = owner {
        fchown(&fd, Some(uid), Some(gid))?;
    }
    fchmod(&fd, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn folders_are_opened_and_made_beneath_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        fs::create_dir_all(root.join("a")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/out")).unwrap();
        std::os::unix::fs::symlink("..", root.join("up")).unwrap();
        fs::write(root.join("f"), "").unwrap();
        let tree = open(&root).unwrap();
        dir(&tree, Path::new("a/b/c"), true).unwrap();
        assert!(root.join("a/b/c").is_dir());
        for (path, message) in [
            ("a/out/x", "`a/out` is a symlink, not followed"),
            ("up/outside", "`up` is a symlink, not followed"),
            ("f/x", "`f` is not a folder"),
        ] {
            let e = dir(&tree, Path::new(path), true).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotADirectory, "{path}");
            assert_eq!(e.to_string(), message);
        }
        assert!(dir(&tree, Path::new("../outside"), false).is_err());
        assert!(absent(&dir(&tree, Path::new("nope"), false).unwrap_err()));
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "nothing made outside");
    }

    #[test]
    fn remove_takes_the_symlink_not_what_it_points_to() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("keep"), "").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("a/b/out")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        let tree = open(&root).unwrap();
        remove(&tree, OsStr::new("a")).unwrap();
        remove(&tree, OsStr::new("out")).unwrap();
        remove(&tree, OsStr::new("nothing")).unwrap();
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
    }
}
