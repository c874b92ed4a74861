//! `ramkey push BOX FILE... [--swap NAME] [--reboot]`: personality images and a platform
//! bundle delivered to a running box over SSH — the system's `ssh` client with the user's
//! own keys and `known_hosts`. Each image is streamed into `ramkeyctl personality import -`
//! on the box, which verifies it there against the keys the box trusts; with `--swap`, the
//! personality is then swapped to the last image and `personality list` printed. A platform
//! bundle (a file starting with the bundle magic) goes last, into `ramkeyctl platform
//! upgrade -`, which writes the inactive slot and, with `--reboot`, reboots into it.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Instant;

use ramkey_image::bundle::MAGIC;

/// `ramkey push`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The box, as `ssh` takes it: `HOST` (user root) or `USER@HOST`.
    pub target: String,
    /// Personality images (.rkimg) to deliver, in order, and at most one platform bundle
    /// (OUT/platform.rkup), delivered after them.
    #[arg(required = true, value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// Swap this personality to the last image once it is imported.
    #[arg(long, value_name = "NAME")]
    pub swap: Option<String>,
    /// Reboot the box into the platform bundle once it is written (needs a bundle).
    #[arg(long)]
    pub reboot: bool,
    /// The box's SSH port.
    #[arg(short, long)]
    pub port: Option<u16>,
    /// The private key to log in with (default: ssh's own choice).
    #[arg(short, long, value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// An `ssh -o` option, e.g. `-o UserKnownHostsFile=FILE`; repeatable.
    #[arg(short = 'o', value_name = "OPTION")]
    pub options: Vec<String>,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: std::io::Error },
    #[error("running ssh: {0} (install openssh-client)")]
    Ssh(std::io::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{what} on {target} failed: {message}")]
    Remote {
        what: String,
        target: String,
        message: String,
    },
}

impl PushArgs {
    /// `ssh` with the options given, logging in as root unless the target names a user.
    fn ssh(&self, command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        if let Some(port) = self.port {
            cmd.arg("-p").arg(port.to_string());
        }
        if let Some(key) = &self.identity {
            cmd.arg("-i").arg(key);
        }
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        let target = if self.target.contains('@') {
            self.target.clone()
        } else {
            format!("root@{}", self.target)
        };
        cmd.arg(target).arg(command);
        cmd
    }

    /// Runs `command` on the box with `stdin`; its standard output, or its error.
    fn remote(&self, what: &str, command: &str, stdin: Stdio) -> Result<String, PushError> {
        let out = self.run(command, stdin)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        Err(self.failed(what, &stdout, &String::from_utf8_lossy(&out.stderr), out.status))
    }

    fn run(&self, command: &str, stdin: Stdio) -> Result<Output, PushError> {
        self.ssh(command)
            .stdin(stdin)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .map_err(PushError::Ssh)
    }

