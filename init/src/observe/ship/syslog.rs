//! One log line as an RFC 5424 syslog message in an RFC 6587 octet-counted frame:
//! `LEN <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG`. Facility `daemon`; the severity
//! from PID 1's tag (`error: `, `warning: `, `debug: `) or a service's `<N>` prefix (the
//! sd-daemon convention), else `info`. The timestamp is the one the line was written with.

use std::time::SystemTime;

use crate::base::clock::rfc3339;

/// `daemon` (3) times 8.
const FACILITY: u8 = 3 << 3;
/// Severities used here.
const ERR: u8 = 3;
const WARNING: u8 = 4;
const INFO: u8 = 6;
const DEBUG: u8 = 7;

/// Who wrote a line: APP-NAME and MSGID of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// PID 1 (`ramkey`), a platform service's name, or a zone's name.
    pub app: String,
    /// A zone's service; `None` for the platform's lines.
    pub msgid: Option<String>,
    /// PID 1's own lines carry a level tag instead of `<N>`.
    pub pid1: bool,
}

/// A log file's line: `TIMESTAMP TEXT`, as the supervisor writes it. A line without a
/// plausible timestamp (a zone wrote its file by hand) is sent with the time it was read.
pub fn split_line(line: &str) -> (Option<&str>, &str) {
    match line.split_once(' ') {
        Some((stamp, text)) if plausible_stamp(stamp) => (Some(stamp), text),
        _ => (None, line),
    }
}

/// `2026-12-05T07:45:48.123Z`: digits and separators in the places RFC 3339 has them.
fn plausible_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b.len() <= 32
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b.ends_with(b"Z")
        && b.iter().all(|c| c.is_ascii_digit() || b"-:T.Z".contains(c))
}

/// The severity and the text without its marker.
pub fn severity<'a>(origin: &Origin, text: &'a str) -> (u8, &'a str) {
    if origin.pid1 {
        for (tag, sev) in [("error: ", ERR), ("warning: ", WARNING), ("debug: ", DEBUG)] {
            if let Some(rest) = text.strip_prefix(tag) {
                return (sev, rest);
            }
        }
        return (INFO, text);
    }
    match text.as_bytes() {
        [b'<', n @ b'0'..=b'7', b'>', ..] => (n - b'0', &text[3..]),
        _ => (INFO, text),
    }
}

/// A header field: printable US-ASCII without spaces, at most `max` characters, `-` if
/// empty (RFC 5424's NILVALUE).
fn field(s: &str, max: usize) -> String {
    let f: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if f.is_empty() { "-".into() } else { f }
}

/// The framed message for one line of `origin`'s log, sent from `host`.
pub fn frame(host: &str, origin: &Origin, line: &str, now: SystemTime) -> Vec<u8> {
    let (stamp, text) = split_line(line);
    let (sev, text) = severity(origin, text);
    // What a program wrote for a terminal (`sshd -e`) ends its lines with CR LF.
    let text = text.trim_end_matches('\r');
    let stamp = stamp.map_or_else(|| rfc3339(now), str::to_owned);
    let msgid = origin.msgid.as_deref().map_or_else(|| "-".into(), |m| field(m, 32));
    let message = format!(
        "<{}>1 {stamp} {} {} - {msgid} - {text}",
        FACILITY + sev,
        field(host, 255),
        field(&origin.app, 48)
    );
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// The message of a frame (without `LEN `), as a UDP datagram carries it.
pub fn message(frame: &[u8]) -> &[u8] {
    frame
        .iter()
        .position(|&b| b == b' ')
        .map_or(frame, |at| &frame[at + 1..])
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn origin(app: &str, msgid: Option<&str>, pid1: bool) -> Origin {
        Origin {
            app: app.into(),
            msgid: msgid.map(Into::into),
            pid1,
        }
    }

    #[test]
    fn a_service_line_keeps_its_timestamp_and_names_its_zone_and_service() {
        let f = frame(
            "box1",
            &origin("web", Some("nginx"), false),
            "2026-12-05T07:45:48.123Z <3>upstream gone",
            UNIX_EPOCH,
        );
        let text = String::from_utf8(f).unwrap();
        let (len, msg) = text.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), msg.len());
        assert_eq!(msg, "<27>1 2026-12-05T07:45:48.123Z box1 web - nginx - upstream gone");
    }

    #[test]
    fn pid1_tags_become_severities_and_odd_lines_get_the_time_read() {
        let f = frame(
            "box1",
            &origin("ramkey", None, true),
            "warning: pool degraded",
            UNIX_EPOCH + Duration::from_secs(86_400),
        );
        assert_eq!(
            message(&f),
            b"<28>1 1970-01-02T00:00:00.000Z box1 ramkey - - - pool degraded"
        );
        let f = frame(
            "box1",
            &origin("my app\u{e9}", None, false),
            "not a stamp <1>x",
            UNIX_EPOCH,
        );
        assert_eq!(
            message(&f),
            b"<30>1 1970-01-01T00:00:00.000Z box1 my_app_ - - - not a stamp <1>x"
        );
    }

    #[test]
    fn stamps_must_look_like_rfc3339() {
        assert!(plausible_stamp("2026-12-05T07:45:48.123Z"));
        assert!(!plausible_stamp("2026-12-05 07:45:48"));
        assert!(!plausible_stamp("<script>alert(1)</script>"));
    }
}
