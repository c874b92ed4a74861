//! `ramkeyctl`'s command line, parsed by hand (no dependency for six subcommands).

use crate::observe::logs::parse_age;
use crate::observe::ship::sources::Select;
use crate::supervisor::protocol::Action;

/// The usage text.
pub const USAGE: &str = "\
usage: ramkeyctl COMMAND [--json]

  status                          the box: platform, uptime, config, pool, services
  svcs [-a] [-x]                  the services (-a: disabled ones too; -x: what is not
                                  online and why)
  svcadm enable|disable|restart|clear SERVICE
  log [SERVICE | zone NAME [SERVICE]] [-n LINES] [-f] [--since AGE]
                                  a service's output, PID 1's (`ramkey`), a zone's,
                                  or every log merged by time (-f: keep following;
                                  --since 10m: only newer lines; s, m, h, d)
  reboot | poweroff               stop the services in order, then reboot or power off
  config show|get|set|unset|check ...   the usbkey's config.toml (next boot)
  personality list                the zones: image, state, address, memory of cap
  personality start|stop|restart NAME
  personality swap NAME IMAGE [--wait SECS] [--allow-downgrade]
                                  run IMAGE (the same personality, not older than
                                  what the zone ran), keep it only if the zone comes up
  personality rollback NAME       back to the image the last swap replaced
  personality import FILE         verify an image and keep it in /pool/images/
  personality log NAME [SERVICE]  the zone's log, or one of its services' logs
  personality console NAME [-- COMMAND...]   a shell (or a command) inside the zone
  image avail|import|list|delete ...   images from the config's [images] sources
  platform status                 the stick's two platform slots: versions, which
                                  booted, which is committed, the last trial boot
  platform upgrade FILE|-|URL [--reboot] [--allow-downgrade]
                                  verify a platform bundle, write it into the slot
                                  not committed and arm one trial boot of it
  cluster status                  the HA pair: role, peer, resources, DRBD's sync
  cluster failover                hand the resources to the peer (maintenance)
  cluster standby|unstandby       take no resources / may take them again
  cluster resolve NAME [--discard-here]   end a split brain of NAME: keep this
                                  node's copy, or discard it for the peer's