    /// Runs `deliver` with `path` open; appends what the box said and the time it took to
    /// `out` and returns what the box said.
    fn timed(
        &self,
        path: &Path,
        out: &mut String,
        deliver: impl FnOnce(std::fs::File) -> Result<String, PushError>,
    ) -> Result<String, PushError> {
        let file = std::fs::File::open(path).map_err(|source| PushError::Image {
            path: path.to_path_buf(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let said = deliver(file)?;
        let secs = started.elapsed().as_secs_f64();
        out.push_str(&said);
        out.push_str(&format!(
            "pushed {} ({:.1} MB) in {secs:.1} s ({:.1} MB/s, the box's verification included)\n",
            name(path).to_string_lossy(),
            mb(size),
            mb(size) / secs.max(0.001)
        ));
        Ok(said)
    }

    /// The error of a remote command: what it printed, else its exit status.
    fn failed(&self, what: &str, stdout: &str, stderr: &str, status: ExitStatus) -> PushError {
        let message = [stdout.trim(), stderr.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        PushError::Remote {
            what: what.to_owned(),
            target: self.target.clone(),
            message: if message.is_empty() {
                status.to_string()
            } else {
                message
            },
        }
    }
}

/// The files of one push, sorted: images first, in the order given, then the bundle.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub images: Vec<PathBuf>,
    pub bundle: Option<PathBuf>,
}

/// Sorts `files` (each with whether it is a platform bundle, see [`is_bundle`]) into a
/// [`Plan`], refusing what cannot be done: two bundles, `--reboot` without a bundle,
/// `--swap` without an image.
pub fn plan(files: &[(PathBuf, bool)], reboot: bool, swap: bool) -> Result<Plan, PushError> {
    let (bundles, images): (Vec<_>, Vec<_>) = files.iter().partition(|(_, bundle)| *bundle);
    let images: Vec<PathBuf> = images.into_iter().map(|(path, _)| path.clone()).collect();
    let bundle = match &bundles[..] {
        [] => None,
        [(one, _)] => Some(one.clone()),
        [(a, _), (b, _), ..] => {
            return Err(PushError::Usage(format!(
                "{} and {} are both platform bundles: a box takes one upgrade at a time",
                a.display(),
                b.display()
            )));
        }
    };
    if reboot && bundle.is_none() {
        return Err(PushError::Usage(
            "--reboot reboots the box into a pushed platform bundle: give one (OUT/platform.rkup)".into(),
        ));
    }
    if swap && images.is_empty() {
        return Err(PushError::Usage(
            "--swap NAME swaps a personality to a pushed image: give a .rkimg".into(),
        ));
    }
    Ok(Plan { images, bundle })
}

/// Whether `path` is a platform bundle: its first 8 bytes are the bundle magic. A shorter
/// file is not (it goes to `personality import`, which says what is wrong with it).
pub fn is_bundle(path: &Path) -> Result<bool, PushError> {
    let err = |source| PushError::Image {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(MAGIC.len());
    std::fs::File::open(path)
        .map_err(err)?
        .take(MAGIC.len() as u64)
        .read_to_end(&mut head)
        .map_err(err)?;
    Ok(head == MAGIC)
}

/// The command a bundle is streamed into on the box.
pub fn upgrade_command(reboot: bool) -> String {
    let mut command = "ramkeyctl platform upgrade -".to_string();
    if reboot {
        command.push_str(" --reboot");
    }
    command
}

/// Whether `platform upgrade` succeeded, given ssh's exit code (`None`: killed by a signal)
/// and what the box printed: when it exited 0, and also when ssh lost the connection (255)
/// after the box said `rebooting into slot ...`, as with `--reboot` the box goes down under
/// the session.
pub fn upgrade_succeeded(code: Option<i32>, stdout: &str) -> bool {
    match code {
        Some(0) => true,
        Some(255) => stdout.lines().any(|l| l.starts_with(REBOOTING)),
        _ => false,
    }
}

/// How `ramkeyctl platform upgrade --reboot` begins its last line.
pub const REBOOTING: &str = "rebooting into slot ";

/// The path `personality import` kept the image at: `imported NAME VERSION as PATH; ...`.
pub fn imported_path(output: &str) -> Option<&str> {
    output
        .lines()
        .filter(|l| l.starts_with("imported ") || l.starts_with("already imported "))
        .find_map(|l| l.split_once(" as ")?.1.split_once(';').map(|(path, _)| path))
}

/// Delivers the images, then swaps if asked, then the platform bundle; returns what the box
/// said, with the time each delivery took.
pub fn push(args: &PushArgs) -> Result<String, PushError> {
    let files = args
        .images
        .iter()
        .map(|path| Ok((path.clone(), is_bundle(path)?)))
        .collect::<Result<Vec<_>, PushError>>()?;
    let plan = plan(&files, args.reboot, args.swap.is_some())?;
    let mut out = String::new();
    let mut last = None;
    for image in &plan.images {
        let what = format!("importing {}", image.display());
        let said = args.timed(image, &mut out, |file| {
            args.remote(&what, "ramkeyctl personality import -", file.into())
        })?;
        last = imported_path(&said).map(str::to_owned);
    }
    if let Some(personality) = &args.swap {
        let path = last.ok_or_else(|| PushError::Remote {
            what: "importing".into(),
            target: args.target.clone(),
            message: "the box did not say where it kept the image".into(),
        })?;
        let command = format!("ramkeyctl personality swap {personality} {path}");
        out.push_str(&args.remote(&format!("swapping {personality}"), &command, Stdio::null())?);
        out.push_str(&args.remote("listing", "ramkeyctl personality list", Stdio::null())?);
    }
    if let Some(bundle) = &plan.bundle {
        let what = format!("upgrading the platform to {}", bundle.display());
        args.timed(bundle, &mut out, |file| {
            let ran = args.run(&upgrade_command(args.reboot), file.into())?;
            let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
            if upgrade_succeeded(ran.status.code(), &stdout) {
                Ok(stdout)
            } else {
                Err(args.failed(&what, &stdout, &String::from_utf8_lossy(&ran.stderr), ran.status))
            }
        })?;
    }
    Ok(out)
}

/// `ramkey push`: [`push`], printed.
pub fn cli(args: &PushArgs) -> Result<(), PushError> {
    print!("{}", push(args)?);
    Ok(())
}

fn name(path: &Path) -> OsString {
    path.file_name().map(OsString::from).unwrap_or_default()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        push: PushArgs,
    }

    #[test]
    fn ssh_gets_port_key_options_and_root_by_default() {
        let cli = Cli::parse_from(["x", "-p", "2222", "-i", "k", "-o", "BatchMode=yes", "box", "a.rkimg"]);
        let cmd = cli.push.ssh("ramkeyctl status");
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "-p",
                "2222",
                "-i",
                "k",
                "-o",
                "BatchMode=yes",
                "root@box",
                "ramkeyctl status"
            ]
        );
        let cli = Cli::parse_from(["x", "admin@box", "a.rkimg", "--swap", "web"]);
        assert_eq!(cli.push.ssh("true").get_args().next().unwrap(), "admin@box");
        assert_eq!(cli.push.swap.as_deref(), Some("web"));
    }

    #[test]
    fn the_kept_path_is_read_from_the_box_answer() {
        let said = "imported web 2.0.0 as /pool/images/web-2.0.0-0123456789abcdef.rkimg; run it with `...` (9.1 MB)\n";
        assert_eq!(
            imported_path(said),
            Some("/pool/images/web-2.0.0-0123456789abcdef.rkimg")
        );
        assert_eq!(imported_path("refused: bad signature\n"), None);
    }

    fn files(list: &[(&str, bool)]) -> Vec<(PathBuf, bool)> {
        list.iter().map(|(p, b)| (PathBuf::from(p), *b)).collect()
    }

    #[test]
    fn images_go_first_and_the_bundle_last() {
        let given = files(&[("platform.rkup", true), ("web.rkimg", false), ("dns.rkimg", false)]);
        let cli = Cli::parse_from(["x", "box", "platform.rkup", "web.rkimg", "dns.rkimg", "--reboot"]);
        assert!(cli.push.reboot);
        assert_eq!(
            plan(&given, true, false).unwrap(),
            Plan {
                images: vec!["web.rkimg".into(), "dns.rkimg".into()],
                bundle: Some("platform.rkup".into()),
            }
        );
        let only = plan(&files(&[("platform.rkup", true)]), false, false).unwrap();
        assert_eq!((only.images.len(), only.bundle.is_some()), (0, true));
    }

    #[test]
    fn two_bundles_reboot_without_a_bundle_and_swap_without_an_image_are_usage_errors() {
        let usage = |r: Result<Plan, PushError>| match r {
            Err(PushError::Usage(message)) => message,
            other => panic!("not a usage error: {other:?}"),
        };
        let two = usage(plan(&files(&[("a.rkup", true), ("b.rkup", true)]), false, false));
        assert!(two.contains("a.rkup and b.rkup are both platform bundles"), "{two}");
        let reboot = usage(plan(&files(&[("web.rkimg", false)]), true, false));
        assert!(
            reboot.starts_with("--reboot reboots the box into a pushed platform bundle"),
            "{reboot}"
        );
        let swap = usage(plan(&files(&[("platform.rkup", true)]), false, true));
        assert!(swap.starts_with("--swap NAME"), "{swap}");
    }

    #[test]
    fn a_bundle_is_told_by_its_magic() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        assert!(is_bundle(&file("b", b"RKUP\0\0\0\x01\x10\0\0\0format = 1")).unwrap());
        // Another format, a short file and an image are not bundles: the box says why.
        assert!(!is_bundle(&file("f2", b"RKUP\0\0\0\x02rest")).unwrap());
        assert!(!is_bundle(&file("short", b"RKUP")).unwrap());
        assert!(!is_bundle(&file("img.rkimg", &[0x68, 0x73, 0x71, 0x73, 0, 0, 0, 0, 0])).unwrap());
        assert!(matches!(
            is_bundle(&dir.path().join("none")),
            Err(PushError::Image { .. })
        ));
    }

    #[test]
    fn the_bundle_goes_to_platform_upgrade_with_reboot_when_asked() {
        assert_eq!(upgrade_command(false), "ramkeyctl platform upgrade -");
        assert_eq!(upgrade_command(true), "ramkeyctl platform upgrade - --reboot");
    }

    #[test]
    fn a_connection_lost_after_rebooting_into_slot_is_success() {
        let rebooting = "verified platform.rkup: version 0.2.0\nwrote slot b\nrebooting into slot b (trial)\n";
        assert!(upgrade_succeeded(Some(0), "wrote slot b\n"));
        assert!(upgrade_succeeded(Some(0), rebooting));
        assert!(upgrade_succeeded(Some(255), rebooting));
        // ssh's own failure (255) before the box said it reboots, or the box's refusal.
        assert!(!upgrade_succeeded(Some(255), "wrote slot b\n"));
        assert!(!upgrade_succeeded(Some(255), ""));
        assert!(!upgrade_succeeded(Some(1), rebooting));
        assert!(!upgrade_succeeded(None, rebooting));
        assert!(!upgrade_succeeded(Some(255), "error: not rebooting into slot b\n"));
    }
}
