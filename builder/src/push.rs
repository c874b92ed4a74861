//! `ramkey push BOX IMAGE... [--swap NAME]`: personality images delivered to a running box
//! over SSH — the system's `ssh` client with the user's own keys and `known_hosts` — each
//! streamed into `ramkeyctl personality import -` on the box, which verifies it there
//! against the keys the box trusts; with `--swap`, the personality is then swapped to the
//! last image and `personality list` printed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// `ramkey push`'s arguments.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The box, as `ssh` takes it: `HOST` (user root) or `USER@HOST`.
    pub target: String,
    /// Personality images (.rkimg) to deliver, in order.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Swap this personality to the last image once it is imported.
    #[arg(long, value_name = "NAME")]
    pub swap: Option<String>,
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
        let out = self
            .ssh(command)
            .stdin(stdin)
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .map_err(PushError::Ssh)?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = [stdout.trim(), stderr.trim()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        Err(PushError::Remote {
            what: what.to_owned(),
            target: self.target.clone(),
            message: if message.is_empty() {
                out.status.to_string()
            } else {
                message
            },
        })
    }
}

/// The path `personality import` kept the image at: `imported NAME VERSION as PATH; ...`.
pub fn imported_path(output: &str) -> Option<&str> {
    output
        .lines()
        .filter(|l| l.starts_with("imported ") || l.starts_with("already imported "))
        .find_map(|l| l.split_once(" as ")?.1.split_once(';').map(|(path, _)| path))
}

/// Delivers the images, then swaps if asked; returns what the box said, with the time each
/// delivery took.
pub fn push(args: &PushArgs) -> Result<String, PushError> {
    let mut out = String::new();
    let mut last = None;
    for image in &args.images {
        let file = std::fs::File::open(image).map_err(|source| PushError::Image {
            path: image.clone(),
            source,
        })?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let started = Instant::now();
        let what = format!("importing {}", image.display());
        let said = args.remote(&what, "ramkeyctl personality import -", file.into())?;
        let secs = started.elapsed().as_secs_f64();
        out.push_str(&said);
        out.push_str(&format!(
            "pushed {} ({:.1} MB) in {secs:.1} s ({:.1} MB/s, the box's verification included)\n",
            name(image).to_string_lossy(),
            mb(size),
            mb(size) / secs.max(0.001)
        ));
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
}
