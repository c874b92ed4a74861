//! Checks of `[log]` (the remote collector, the shipper's buffer, the console's level) and
//! `[metrics]` (where the Prometheus endpoint listens).

use toml::Spanned;

use crate::model::{Log, LogLevel, Metrics, Remote};
use crate::raw::{RawLog, RawMetrics, RawNic};
use crate::units::parse_size;
use crate::validate::Checker;

/// The smallest and largest `[log] buffer`.
const BUFFER: std::ops::RangeInclusive<u64> = (16 << 10)..=(4 << 30);

pub(crate) fn log(c: &mut Checker<'_>, raw: RawLog) -> Log {
    let remote = raw.remote.as_ref().and_then(|r| match r.get_ref().parse::<Remote>() {
        Ok(remote) => Some(remote),
        Err(reason) => {
            c.invalid(r, "log remote", reason).hint = Some(
                "write tcp://HOST:PORT (RFC 6587) or udp://HOST:PORT (RFC 5426), e.g. tcp://logs.example.com:514"
                    .into(),
            );
            None
        }
    });
    let buffer = raw.buffer.as_ref().and_then(|b| match parse_size(b.get_ref()) {
        Ok(n) if BUFFER.contains(&n) => Some(n),
        Ok(_) => {
            c.invalid(b, "log buffer", "it must be between 16KiB and 4GiB");
            None
        }
        Err(reason) => {
            c.invalid(b, "log buffer", reason);
            None
        }
    });
    let level = match raw.level.as_ref().map(|l| l.get_ref().as_str()) {
        None | Some("info") => LogLevel::Info,
        Some("error") => LogLevel::Error,
        Some("warn") => LogLevel::Warn,
        Some("debug") => LogLevel::Debug,
        Some("trace") => LogLevel::Trace,
        Some(other) => {
            let hint = crate::suggest::closest(other, ["error", "warn", "info", "debug", "trace"])
                .map(|l| format!("did you mean {l:?}?"));
            if let Some(l) = &raw.level {
                c.invalid(l, "log level", "expected error, warn, info, debug or trace")
                    .hint = hint;
            }
            LogLevel::Info
        }
    };
    Log {
        remote,
        buffer: buffer.unwrap_or(Log::DEFAULT_BUFFER),
        level,
    }
}

/// `[metrics] listen = "TAG:PORT"`; `None` (with an error pushed) when it is wrong, or when
/// the section has no `listen` (which is the same as no section: off).
pub(crate) fn metrics(c: &mut Checker<'_>, raw: RawMetrics, nics: &[Spanned<RawNic>]) -> Option<Metrics> {
    let listen = raw.listen?;
    let Some((nic, port)) = listen.get_ref().rsplit_once(':') else {
        c.invalid(&listen, "metrics listen", "expected NIC_TAG:PORT").hint =
            Some("e.g. \"admin:9100\": the address of the [[nic]] tagged admin, port 9100".into());
        return None;
    };
    let tags: Vec<&str> = nics.iter().map(|n| n.get_ref().tag.get_ref().as_str()).collect();
    let tag = Spanned::new(listen.span(), nic.to_owned());
    crate::validate_net::known_tag(c, &tag, "metrics", &tags);
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            c.invalid(&listen, "metrics listen", format!("{port:?} is not a port (1-65535)"));
            return None;
        }
    };
    tags.contains(&nic).then(|| Metrics {
        nic: nic.to_owned(),
        port,
    })
}
