//! VM personalities: a personality image with `runtime = "vm"` runs as a KVM micro-VM under
//! `ramkey-vmm` (the `vmm` crate, linked into this binary under that name) instead of as a
//! zone. It is planned, supervised, swapped and rolled back exactly like a zone
//! ([`crate::zone`]): the same [`ZoneSpec`], the same `zone-NAME` service; only what the
//! launcher starts differs.
//!
//! The flow:
//!
//! 1. At boot PID 1 ([`host`]) checks, once and only when a VM personality is configured,
//!    that the box can run VMs: the CPU has SVM or VMX, `kvm_amd`/`kvm_intel` and `macvtap`
//!    load, `/dev/kvm` appears, and the platform's kernel is on the usbkey (the guest boots
//!    the very kernel the box booted, so the box's modules fit it). Otherwise the
//!    personality is refused with that reason and the zones start as usual.
//! 2. `ramkey-zone NAME` ([`launch`]) sees a VM spec: it makes the guest's initramfs
//!    ([`initrd`]: this binary as `/init` and the few modules the guest needs), its disks
//!    (the image read-only, the spec, and a state disk on the pool holding the writable
//!    layer and the volumes), a macvtap on the personality's NIC with the zone's MAC, and
//!    runs `ramkey-vmm` with them; it relays the guest's serial console to the zone's log
//!    and to `ramkeyctl personality console` ([`console`]), and turns a stop into a clean
//!    guest power-off.
//! 3. In the VM, this binary is PID 1 in guest mode ([`guest`], `ramkey_guest=1` on the
//!    kernel command line): it loads the virtio modules, reads the spec from its disk,
//!    builds the root (the image's squashfs, an overlay over it, the volumes), sets the
//!    address and runs the manifest's services under the same supervisor as a zone, saying
//!    on the console when they are all online ([`READY_LINE`]).

pub mod console;
pub mod guest;
pub mod host;
pub mod initrd;
pub mod jail;
pub mod launch;

use std::path::PathBuf;

use crate::base::paths::Paths;
use crate::zone::ZoneSpec;

/// The kernel command line parameter that puts this binary in guest mode. Without a dot,
/// the kernel hands it to PID 1 as the environment variable [`GUEST_ENV`] (`/proc` is not
/// mounted yet when PID 1 decides what it is).
pub const GUEST_PARAM: &str = "ramkey_guest=1";
/// The environment variable [`GUEST_PARAM`] becomes.
pub const GUEST_ENV: &str = "ramkey_guest";

/// What the guest prints on its console once every service is online (or finished or
/// disabled); the launcher notes it for `ramkey-zone --ready`.
pub const READY_LINE: &str = "ramkey-guest: ready";
/// What the guest prints when it is no longer ready, with the services it waits for.
pub const WAITING_LINE: &str = "ramkey-guest: waiting for";

/// The serial number the VMM gives the guest's disk `index` (its `--disk` order: the
/// image, the spec, the state): how the guest tells them apart (`/sys/block/vdX/serial`).
pub fn disk_serial(index: usize) -> String {
    format!("ramkey-disk{index}")
}

/// The state disk's file in the zone's state directory, and its size when made.
pub const STATE_FILE: &str = "vm-state.ext4";
/// The state disk's size when first made (sparse: it takes what is written).
pub const STATE_SIZE: u64 = 1 << 30;

/// `run/ramkey/zones/NAME/FILE` under the system root: the launcher's files of VM `name`.
pub fn file(name: &str, file: &str) -> PathBuf {
    ZoneSpec::file(Paths::system().root(), name, file)
}

/// The file where the launcher notes what the guest last said of its services: `ready`, or
/// what it waits for (removed at every start and stop).
pub const GUEST_STATE: &str = "guest-state";

/// Whether VM `name`'s guest said every service is online (`ramkey-zone --ready NAME`, the
/// readiness check of its service, and a swap's wait); the error is what it waits for.
pub fn ready(name: &str) -> Result<(), String> {
    match std::fs::read_to_string(file(name, GUEST_STATE)) {
        Ok(state) if state == "ready" => Ok(()),
        Ok(state) => Err(format!("vm {name}: the guest is {state}")),
        Err(_) => Err(format!("vm {name}: its guest has not said how its services are yet")),
    }
}
/// The console socket `ramkeyctl personality console` connects to.
pub const CONSOLE_SOCKET: &str = "console.sock";
