//! Running the Debian tools the builder relies on (mkfs.vfat, mtools, syslinux), with
//! errors that name the tool, its arguments, what it printed and the package to install.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// A host tool failed or is missing.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} not found ({source}): install the Debian package {package}")]
    Missing {
        program: String,
        package: &'static str,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        output: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Runs `program args...` with `env`, returning its stdout.
pub fn run<I, S>(program: &str, package: &'static str, args: I, env: &[(&str, String)]) -> Result<String, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let mut cmd = Command::new(program);
    cmd.args(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|source| ToolError::Missing {
        program: program.into(),
        package,
        source,
    })?;
    if !out.status.success() {
        let shown: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        return Err(ToolError::Failed {
            command: format!("{program} {}", shown.join(" ")),
            status: out.status,
            output,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