--json prints the answer as JSON, with every command (`personality list` as a list of zones,
the commands that only report as {\"message\": ...}; not `console`). Talks to PID 1 at
/run/ramkey/control.sock (root only).";

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status`.
    Status,
    /// `svcs`.
    Svcs {
        /// `-a`.
        all: bool,
        /// `-x`.
        explain: bool,
    },
    /// `svcadm ACTION SERVICE`.
    Svcadm {
        /// The action.
        action: Action,
        /// The service.
        service: String,
    },
    /// `log [SERVICE | zone NAME [SERVICE]]`.
    Log {
        /// Which logs.
        select: Select,
        /// `-n`.
        lines: Option<usize>,
        /// `-f`.
        follow: bool,
        /// `--since`.
        since: Option<std::time::Duration>,
    },
    /// `reboot`.
    Reboot,
    /// `poweroff`.
    Poweroff,
    /// `config ...`: the usbkey's config, handled by [`crate::ctl::usbkey_config`].
    Config(Vec<String>),
    /// `personality ...`: the zones, handled by [`crate::ctl::personality`].
    Personality(Vec<String>),
    /// `image ...`: images and their sources, handled by [`crate::ctl::image`].
    Image(Vec<String>),
    /// `platform ...`: the stick's platform slots, handled by [`crate::ctl::platform`].
    Platform(Vec<String>),
    /// `cluster ...`: the HA pair, handled by [`crate::ctl::cluster`].
    Cluster(Vec<String>),
    /// `help`, `-h`, `--help`.
    Help,
}

/// A command line and its output format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The command.
    pub command: Command,
    /// `--json`.
    pub json: bool,
}

/// A command line that makes no sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (ramkeyctl --help shows the usage)")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Args, UsageError> {
    // `--json` anywhere, but not after `console NAME --`, where it is the zone command's.
    let end = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let json = args[..end].iter().any(|a| a == "--json");
    let args: Vec<String> = args[..end]
        .iter()
        .filter(|a| *a != "--json")
        .chain(&args[end..])
        .cloned()
        .collect();
    if args.first().is_some_and(|a| a == "config") {
        let command = Command::Config(args[1..].to_vec());
        return Ok(Args { command, json });
    }
    if args.first().is_some_and(|a| a == "personality") {
        let command = Command::Personality(args[1..].to_vec());
        return Ok(Args { command, json });
    }
    if args.first().is_some_and(|a| a == "image") {
        let command = Command::Image(args[1..].to_vec());
        return Ok(Args { command, json });
    }
    if args.first().is_some_and(|a| a == "cluster") {
        let command = Command::Cluster(args[1..].to_vec());
        return Ok(Args { command, json });
    }
    if args.first().is_some_and(|a| a == "platform") {
        let command = Command::Platform(args[1..].to_vec());
        return Ok(Args { command, json });
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let (first, rest) = words.split_first().ok_or_else(|| usage("no command given"))?;
    let command = match *first {
        "status" => no_more(rest, Command::Status)?,
        "svcs" => {
            let (mut all, mut explain) = (false, false);
            for flag in rest {
                match *flag {
                    "-a" => all = true,
                    "-x" => explain = true,
                    "-ax" | "-xa" => (all, explain) = (true, true),
                    other => return Err(usage(format!("svcs: unknown option `{other}`"))),
                }
            }
            Command::Svcs { all, explain }
        }
        "svcadm" => match rest {
            [action, service] => Command::Svcadm {
                action: match *action {
                    "enable" => Action::Enable,
                    "disable" => Action::Disable,
                    "restart" => Action::Restart,
                    "clear" => Action::Clear,
                    other => return Err(usage(format!("svcadm: unknown action `{other}`"))),
                },
                service: (*service).to_string(),
            },
            _ => return Err(usage("svcadm takes an action and a service")),
        },
        "log" => parse_log(rest)?,
        "reboot" => no_more(rest, Command::Reboot)?,
        "poweroff" => no_more(rest, Command::Poweroff)?,
        "help" | "-h" | "--help" => Command::Help,
        other => return Err(usage(format!("unknown command `{other}`"))),
    };
    Ok(Args { command, json })
}

fn no_more(rest: &[&str], command: Command) -> Result<Command, UsageError> {
    match rest.first() {
        None => Ok(command),
        Some(extra) => Err(usage(format!("unexpected argument `{extra}`"))),
    }
}

fn parse_log(rest: &[&str]) -> Result<Command, UsageError> {
    let (mut names, mut lines, mut follow, mut since) = (Vec::new(), None, false, None);
    let mut words = rest.iter();
    while let Some(word) = words.next() {
        match *word {
            "-f" => follow = true,
            "-n" => {
                let n = words.next().ok_or_else(|| usage("log: -n needs a number"))?;
                lines = Some(n.parse().map_err(|_| usage(format!("log: -n `{n}` is not a number")))?);
            }
            "--since" => {
                let age = words
                    .next()
                    .ok_or_else(|| usage("log: --since needs an age, e.g. 10m"))?;
                since = Some(
                    parse_age(age)
                        .ok_or_else(|| usage(format!("log: --since `{age}` is not an age (e.g. 30s, 10m, 2h, 1d)")))?,
                );
            }
            w if w.starts_with('-') => return Err(usage(format!("log: unknown option `{w}`"))),
            w => names.push(w.to_string()),
        }
    }
    let select = match names.as_slice() {
        [] => Select::All,
        [service] => Select::Platform(service.clone()),
        [zone, name] if zone == "zone" => Select::Zone(name.clone(), None),
        [zone, name, service] if zone == "zone" => Select::Zone(name.clone(), Some(service.clone())),
        _ => {
            return Err(usage(
                "log takes a service, `zone NAME [SERVICE]`, or nothing (every log)",
            ));
        }
    };
    Ok(Command::Log {
        select,
        lines,
        follow,
        since,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Args, UsageError> {
        parse(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn json_goes_with_every_command_but_not_into_a_zones_command() {
        let a = p("--json personality list").unwrap();
        assert!(a.json);
        assert_eq!(a.command, Command::Personality(vec!["list".into()]));
        let a = p("config get hostname --json").unwrap();
        assert!(a.json);
        assert_eq!(a.command, Command::Config(vec!["get".into(), "hostname".into()]));
        let a = p("personality console web -- tool --json").unwrap();
        assert!(!a.json);
        assert_eq!(
            a.command,
            Command::Personality(["console", "web", "--", "tool", "--json"].map(String::from).to_vec())
        );
    }

    #[test]
    fn commands_parse() {
        assert_eq!(p("status").unwrap().command, Command::Status);
        let a = p("svcs -x --json").unwrap();
        assert!(a.json);
        assert_eq!(
            a.command,
            Command::Svcs {
                all: false,
                explain: true
            }
        );
        assert_eq!(
            p("svcadm clear crasher").unwrap().command,
            Command::Svcadm {
                action: Action::Clear,
                service: "crasher".into()
            }
        );
        assert_eq!(
            p("log web -n 5 -f").unwrap().command,
            Command::Log {
                select: Select::Platform("web".into()),
                lines: Some(5),
                follow: true,
                since: None,
            }
        );
        assert_eq!(
            p("log zone web nginx --since 10m").unwrap().command,
            Command::Log {
                select: Select::Zone("web".into(), Some("nginx".into())),
                lines: None,
                follow: false,
                since: Some(std::time::Duration::from_secs(600)),
            }
        );
        assert!(matches!(
            p("log -f").unwrap().command,
            Command::Log {
                select: Select::All,
                ..
            }
        ));
        assert_eq!(p("poweroff").unwrap().command, Command::Poweroff);
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for bad in [
            "",
            "svcs -q",
            "svcadm start web",
            "svcadm clear",
            "log a b",
            "log a -n x",
            "log --since 10x",
            "reboot now",
            "frob",
        ] {
            let err = p(bad).unwrap_err().to_string();
            assert!(err.ends_with("(ramkeyctl --help shows the usage)"), "{bad}: {err}");
        }
    }
}
