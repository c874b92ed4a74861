//! Boot tests of the built media under QEMU (TCG), on the machine `ramkey run` defines: two
//! copies of `usb.img` in one box, and the PXE tree over QEMU's TFTP (through iPXE's script
//! and through pxelinux) with the config fetched over HTTP from the host, chosen by the NIC's
//! MAC. The stick booting under SeaBIOS and under OVMF is the first boot of each test in
//! `upgrade.rs`.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ramkey_builder::run::{Boot, RunOptions};
use ramkey_image::SigningKey;
use xtask::artifacts;
use xtask::qemu::{Machine, Spec};

const BOOT: Duration = Duration::from_secs(240);
const SHUTDOWN: Duration = Duration::from_secs(60);

/// A second stick labelled RAMKEY beside the one the box boots from (a copy of it, as when
/// someone leaves last year's stick in the box): the box takes neither, names both and stays
/// in recovery mode, where the console says what to do.
#[test]
fn two_sticks_labelled_ramkey_are_refused_by_name() {
    let name = "usb-two-sticks";
    let image = artifacts::usb_copy(name).unwrap();
    let other = image.with_extension("other.img");
    std::fs::copy(&image, &other).unwrap();
    let mut opts = RunOptions::new(Boot::Usb { image });
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    let mut spec = Spec::run(name, &opts).unwrap();
    spec.args.extend([
        "-drive".into(),
        format!("if=none,id=other,format=raw,file={}", other.display()),
        "-device".into(),
        "usb-storage,bus=xhci.0,drive=other,removable=on".into(),
    ]);
    let mut vm = Machine::start(&spec).unwrap();
    vm.forbid(&["ramkey: config: /usbkey/config.toml: ok"]).unwrap();
    let (_, line) = vm
        .expect(
            "RECOVERY MODE: usbkey: 2 filesystems are labelled RAMKEY: /dev/sd",
            BOOT,
        )
        .unwrap();
    assert!(
        line.matches("(usb: QEMU QEMU HARDDISK)").count() == 2
            && line.contains("unplug every one but the Ramkey stick"),
        "{line}"
    );
    eprintln!("{name}: {}", xtask::qemu::message(&line));
    let _ = std::fs::remove_file(&other);
}

/// Serves `/configs/<mac>.toml` for one MAC on 127.0.0.1, with its signature by `signer`
/// (`.toml.sig`; the tested platform takes only configs the test key signed), and records
/// every request line.
fn config_server(mac: &str, config: &str, signer: &SigningKey) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (path, body, log) = (format!("/configs/{mac}.toml"), config.to_string(), seen.clone());
    let signature = ramkey_image::detached::sign(signer, config.as_bytes());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut request = String::new();
            let _ = BufReader::new(&stream).read_line(&mut request);
            log.lock().unwrap().push(request.trim().to_string());
            let asked = request.split_whitespace().nth(1).unwrap_or_default();
            let answer = if asked == path {
                Some(&body)
            } else if asked == format!("{path}.sig") {
                Some(&signature)
            } else {
                None
            };
            let reply = match answer {
                Some(body) => format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
                None => "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, seen)
}

#[test]
fn pxe_boot_fetches_its_config_by_mac_over_http() {
    // QEMU's first NIC has this MAC unless told otherwise.
    let mac = "52:54:00:12:34:56";
    let config =
        "version = 1\nhostname = \"fleet-box-7\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n";
    let (port, seen) = config_server(mac, config, &test_key());
    let pxe = artifacts::appliance().unwrap().join("pxe");
    let mut opts = RunOptions::new(Boot::Pxe { dir: pxe });
    // The guest reaches the host's loopback at 10.0.2.2 through QEMU's user network.
    opts.config_url = Some(format!("http://10.0.2.2:{port}/configs/${{mac}}.toml"));
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run/pxe"));
    let mut vm = Machine::start(&Spec::run("pxe", &opts).unwrap()).unwrap();
    vm.expect("ramkey: network: eth0 (52:54:00:12:34:56) got 10.0.2.15/24", BOOT)
        .unwrap();
    let at = fetched_by_mac_and_running(vm, port, mac, "fleet-box-7", &seen);
    eprintln!("pxe: ready {:.1} s after QEMU started", at.as_secs_f64());
}

