//! [`ZoneError`]: what failed in a zone, and where — a spec file, an image refused with its
//! reason, an id range, a mount, namespace or setup step with its errno, the network. Its
//! text is what the console and `ramkeyctl` show.

use std::io;
use std::net::AddrParseError;
use std::num::ParseIntError;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use ramkey_image::ids::ShiftError;
use ramkey_image::read::ReadError;
use ramkey_image::requirements::RequirementsError;
use ramkey_image::verify::VerifyError;

use crate::net::netlink::NetlinkError;
use crate::supervisor::protocol::Response;
use crate::sys::SysError;
use crate::sys::beneath::BeneathError;
use crate::sys::confine::ForkError;

/// Why a zone could not be planned, launched, built, entered or networked.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// Reading or writing a file (a spec, a record, a settings file, a `/proc` map).
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Making a directory (and its parents).
    #[error("mkdir {}: {source}", path.display())]
    Mkdir {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// Giving a file to the zone's root.
    #[error("chown {}: {source}", path.display())]
    Chown {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A spec that does not serialize.
    #[error("{0}")]
    SpecEncode(serde_json::Error),
    /// A spec file that does not parse.
    #[error("{}: {source}", path.display())]
    SpecParse {
        /// The spec file.
        path: PathBuf,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// No id range is left for a new zone.
    #[error("every zone id range is taken")]
    IdsExhausted,
    /// The zone's state directory has no (valid) id range.
    #[error("no id range recorded in {} (written by PID 1 when it plans the zone)", record.display())]
    NoIdRange {
        /// The record it looked at.
        record: PathBuf,
    },
    /// Moving the zone's files into its id range.
    #[error("moving {} into the zone's ids: {source}", tree.display())]
    ShiftIds {
        /// The tree.
        tree: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// The image's payload is not the one that was verified.
    #[error(
        "{} changed since it was verified (payload sha256 {found}, verified {verified}): refused; swap or reboot to verify it again",
        image.display()
    )]
    PayloadChanged {
        /// The image file.
        image: PathBuf,
        /// The payload's hash now.
        found: String,
        /// The hash that was verified.
        verified: String,
    },
    /// Moving the payload's owners into the zone's id range.
    #[error("{}: {source}", image.display())]
    ShiftPayload {
        /// The image file.
        image: PathBuf,
        /// Why.
        source: ShiftError,
    },
    /// The personality's image is in none of the places it may be.
    #[error(
        "image {image:?} not found (looked at: {}); put it on the stick under /personalities/ or import it",
        looked_at(tried)
    )]
    ImageNotFound {
        /// The config's `image`.
        image: String,
        /// Where it was looked for.
        tried: Vec<PathBuf>,
    },
    /// Without trusted keys no image verifies.
    #[error("no [images] trusted_keys in the config: no image can be trusted")]
    NoTrustedKeys,
    /// The platform's own version does not parse.
    #[error("the platform version {version:?}: {source}")]
    PlatformVersion {
        /// The version.
        version: String,
        /// Why.
        source: RequirementsError,
    },
    /// The image does not read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The image does not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The image is refused for the zone (a foreign personality, a downgrade), and there is
    /// A VM personality on a box that cannot run VMs (the reason says why).
    #[error("a VM personality, and this box cannot run VMs: {0}")]
    NoVms(String),
    /// no last good image to run instead.
    #[error("{refusal}; no last good image to run instead")]
    RefusedNoFallback {
        /// The refusal, explained.
        refusal: String,
    },
    /// The image is refused, and the last good image does not verify either.
    #[error("{refusal}; and its last good image is unusable, so the zone stays down: {source}")]
    RefusedFallbackUnusable {
        /// The refusal, explained.
        refusal: String,
        /// Why the last good image is unusable.
        source: Box<ZoneError>,
    },
    /// The launcher could not start the zone.
    #[error("not started: {0}")]
    NotStarted(#[source] Box<ZoneError>),
    /// Joining the zone's cgroup.
    #[error("joining its cgroup {}: {source}", procs.display())]
    JoinCgroup {
        /// The cgroup's `cgroup.procs`.
        procs: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A system call of the platform's `sys` layer (signals, devices, confinement).
    #[error(transparent)]
    Sys(#[from] SysError),
    /// Forking the zone's PID 1 or a helper.
    #[error(transparent)]
    Fork(#[from] ForkError),
    /// A system call, named.
    #[error("{call}: {errno}")]
    Call {
        /// The call (`unshare(CLONE_NEWPID)`, `setresuid`).
        call: &'static str,
        /// What the kernel said.
        errno: Errno,
    },
    /// Making a pipe.
    #[error("pipe: {0}")]
    Pipe(io::Error),
    /// `--ready`: the launcher has not noted the zone's PID 1.
    #[error("no PID 1 yet ({0})")]
    NoPid1(io::Error),
    /// `--ready`: the zone's control socket is not there.
    #[error("its supervisor does not answer yet ({0})")]
    ControlSocket(BeneathError),
    /// `--ready`: the zone's supervisor does not answer.
    #[error("its supervisor does not answer yet ({0})")]
    ControlCall(io::Error),
    /// `--ready`: the zone's supervisor answered something else.
    #[error("unexpected answer {0:?}")]
    UnexpectedAnswer(Box<Response>),
    /// `--ready`: services still on their way (each `NAME STATE (REASON)`).
    #[error("{}", .0.join("; "))]
    Waiting(Vec<String>),
    /// Talking to the kernel's routing socket.
    #[error(transparent)]
    Netlink(NetlinkError),
    /// The personality's NIC is not on the host.
    #[error("no NIC {0:?} on the host (the personality's nic is a [[nic]] tag)")]
    NoNic(String),
    /// The personality's NIC has no MAC address.
    #[error("{0} has no MAC: a zone hangs off an Ethernet NIC")]
    NoMac(String),
    /// Making the zone's macvlan on a NIC.
    #[error("macvlan on {nic}: {source}")]
    Macvlan {
        /// The host NIC.
        nic: String,
        /// What the kernel said.
        source: NetlinkError,
    },
    /// More zones than source-check priorities.
    #[error("too many zones for the source check's priorities")]
    TooManyZones,
    /// Installing the zone's source check on a NIC.
    #[error("source check on {nic}: {source}")]
    SourceCheck {
        /// The host NIC.
        nic: String,
        /// What the kernel said.
        source: NetlinkError,
    },
    /// The zone's PID 1 and its launcher lost each other.
    #[error("talking to the launcher: {0}")]
    Launcher(io::Error),
    /// The launcher could not make the zone's interface (it logged why).
    #[error("its network interface could not be made (the line above says why)")]
    NoInterface,
    /// The helper could not make the zone's namespaces (it printed why).
    #[error("the zone's user namespace could not be made (the line above says why)")]
    NoUserNamespace,
    /// Joining one of the zone's namespaces.
    #[error("joining the zone's {kind} namespace: {errno}")]
    JoinNamespace {
        /// `net`, `uts`, `ipc`, `cgroup`.
        kind: &'static str,
        /// What the kernel said.
        errno: Errno,
    },
    /// Entering the zone's user namespace.
    #[error("entering the zone's user namespace: {0}")]
    EnterUserNamespace(Errno),
    /// Changing directory.
    #[error("chdir {}: {errno}", path.display())]
    Chdir {
        /// The directory.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
    /// Attaching the zone's device program.
    #[error("device program on {}: {source}", cgroup.display())]
    DeviceProgram {
        /// The zone's cgroup.
        cgroup: PathBuf,
        /// Why.
        source: SysError,
    },
    /// A capability the image asks for that no zone gets (the image crate's reason).
    #[error("{0}")]
    Capability(String),
    /// A mount of the zone's root.
    #[error("mount {what} on {}: {errno}", target.display())]
    Mount {
        /// The source, or the filesystem type without one (`-` without either).
        what: String,
        /// The mount point.
        target: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
    /// Resolving a place beneath the zone's root.
    #[error(transparent)]
    Beneath(#[from] BeneathError),
    /// Attaching the payload's loop device.
    #[error("loop device for {}: {source}", image.display())]
    LoopDevice {
        /// The image file.
        image: PathBuf,
        /// Why.
        source: SysError,
    },
    /// Removing the writable layer of an image that changed.
    #[error("resetting the writable root {}: {source}", dir.display())]
    ResetRoot {
        /// The layer.
        dir: PathBuf,
        /// What the kernel said.
        source: io::Error,
    },
    /// A step of the root's plan names a mount no earlier step made.
    #[error("{0}: nothing mounted there in the plan")]
    NotInPlan(String),
    /// The spec's address has no prefix length.
    #[error("address {0:?}: no /prefix")]
    NoPrefix(String),
    /// The spec's address does not parse.
    #[error("address {cidr:?}: {source}")]
    Address {
        /// The address.
        cidr: String,
        /// Why.
        source: AddrParseError,
    },
    /// The spec's prefix length does not parse.
    #[error("address {cidr:?}: {source}")]
    Prefix {
        /// The address.
        cidr: String,
        /// Why.
        source: ParseIntError,
    },
    /// Listing the zone's interfaces.
    #[error("network: {0}")]
    Links(NetlinkError),
    /// The launcher's macvlan is not in the zone's namespace.
    #[error("network: the launcher's interface is missing")]
    NoLauncherInterface,
    /// The platform's network code could not set the zone's interface up (its own line).
    #[error("network: {0}")]
    Network(String),
}

impl ZoneError {
    /// A failed read or write of `path`, for `map_err`.
    pub fn file(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::File {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A failed system call `call`, for `map_err`.
    pub fn call(call: &'static str) -> impl FnOnce(Errno) -> Self {
        move |errno| Self::Call { call, errno }
    }
}

/// For `ramkeyctl`, whose commands answer with a message.
impl From<ZoneError> for String {
    fn from(e: ZoneError) -> Self {
        e.to_string()
    }
}

/// The places an image was looked for, for [`ZoneError::ImageNotFound`].
fn looked_at(tried: &[PathBuf]) -> String {
    if tried.is_empty() {
        return "nowhere: no usbkey, no pool".to_string();
    }
    let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    list.join(", ")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use nix::errno::Errno;

    use super::ZoneError;

    #[test]
    fn setup_failures_say_the_step_and_the_errno_as_before() {
        let mount = ZoneError::Mount {
            what: "tmpfs".into(),
            target: PathBuf::from("zone/root/tmp"),
            errno: Errno::EPERM,
        };
        assert_eq!(
            mount.to_string(),
            "mount tmpfs on zone/root/tmp: EPERM: Operation not permitted"
        );
        let call = ZoneError::call("unshare(CLONE_NEWNS)")(Errno::EINVAL);
        assert_eq!(call.to_string(), "unshare(CLONE_NEWNS): EINVAL: Invalid argument");
        let join = ZoneError::JoinNamespace {
            kind: "net",
            errno: Errno::EPERM,
        };
        assert_eq!(
            join.to_string(),
            "joining the zone's net namespace: EPERM: Operation not permitted"
        );
        let missing = std::io::Error::from(std::io::ErrorKind::NotFound);
        let file = ZoneError::file(std::path::Path::new("state/id-base"))(missing);
        assert_eq!(file.to_string(), "state/id-base: entity not found");
    }

    #[test]
    fn the_launchers_failures_are_not_started_lines() {
        let none = ZoneError::NotStarted(Box::new(ZoneError::NoIdRange {
            record: PathBuf::from("pool/instances/web/id-base"),
        }));
        assert_eq!(
            none.to_string(),
            "not started: no id range recorded in pool/instances/web/id-base (written by PID 1 when it plans the zone)"
        );
        let waiting = ZoneError::Waiting(vec!["web offline (starting)".into(), "db offline (waiting)".into()]);
        assert_eq!(waiting.to_string(), "web offline (starting); db offline (waiting)");
    }

    #[test]
    fn an_image_not_found_lists_where_it_was_looked_for() {
        let nowhere = ZoneError::ImageNotFound {
            image: "web.rkimg".into(),
            tried: Vec::new(),
        };
        assert_eq!(
            nowhere.to_string(),
            "image \"web.rkimg\" not found (looked at: nowhere: no usbkey, no pool); \
             put it on the stick under /personalities/ or import it"
        );
        let two = ZoneError::ImageNotFound {
            image: "web.rkimg".into(),
            tried: vec![
                PathBuf::from("usbkey/web.rkimg"),
                PathBuf::from("pool/images/web.rkimg"),
            ],
        };
        assert!(
            two.to_string()
                .contains("(looked at: usbkey/web.rkimg, pool/images/web.rkimg);"),
            "{two}"
        );
    }

    #[test]
    fn a_refusal_without_a_usable_fallback_says_both() {
        let unusable = ZoneError::RefusedFallbackUnusable {
            refusal: "a downgrade".into(),
            source: Box::new(ZoneError::NoTrustedKeys),
        };
        assert_eq!(
            unusable.to_string(),
            "a downgrade; and its last good image is unusable, so the zone stays down: \
             no [images] trusted_keys in the config: no image can be trusted"
        );
        let none = ZoneError::RefusedNoFallback {
            refusal: "a downgrade".into(),
        };
        assert_eq!(none.to_string(), "a downgrade; no last good image to run instead");
    }

    #[test]
    fn network_failures_keep_their_prefix() {
        let bad = "10.0.2.16/99x".to_string();
        let prefix = ZoneError::Prefix {
            source: "99x".parse::<u8>().unwrap_err(),
            cidr: bad,
        };
        assert_eq!(
            prefix.to_string(),
            "address \"10.0.2.16/99x\": invalid digit found in string"
        );
        assert_eq!(
            ZoneError::NoPrefix("10.0.2.16".into()).to_string(),
            "address \"10.0.2.16\": no /prefix"
        );
        assert_eq!(
            ZoneError::NoLauncherInterface.to_string(),
            "network: the launcher's interface is missing"
        );
        assert_eq!(
            String::from(ZoneError::TooManyZones),
            "too many zones for the source check's priorities"
        );
    }
}
