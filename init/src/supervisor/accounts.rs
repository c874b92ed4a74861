//! User and group names to numbers, read from `<root>/etc/passwd` and `<root>/etc/group`.
//!
//! Parsed by hand rather than with `getpwnam(3)`: the init is a static binary, where glibc's
//! NSS lookups do not work, and the box only has the files anyway.

use std::path::{Path, PathBuf};

use super::spawner::SpawnError;

/// The ids a process runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Resolves names against the account files under a root.
#[derive(Debug, Clone)]
pub struct Accounts {
    root: PathBuf,
}

impl Accounts {
    /// Reads `root/etc/passwd` and `root/etc/group` when asked (`/` on the box).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Accounts { root: root.into() }
    }

    /// The ids for `user` (name or number; root when absent) and `group` (name or number;
    /// the user's primary group when absent).
    pub fn resolve(&self, user: Option<&str>, group: Option<&str>) -> Result<Ids, SpawnError> {
        let (uid, primary) = match user {
            None => (0, 0),
            Some(user) => match user.parse::<u32>() {
                Ok(uid) => {
                    // A number needs no entry; when it has one, its primary group comes too.
                    match self.lookup("passwd", |f| f.get(2) == Some(&user)).ok().flatten() {
                        Some(fields) => (uid, num(&fields, 3)?),
                        None => (uid, uid),
                    }
                }
                Err(_) => {
                    let fields = self
                        .lookup("passwd", |f| f.first() == Some(&user))?
                        .ok_or_else(|| unknown("user", user))?;
                    (num(&fields, 2)?, num(&fields, 3)?)
                }
            },
        };
        let gid = match group {
            None => primary,
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let fields = self
                        .lookup("group", |f| f.first() == Some(&group))?
                        .ok_or_else(|| unknown("group", group))?;
                    num(&fields, 2)?
                }
            },
        };
        Ok(Ids { uid, gid })
    }

    /// The fields of the first line of `etc/<file>` that `matches`.
    fn lookup(&self, file: &str, matches: impl Fn(&[&str]) -> bool) -> Result<Option<Vec<String>>, SpawnError> {
        let path = self.root.join("etc").join(file);
        let text = std::fs::read_to_string(&path).map_err(|source| accounts_error(&path, source))?;
        Ok(text
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
            .find(|fields| matches(fields))
            .map(|fields| fields.into_iter().map(str::to_string).collect()))
    }
}

fn num(fields: &[String], at: usize) -> Result<u32, SpawnError> {
    let text = fields.get(at).map_or("", String::as_str);
    text.parse().map_err(|_| SpawnError::Accounts {
        path: format!("account `{}`", fields.first().map_or("", String::as_str)),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad id `{text}`")),
    })
}

fn unknown(kind: &'static str, name: &str) -> SpawnError {
    SpawnError::UnknownAccount {
        kind,
        name: name.to_string(),
    }
}

fn accounts_error(path: &Path, source: std::io::Error) -> SpawnError {
    SpawnError::Accounts {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_numbers_and_primary_groups() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:102:nginx:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nwww:x:33:nginx\n").unwrap();
        let a = Accounts::new(dir.path());
        assert_eq!(a.resolve(None, None).unwrap(), Ids { uid: 0, gid: 0 });
        assert_eq!(a.resolve(Some("nginx"), None).unwrap(), Ids { uid: 101, gid: 102 });
        assert_eq!(
            a.resolve(Some("nginx"), Some("www")).unwrap(),
            Ids { uid: 101, gid: 33 }
        );
        assert_eq!(a.resolve(Some("101"), None).unwrap(), Ids { uid: 101, gid: 102 });
        assert_eq!(a.resolve(Some("5000"), Some("7")).unwrap(), Ids { uid: 5000, gid: 7 });
        let err = a.resolve(Some("ghost"), None).unwrap_err().to_string();
        assert_eq!(err, "unknown user `ghost` (not in /etc/passwd)");
        let err = a.resolve(None, Some("nogroup")).unwrap_err().to_string();
        assert_eq!(err, "unknown group `nogroup` (not in /etc/group)");
    }
}