/// The box fetched `configs/MAC.toml` from the server on `port` (which saw the request),
/// came up with its host name and settled; then it is powered off.
fn fetched_by_mac_and_running(
    mut vm: Machine,
    port: u16,
    mac: &str,
    hostname: &str,
    seen: &Mutex<Vec<String>>,
) -> Duration {
    vm.expect(
        &format!("ramkey: config: fetched http://10.0.2.2:{port}/configs/{mac}.toml"),
        BOOT,
    )
    .unwrap();
    vm.expect(
        &format!("ramkey: config: http://10.0.2.2:{port}/configs/{mac}.toml: signed by key "),
        BOOT,
    )
    .unwrap();
    vm.expect(&format!("(hostname {hostname})"), BOOT).unwrap();
    let at = vm.expect_running(BOOT).unwrap();
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET /configs/{mac}.toml "))),
        "{requests:?}"
    );
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
    at
}

/// The test key, which the tested platform's `[pxe] config_keys` names.
fn test_key() -> SigningKey {
    let (secret, _) = artifacts::test_key().unwrap();
    ramkey_image::keys::read_secret_file(&secret).unwrap()
}

/// A config fetched over the network but signed by another key (or changed on the way) is
/// not taken: the box names the URL and why, and stays in recovery mode. A direct kernel
/// boot with `ramkey.config=`: the firmware and iPXE are the PXE tests' part.
#[test]
fn a_fetched_config_signed_by_a_stranger_is_refused() {
    let mac = "52:54:00:12:34:56";
    let config = "version = 1\nhostname = \"hijacked\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n";
    let stranger = SigningKey::from_bytes(&[13; 32]);
    let (port, seen) = config_server(mac, config, &stranger);
    let platform = artifacts::platform().unwrap();
    let url = format!("http://10.0.2.2:{port}/configs/${{mac}}.toml");
    let spec = Spec::direct("config-stranger", &platform, &format!("ramkey.config={url}")).user_net(&[]);
    let mut vm = Machine::start(&spec).unwrap();
    vm.forbid(&["(hostname hijacked)"]).unwrap();
    let (_, line) = vm
        .expect(
            &format!("ramkey: error: config: http://10.0.2.2:{port}/configs/{mac}.toml: refused, the platform takes only signed configs"),
            BOOT,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.tail()));
    assert!(
        line.contains("the signature is not by a key the platform trusts"),
        "{line}"
    );
    vm.expect("RECOVERY MODE: no usable config: http://10.0.2.2:", BOOT)
        .unwrap();
    let requests = seen.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with(&format!("GET /configs/{mac}.toml.sig "))),
        "{requests:?}"
    );
    eprintln!("config-stranger: {}", xtask::qemu::message(&line));
}

/// A PXE ROM without iPXE's scripting: QEMU's TFTP hands out `pxelinux.0`, which reads
/// `pxelinux.cfg/default`. Syslinux does not expand `${mac}`, so PID 1 does it: the config
/// is fetched by the booting NIC's MAC all the same.
#[test]
fn pxelinux_boots_and_pid1_puts_the_mac_in_the_config_url() {
    let mac = "52:54:00:12:34:56";
    let config =
        "version = 1\nhostname = \"pxelinux-box\"\n\n[[nic]]\ntag = \"admin\"\nname = \"eth0\"\nip = \"dhcp\"\n";
    let (port, seen) = config_server(mac, config, &test_key());
    let pxe = artifacts::appliance().unwrap().join("pxe");
    let tftp = artifacts::target_dir().join("ramkey/run/pxelinux.tftp");
    let _ = std::fs::remove_dir_all(&tftp);
    std::fs::create_dir_all(tftp.join("pxelinux.cfg")).unwrap();
    for file in ["pxelinux.0", "ldlinux.c32", "vmlinuz", "initrd.img"] {
        std::fs::copy(pxe.join(file), tftp.join(file)).unwrap();
    }
    let shipped = std::fs::read_to_string(pxe.join("pxelinux.cfg/default")).unwrap();
    let url = format!("http://10.0.2.2:{port}/configs/${{mac}}.toml");
    let append = shipped
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("APPEND "))
        .expect("an APPEND line in the shipped pxelinux.cfg/default");
    std::fs::write(
        tftp.join("pxelinux.cfg/default"),
        shipped.replace(append, &format!("{append} ramkey.config={url}")),
    )
    .unwrap();
    let mut opts = RunOptions::new(Boot::Pxe { dir: pxe });
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run/pxelinux"));
    let mut spec = Spec::run("pxelinux", &opts).unwrap();
    let netdev = spec.args.iter_mut().find(|a| a.starts_with("user,id=n0,")).unwrap();
    *netdev = format!("user,id=n0,tftp={},bootfile=pxelinux.0", tftp.display());
    let mut vm = Machine::start(&spec).unwrap();
    vm.expect("PXELINUX ", BOOT).unwrap();
    fetched_by_mac_and_running(vm, port, mac, "pxelinux-box", &seen);
}
