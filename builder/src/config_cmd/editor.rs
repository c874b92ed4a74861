//! `ramkey config edit`: the config in `$EDITOR` (default `vi`) on a temporary copy; saved
//! only when the result is valid. An invalid result is shown with every problem and, on a
//! terminal, offered for another round in the editor; without a terminal the command fails
//! and keeps the rejected text in a file so that no work is lost.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;

use ramkey_config::{CONFIG_FILE, Config};

use super::ConfigCmdError;
use super::store::{Target, io_err};
use crate::flash::sysfs::Sysfs;

/// Whether to open the editor again after an invalid result.
pub trait Ask {
    /// The problems have been shown; `Ok(true)` re-opens the editor.
    fn edit_again(&mut self) -> io::Result<bool>;
}

/// Asks on the terminal; says no when stdin or stderr is not one.
#[derive(Debug)]
pub struct Terminal;

impl Ask for Terminal {
    fn edit_again(&mut self) -> io::Result<bool> {
        if !(io::stdin().is_terminal() && io::stderr().is_terminal()) {
            return Ok(false);
        }
        eprint!("Edit again? [Y/n] ");
        let mut line = String::new();
        io::stdin().lock().read_line(&mut line)?;
        Ok(!line.trim().to_lowercase().starts_with('n'))
    }
}

/// What `edit` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edited {
    Saved,
    Unchanged,
}

/// Runs `editor` (a shell word list, as `$EDITOR` is: `vi`, `code --wait`) on a copy of the
/// config until the result is valid, unchanged, or refused; `problems` gets each round's errors.
pub fn edit(
    target: &Target,
    editor: &str,
    sys: &Sysfs,
    ask: &mut dyn Ask,
    problems: &mut dyn Write,
) -> Result<Edited, ConfigCmdError> {
    // Opened (a stick exclusively) before the editor starts: a refusal comes first, nothing
    // mounts the stick meanwhile, and the save goes to what was opened, whatever the path
    // names by then. The descriptor is close-on-exec: the editor does not get it.
    let opened = target.open_for_writing(sys)?;
    let original = opened.read()?;
    let dir = tempfile::tempdir().map_err(io_err("creating a temporary folder in", &std::env::temp_dir()))?;
    // Named config.toml so that editors pick TOML highlighting.
    let copy = dir.path().join(CONFIG_FILE);
    std::fs::write(&copy, &original).map_err(io_err("writing", &copy))?;
    loop {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&copy)
            .status()
            .map_err(io_err("running the editor on", &copy))?;
        if !status.success() {
            return Err(ConfigCmdError::EditorFailed {
                editor: editor.to_owned(),
                status: status.to_string(),
            });
        }
        let text = std::fs::read(&copy).map_err(io_err("reading", &copy))?;
        let text = String::from_utf8(text).map_err(|_| ConfigCmdError::NotText {
            name: copy.display().to_string(),
        })?;
        if text == original {
            return Ok(Edited::Unchanged);
        }
        match Config::parse(&text, &target.name()) {
            Ok(_) => {
                opened.write(&text, sys)?;
                return Ok(Edited::Saved);
            }
            Err(errors) => {
                let _ = writeln!(problems, "{errors}");
                if ask
                    .edit_again()
                    .map_err(io_err("asking on", &PathBuf::from("/dev/tty")))?
                {
                    continue;
                }
                let kept = std::env::temp_dir().join(format!("ramkey-config-rejected-{}.toml", std::process::id()));
                std::fs::write(&kept, &text).map_err(io_err("saving the rejected text to", &kept))?;
                return Err(ConfigCmdError::EditRefused { errors, kept });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;

    use super::*;
    use crate::config_cmd::store::tests::{config_of, image};

    /// Says yes `n` times, then no.
    struct Yes(usize);

    impl Ask for Yes {
        fn edit_again(&mut self) -> io::Result<bool> {
            let again = self.0 > 0;
            self.0 = self.0.saturating_sub(1);
            Ok(again)
        }
    }

    fn file(text: &str) -> (tempfile::TempDir, Target) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, Target::File(path))
    }

    const START: &str = "version = 1\nhostname = \"one\" # the name\n";

    #[test]
    fn a_valid_edit_is_saved_and_no_change_is_no_write() {
        let (dir, target) = file(START);
        let mut out = Vec::new();
        let done = edit(&target, "sed -i s/one/two/", &Sysfs::host(), &mut Yes(0), &mut out).unwrap();
        assert_eq!(done, Edited::Saved);
        assert_eq!(target.read(&Sysfs::host()).unwrap(), START.replace("one", "two"));
        assert!(dir.path().join("config.toml.prev").exists());
        let done = edit(&target, "true", &Sysfs::host(), &mut Yes(0), &mut out).unwrap();
        assert_eq!(done, Edited::Unchanged);
        assert!(out.is_empty());
    }

    #[test]
    fn an_invalid_edit_is_refused_or_edited_again() {
        let (_dir, target) = file(START);
        let mut out = Vec::new();
        let err = edit(
            &target,
            "sed -i s/one/bad_name!/",
            &Sysfs::host(),
            &mut Yes(0),
            &mut out,
        )
        .unwrap_err();
        let ConfigCmdError::EditRefused { kept, .. } = &err else {
            panic!("{err}");
        };
        assert!(std::fs::read_to_string(kept).unwrap().contains("bad_name!"));
        std::fs::remove_file(kept).unwrap();
        assert!(String::from_utf8(out).unwrap().contains(":2:12: hostname"));
        assert_eq!(target.read(&Sysfs::host()).unwrap(), START);
        // The second round fixes what the first broke (the editor sees the broken text).
        let script = "sh -c 'if grep -q bad \"$1\"; then sed -i s/bad_name!/three/ \"$1\"; else sed -i s/one/bad_name!/ \"$1\"; fi' --";
        let done = edit(&target, script, &Sysfs::host(), &mut Yes(1), &mut Vec::new()).unwrap();
        assert_eq!(done, Edited::Saved);
        assert_eq!(target.read(&Sysfs::host()).unwrap(), START.replace("one", "three"));
        let err = edit(&target, "false", &Sysfs::host(), &mut Yes(0), &mut Vec::new()).unwrap_err();
        assert!(matches!(err, ConfigCmdError::EditorFailed { .. }), "{err}");
    }

    #[test]
    fn the_image_opened_before_the_editor_is_the_one_written() {
        // While the editor runs (minutes, for a person), another image takes the path. The
        // edit goes to the image that was opened and checked, not to the one now there.
        let dir = tempfile::tempdir().unwrap();
        let (img, other) = (dir.path().join("usb.img"), dir.path().join("other.img"));
        image(&img, START);
        image(&other, "version = 1\nhostname = \"other\"\n");
        let (checked, swapped) = (File::open(&img).unwrap(), File::open(&other).unwrap());
        let script = format!(
            "sh -c 'mv \"{}\" \"{}\" && sed -i s/one/two/ \"$1\"' --",
            other.display(),
            img.display()
        );
        let target = Target::Disk(img.clone());
        let done = edit(&target, &script, &Sysfs::host(), &mut Yes(0), &mut Vec::new()).unwrap();
        assert_eq!(done, Edited::Saved);
        assert_eq!(config_of(&checked), START.replace("one", "two"));
        assert_eq!(
            config_of(&swapped),
            "version = 1\nhostname = \"other\"\n",
            "written by name"
        );
    }
}
