//! Boot tests of VM personalities under QEMU (TCG, `-cpu max`: the box has AMD SVM and runs
//! its VMs under nested KVM). `web`, built with `ramkey image build --vm`, runs as a KVM
//! micro-VM booting the platform's own kernel from the stick with Ramkey's init in guest
//! mode, on a macvtap of the admin NIC with its own address, beside `site`, the `web` image
//! as a zone. The VM answers HTTP through a host forward to its address; `ramkeyctl
//! personality list` shows it as a VM with its memory cap; `ramkeyctl personality console
//! web` shows the guest's console and runs commands there: a memory hog is killed inside
//! the guest, and a kernel panic ends the VM, which the host restarts and which serves
//! again, while the zone beside it never stops. A box booted without SVM refuses the VM
//! with its reason, loads no KVM module and still runs the zone.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

/// The box's boot, then the guest's: its kernel and init under nested KVM in TCG.
const BOOT: Duration = Duration::from_secs(420);
const SHUTDOWN: Duration = Duration::from_secs(120);
const VM_ADDRESS: &str = "10.0.2.16";
const ZONE_ADDRESS: &str = "10.0.2.17";

fn config(trusted: &str) -> String {
    format!(
        r#"version = 1
hostname = "vmbox"

[[nic]]
tag = "admin"
name = "eth0"
ip = "10.0.2.15/24"
gateway = "10.0.2.2"

[dns]
resolvers = ["10.0.2.3"]

[images]
trusted_keys = ["{trusted}"]

[[personality]]
name = "web"
image = "personalities/web-vm-1.0.0.rkimg"
nic = "admin"
ip = "{VM_ADDRESS}/24"
gateway = "10.0.2.2"

[[personality]]
name = "site"
image = "personalities/web-1.0.0.rkimg"
nic = "admin"
ip = "{ZONE_ADDRESS}/24"
gateway = "10.0.2.2"
"#
    )
}

/// A platform service that reports, on the console, what an administrator would look at
/// and do; `c` types a line at the VM's console and keeps it attached for `$2` seconds.
const PROBE: &str = r#"name = "probe"
restart = "never"
argv = ["/bin/sh", "-c", '''
exec >/dev/console 2>&1
until [ "$(ramkeyctl personality list 2>/dev/null | grep -c ' online ')" -ge 2 ]; do sleep 1; done
c() { (echo "$1"; sleep "${2:-3}") | ramkeyctl personality console web 2>&1 | sed 's/^/probe-out: /'; }
echo "probe: site-pid $(cat /run/ramkey/zones/site/pid)"
echo "probe: list"; ramkeyctl personality list | sed 's/^/probe-out: /'
echo "probe: kvm-modules $(grep -c '^kvm' /proc/modules)"
p=$(cat /run/ramkey/zones/web/pid)
echo "probe: vmm-status $(awk '/^(Name|Uid|Gid|NoNewPrivs|Seccomp|CapEff|CapBnd):/{printf "%s%s ", $1, $2}' /proc/$p/status)"
echo "probe: vmm-shared $(for n in mnt net ipc uts; do [ "$(readlink /proc/$p/ns/$n)" = "$(readlink /proc/1/ns/$n)" ] && printf '%s,' $n; done)"
echo "probe: vmm-root $(cd /proc/$p/root && ls -d * dev/* | tr '\n' ' ')"
cp /usbkey/jail-escape /run/jail-escape && chmod 755 /run/jail-escape
/run/jail-escape $p | sed 's/^/probe-out: /'
echo "probe: backlog-ready-lines $(ramkeyctl personality console web </dev/null | grep -c 'ramkey-guest: ready')"
c 'echo guest-hostname $(cat /proc/sys/kernel/hostname) cpus $(nproc) init $(cat /proc/1/comm)'
c 'head -c 400M /dev/zero | tail >/dev/null; echo hog-exit $?' 90
echo "probe: after-hog $(ramkeyctl personality list | grep '^web ')"
echo "probe: panic"
# (What the guest's kernel says as it panics is in the VM's log, not here: a panic on the
# box's console is what this test forbids.)
c 'echo c >/proc/sysrq-trigger' 5 >/dev/null
until ramkeyctl personality list | grep '^web ' | grep -q ' online '; do sleep 1; done
echo "probe: web-back $(ramkeyctl personality list | grep '^web ')"
echo "probe: site-pid-after $(cat /run/ramkey/zones/site/pid)"
# Swaps as for a zone: to 1.0.1, keeping the volume; to a 1.0.2 whose nginx never starts,
# rolled back to 1.0.1.
mark=$(cat /proc/sys/kernel/random/uuid)
c "echo $mark >/srv/www/vm-marker" >/dev/null
echo "probe: marker $mark"
echo "probe: v2 $(ramkeyctl personality swap web /usbkey/personalities/web-vm-1.0.1.rkimg 2>&1 | tail -1)"
echo "probe: kept $(c 'cat /srv/www/vm-marker' | grep -oE '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}' | head -1)"
out=$(ramkeyctl personality swap web /usbkey/personalities/web-vm-1.0.2.rkimg --wait 60 2>&1; echo "exit $?")
echo "probe: v3 $(echo "$out" | tr '\n' ' ')"
echo "probe: after-v3 $(ramkeyctl personality list | grep '^web ')"
echo "probe: done"
''']
"#;

/// The probe's report for `key`: the rest of its `probe: key ` line.
fn probe(vm: &mut Machine, key: &str) -> String {
    let needle = format!("probe: {key} ");
    let (_, line) = vm.expect(&needle, BOOT).unwrap();
    line.split_once(&needle)
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default()
}

fn stick(name: &str) -> PathBuf {
    let web_vm = artifacts::vm_personality("web").unwrap();
    let web = artifacts::personality("web").unwrap();
    let (_, trusted) = artifacts::test_key().unwrap();
    let image = artifacts::usb_copy(name).unwrap();
    let work = artifacts::target_dir().join("ramkey/run").join(format!("{name}.files"));
    std::fs::create_dir_all(&work).unwrap();
    let config_file = work.join("config.toml");
    std::fs::write(&config_file, config(&trusted)).unwrap();
    let probe = work.join("probe.toml");
    std::fs::write(&probe, PROBE).unwrap();
    let vmm = xtask::nested::static_vmm().unwrap();
    let escape = vmm.with_file_name("jail-escape");
    let work_v2 = work.join("web-vm-1.0.1.rkimg");
    artifacts::as_version(&web_vm, "1.0.1", &work_v2).unwrap();
    let work_v3 = work.join("web-vm-1.0.2.rkimg");
    artifacts::with_manifest(&web_vm, &work_v3, |m| {
        m.version = "1.0.2".into();
        for service in m.services.iter_mut().filter(|s| s.name == "nginx") {
            service.argv = ["/usr/sbin/nginx", "-c", "/no-such.conf", "-g", "daemon off;"]
                .map(String::from)
                .to_vec();
        }
    })
    .unwrap();
    let files = [
        (work_v2.as_path(), "::/personalities/web-vm-1.0.1.rkimg"),
        (work_v3.as_path(), "::/personalities/web-vm-1.0.2.rkimg"),
        (escape.as_path(), "::/jail-escape"),
        (web_vm.as_path(), "::/personalities/web-vm-1.0.0.rkimg"),
        (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
        (&config_file, "::/config.toml"),
        (&probe, "::/services.d/probe.toml"),
    ];
    artifacts::put_on_stick(&image, &files).unwrap();
    image
}

/// Boots the stick with a pool, forwarding `ports` to the VM's and the zone's port 80;
/// `cpu` replaces `-cpu max`.
fn boot(name: &str, image: &Path, ports: (u16, u16), cpu: Option<&str>) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = Some(artifacts::empty_pool(name).unwrap());
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = [(ports.0, VM_ADDRESS), (ports.1, ZONE_ADDRESS)]
        .map(|(host, address)| Forward {
            host,
            guest: 80,
            address: Some(address.parse().unwrap()),
        })
        .to_vec();
    let mut spec = Spec::run(name, &opts).unwrap();
    if let Some(cpu) = cpu {
        // The last -cpu wins.
        spec.args.extend(["-cpu".to_string(), cpu.to_string()]);
    }
    Machine::start(&spec).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn web_runs_as_a_vm_answers_at_its_address_and_is_restarted_after_a_guest_panic() {
    let name = "vm-personalities";
    let image = stick(name);
    let ports = (free_port(), free_port());
    let mut vm = boot(name, &image, ports, None);
    vm.forbid(&[
        "Kernel panic",
        "ramkey: error: PANIC",
        "RECOVERY MODE",
        "not started",
        "the guest says",
    ])
    .unwrap();
    vm.expect("vm: kvm_amd and macvtap loaded", BOOT).unwrap();
    let (_, started) = vm.expect("vm web: web 1.0.0 on 1 vCPU(s), 192 MiB", BOOT).unwrap();
    eprintln!("{started}");

    let page = xtask::http::wait_ok(ports.0, "/", BOOT).unwrap();
    assert!(page.contains("Ramkey"), "{page}");
    let site = xtask::http::wait_ok(ports.1, "/", BOOT).unwrap();
    assert!(site.contains("Ramkey"), "{site}");

    let site_pid = probe(&mut vm, "site-pid");
    vm.expect("probe: list", BOOT).unwrap();
    // In name order.
    let (_, zone) = vm.expect("probe-out: site ", BOOT).unwrap();
    assert!(zone.contains(" zone ") && zone.contains("online"), "{zone}");
    let (_, web) = vm.expect("probe-out: web ", BOOT).unwrap();
    for want in ["web 1.0.0", "vm 1 vCPU 192 MiB", "online", "10.0.2.16/24", "of 256 MiB"] {
        assert!(web.contains(want), "{want} in {web}");
    }
    assert_eq!(probe(&mut vm, "kvm-modules"), "2", "kvm and kvm_amd");
    jailed(&mut vm);
    let ready: u32 = probe(&mut vm, "backlog-ready-lines").parse().unwrap_or(0);
    assert!(ready >= 1, "the guest's console backlog says it is ready");
    let (_, guest) = vm.expect("probe-out: guest-hostname web", BOOT).unwrap();
    assert!(guest.contains("cpus 1 init init"), "{guest}");
    // The guest kills its own hog: 400 MiB do not fit in its 192.
    let (_, hog) = vm.expect("probe-out: hog-exit ", BOOT).unwrap();
    assert!(hog.ends_with("hog-exit 137"), "{hog}");
    let after = probe(&mut vm, "after-hog");
    assert!(after.contains(" online "), "{after}");
    xtask::http::wait_ok(ports.0, "/", BOOT).unwrap();

    // A kernel panic inside the guest ends the VM; the supervisor starts it again.
    vm.expect("probe: panic", BOOT).unwrap();
    vm.expect("vm web: the VM ended", BOOT).unwrap();
    vm.expect("vm web: web 1.0.0 on 1 vCPU(s)", BOOT).unwrap();
    let back = probe(&mut vm, "web-back");
    assert!(back.contains(" online "), "{back}");
    let page = xtask::http::wait_ok(ports.0, "/", BOOT).unwrap();
    assert!(page.contains("Ramkey"), "{page}");
    // The zone beside it never stopped.
    assert_eq!(probe(&mut vm, "site-pid-after"), site_pid);
    swaps(&mut vm);
    vm.expect("probe: done", BOOT).unwrap();

    vm.monitor("system_powerdown").unwrap();
    vm.expect("vm web: the guest powered off (stopped)", SHUTDOWN).unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

/// A swap to 1.0.1 keeps the volume; one to a broken 1.0.2 is rolled back to 1.0.1.
fn swaps(vm: &mut Machine) {
    let mark = probe(vm, "marker");
    let v2 = probe(vm, "v2");
    assert!(v2.contains("swapped web 1.0.0 -> web 1.0.1 in "), "{v2}");
    let kept = probe(vm, "kept");
    assert_eq!(kept, mark, "the volume's marker after the swap");
    let v3 = probe(vm, "v3");
    assert!(
        v3.contains("rolled back from web 1.0.2: vm web: the guest is waiting for nginx")
            && v3.contains("running web 1.0.1 again")
            && v3.ends_with("exit 1"),
        "{v3}"
    );
    let after = probe(vm, "after-v3");
    assert!(after.contains("web 1.0.1") && after.contains(" online "), "{after}");
    eprintln!("swaps: {v2}\n{v3}");
}

/// The VMM as the host sees it: an unprivileged id of its own, no capability, no way to
/// gain one, in mount, network, IPC and UTS namespaces of its own, its root holding only
/// its guest's files and its two devices.
fn jailed(vm: &mut Machine) {
    let status = probe(vm, "vmm-status");
    eprintln!("the VMM: {status}");
    let field = |key: &str| {
        status
            .split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(field("Name:"), "ramkey-vmm", "{status}");
    let uid: u32 = field("Uid:").parse().unwrap_or(0);
    assert!(uid >= 1 << 20, "the VMM runs as host uid {uid}: {status}");
    assert_eq!(field("Gid:"), uid.to_string(), "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("CapBnd:"), "0000000000000000", "{status}");
    assert_eq!(probe(vm, "vmm-shared"), "", "namespaces the VMM shares with PID 1");
    assert_eq!(field("Seccomp:"), "2", "{status}");
    let root = probe(vm, "vmm-root");
    assert_eq!(
        root, "dev dev/kvm dev/tap disk0 disk1 disk2 initrd kernel proc",
        "{root}"
    );
    escapes(vm, uid);
}

/// What `jail-escape` (the VMM's namespaces, root and ids, without its seccomp filter: a
/// guest that took the VMM over and found a hole in the filter) got: nothing of the host.
fn escapes(vm: &mut Machine, uid: u32) {
    let (_, setup) = vm.expect("probe-out: jail: setup: ", BOOT).unwrap();
    assert!(setup.contains(&format!("uid {uid} gid {uid}")), "{setup}");
    let (_, root) = vm.expect("probe-out: jail: root: ", BOOT).unwrap();
    assert!(
        root.ends_with("root: dev disk0 disk1 disk2 initrd kernel proc"),
        "{root}"
    );
    let attacks = [
        ("read-usbkey-config", "No such file"),
        ("read-shadow", "No such file"),
        ("write-image", "Read-only file system"),
        ("write-kernel", "Read-only file system"),
        ("create-file", "Read-only file system"),
        // The read-only root answers before the missing CAP_MKNOD would.
        ("mknod-disk", "Read-only file system"),
        ("mount-proc", "Operation not permitted"),
        ("unshare-user", "Operation not permitted"),
        ("chroot", "Operation not permitted"),
        ("setuid-root", "Operation not permitted"),
        ("signal-pid1", "Operation not permitted"),
    ];
    let mut seen = vec![setup, root];
    for (name, error) in attacks {
        let (_, line) = vm.expect(&format!("probe-out: jail: {name}: "), BOOT).unwrap();
        assert!(line.contains(&format!("refused ({error}")), "{line}");
        seen.push(line);
    }
    let (_, processes) = vm.expect("probe-out: jail: processes-seen: ", BOOT).unwrap();
    // Its `/proc` shows at most its own uid's processes, the VMM and itself; never PID 1.
    let pids: Vec<&str> = processes
        .split_once('(')
        .map_or("", |(_, pids)| pids.trim_end_matches(')'))
        .split_whitespace()
        .collect();
    assert!(pids.len() <= 2 && !pids.contains(&"1"), "{processes}");
    let (_, network) = vm.expect("probe-out: jail: network: ", BOOT).unwrap();
    assert!(network.contains("refused (Network is unreachable"), "{network}");
    seen.extend([processes, network]);
    vm.expect("probe-out: jail: done", BOOT).unwrap();
    eprintln!("jail escapes, as the VMM without its filter:\n{}", seen.join("\n"));
}

#[test]
fn a_box_without_svm_refuses_the_vm_and_runs_its_zone() {
    let name = "vm-without-svm";
    let image = stick(name);
    let ports = (free_port(), free_port());
    let mut vm = boot(name, &image, ports, Some("max,svm=off"));
    vm.forbid(&["Kernel panic", "ramkey: error: PANIC", "RECOVERY MODE"])
        .unwrap();
    let (_, refused) = vm.expect("zone web: refused: a VM personality", BOOT).unwrap();
    assert!(refused.contains("neither AMD SVM nor Intel VMX"), "{refused}");
    let site = xtask::http::wait_ok(ports.1, "/", BOOT).unwrap();
    assert!(site.contains("Ramkey"), "{site}");
    power_off(vm);
}
