//! Boot tests of reaching a running box (QEMU, TCG): SSH with a key from the config through a
//! host forward — `ramkeyctl status` over SSH shows the host key fingerprint the console
//! printed and the client saw, a wrong key and a password are refused, `scp` (SFTP) copies a
//! file, sshd's log is the supervisor's — and the host key survives a reboot (kept on the
//! pool). Then images delivered to a running zone box: `ramkey push --swap` puts `web` 2.0.0
//! into service, an image served by `python3 -m http.server` on the host is imported by URL,
//! over HTTP and over HTTPS from a server whose CA the config names (one whose CA it does not
//! name, and plain HTTP behind an https:// URL, are refused), and a tampered image, a source that is down and a truncated upload are refused with
//! nothing left on the pool while `web` keeps serving. The host's own OpenSSH client does
//! the talking, as an operator's would.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ramkey_builder::config_cmd::{self, Target};
use ramkey_builder::flash::sysfs::Sysfs;
use ramkey_builder::image_cmd::publish;
use ramkey_builder::push::{self, PushArgs};
use ramkey_builder::run::{Boot, Forward, RunOptions};
use xtask::artifacts;
use xtask::http::Served;
use xtask::qemu::{Machine, Spec};
use xtask::ssh::{self, client, free_port, keygen, ssh, text};

const BOOT: Duration = Duration::from_secs(240);

/// The name the host's DNS server gives the host (10.0.2.2 as the box sees it).
const REPO_NAME: &str = "images.ramkey.test";

/// A CA and the PEM files of a server certificate it signed for 10.0.2.2 and [`REPO_NAME`],
/// written into `dir` as `NAME.crt` and `NAME.key`; the CA's PEM.
fn tls_server_files(dir: &Path, name: &str) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name = DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["10.0.2.2".to_owned(), REPO_NAME.to_owned()])
        .unwrap()
        .signed_by(&key, &Issuer::new(ca, ca_key))
        .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem() + &ca_pem).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    ca_pem
}
const SHUTDOWN: Duration = Duration::from_secs(90);
const GIB: u64 = 1 << 30;

/// [`ssh::ssh_when_up`] within a boot's time.
fn ssh_when_up(port: u16, key: &Path, known_hosts: &Path, command: &str) -> String {
    ssh::ssh_when_up(port, key, known_hosts, command, BOOT)
}

/// The fingerprint in `ramkey: ssh: host key ED25519 SHA256:... (...)`, and the rest.
fn printed_fingerprint(vm: &mut Machine) -> (String, String) {
    let (_, line) = vm.expect("ramkey: ssh: host key ED25519 SHA256:", BOOT).unwrap();
    let rest = line.split("host key ED25519 ").nth(1).unwrap();
    let (fingerprint, origin) = rest.split_once(' ').unwrap();
    (fingerprint.to_owned(), origin.to_owned())
}

fn boot(name: &str, image: &Path, disk: &Path, port: u16) -> Machine {
    let mut opts = RunOptions::new(Boot::Usb { image: image.into() });
    opts.pool = Some(disk.to_owned());
    opts.pool_size = GIB;
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = vec![Forward {
        host: port,
        guest: 22,
        address: None,
    }];
    Machine::start(&Spec::run(name, &opts).unwrap()).unwrap()
}

fn power_off(mut vm: Machine) {
    vm.monitor("system_powerdown").unwrap();
    vm.expect("ramkey: power-off", SHUTDOWN).unwrap();
    assert!(vm.wait_exit(SHUTDOWN).unwrap().success(), "{}", vm.tail());
}

#[test]
fn ssh_with_the_configured_key_sees_the_printed_host_key_which_survives_a_reboot() {
    let name = "remote-ssh";
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "operator");
    let stranger = keygen(keys.path(), "stranger");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let known_hosts = keys.path().join("known_hosts");
    let image = artifacts::usb_copy(name).unwrap();
    let hash = artifacts::password_hash("console-secret").unwrap();
    let pairs: Vec<String> = vec![
        format!("admin.authorized_keys=[\"{}\"]", public.trim()),
        format!("admin.password_hash=\"{hash}\""),
        "pool.disks=[\"virtio-ramkey-pool\"]".into(),
        "pool.create=\"virtio-ramkey-pool\"".into(),
    ];
    config_cmd::set(&Target::Disk(image.clone()), &pairs, &Sysfs::host()).unwrap();
    let disk = artifacts::target_dir()
        .join("ramkey/run")
        .join(format!("{name}.pool.img"));
    let _ = std::fs::remove_file(&disk);
    let port = free_port();

    let mut vm = boot(name, &image, &disk, port);
    let (started, _) = vm.expect("ramkey: step services: start", BOOT).unwrap();
    let (fingerprint, origin) = printed_fingerprint(&mut vm);
    assert_eq!(origin, "(new, saved to /pool/ssh/ssh_host_ed25519_key)");
    let (prepared, _) = vm
        .expect("ramkey: ssh: port 22 on every platform NIC for 1 key", BOOT)
        .unwrap();
    // Console arrival times, not the box's clock: a measure, not an assertion.
    eprintln!(
        "ssh: host key made and sshd prepared {} ms into the services step",
        prepared.saturating_sub(started).as_millis()
    );
    vm.expect_running(BOOT).unwrap();
    let status = ssh_when_up(port, &key, &known_hosts, "ramkeyctl status");
    let ssh_line = format!("ssh:       port 22 on every platform NIC; host key ED25519 {fingerprint}");
    assert!(status.lines().any(|l| l == ssh_line), "{status}");
    // What the client saw is what the console printed.
    let seen = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&known_hosts)
        .output()
        .unwrap();
    let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
    assert!(seen.contains(&fingerprint) && seen.contains("ED25519"), "{seen}");

    // Only the configured key, and never a password (the console has one).
    let wrong = ssh(port, &stranger, &known_hosts, "yes", "true");
    assert!(!wrong.status.success(), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("Permission denied (publickey)"),
        "{}",
        text(&wrong)
    );
    let password = client("ssh", port, &key, &known_hosts)
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ])
        .args(["-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert!(
        text(&password).contains("Permission denied (publickey)"),
        "a password was offered: {}",
        text(&password)
    );

    // scp (over SFTP, OpenSSH's default since 9.0) both ways.
    let payload = keys.path().join("payload");
    std::fs::write(&payload, "copied over sftp\n").unwrap();
    let copy = client("scp", port, &key, &known_hosts)
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg(&payload)
        .arg("root@127.0.0.1:/tmp/payload")
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", text(&copy));
    let back = ssh(port, &key, &known_hosts, "yes", "cat /tmp/payload");
    assert_eq!(
        String::from_utf8_lossy(&back.stdout),
        "copied over sftp\n",
        "{}",
        text(&back)
    );
    let memory = ssh(
        port,
        &key,
        &known_hosts,
        "yes",
        "cat /sys/fs/cgroup/ramkey/sshd/memory.current",
    );
    let memory: u64 = String::from_utf8_lossy(&memory.stdout).trim().parse().unwrap_or(0);
    assert!(memory > 0, "sshd's cgroup has no memory.current");
    eprintln!(
        "ssh: sshd's cgroup with one session uses {:.1} MiB",
        memory as f64 / f64::from(1 << 20)
    );
    let log = ssh(port, &key, &known_hosts, "yes", "ramkeyctl log -n 50 sshd");
    let log = String::from_utf8_lossy(&log.stdout).into_owned();
    assert!(log.contains("Accepted publickey for root"), "sshd's log: {log}");
    power_off(vm);

    // The next boot keeps the key: the client, now strict, connects without a word.
    let mut vm = boot(name, &image, &disk, port);
    let (again, origin) = printed_fingerprint(&mut vm);
    assert_eq!(
        (again.as_str(), origin.as_str()),
        (fingerprint.as_str(), "(kept in /pool/ssh/ssh_host_ed25519_key)")
    );
    vm.expect_running(BOOT).unwrap();
    let start = Instant::now();
    let hostname = loop {
        let out = ssh(port, &key, &known_hosts, "yes", "hostname");
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(
            !text(&out).contains("HOST IDENTIFICATION HAS CHANGED"),
            "{}",
            text(&out)
        );
        assert!(start.elapsed() < BOOT, "{}", text(&out));
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(!hostname.trim().is_empty());
    power_off(vm);
}

#[test]
fn images_pushed_over_ssh_and_pulled_over_http_and_https_go_into_service_and_bad_ones_leave_nothing() {
    let name = "remote-push";
    let keys = tempfile::tempdir().unwrap();
    let key = keygen(keys.path(), "operator");
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let known_hosts = keys.path().join("known_hosts");
    let web = artifacts::personality("web").unwrap();
    let v2 = artifacts::personality_variant("remote-web-v2", "web", "2.0.0", |dir| {
        artifacts::add_version_page(dir, "2.0.0");
    })
    .unwrap();
    // What the host serves: web 1.0.1 (web's payload, another manifest), a copy of it with
    // one payload byte flipped, a file that is no image at all; and three repositories:
    // `good` (web 2.1.0, v2's payload), `lying` (web 9.0.0, whose bytes changed after it was
    // published) and `garbage` (an index that is not JSON). A fourth source is down.
    let served = keys.path().join("www");
    std::fs::create_dir(&served).unwrap();
    artifacts::as_version(&web, "1.0.1", &served.join("web-1.0.1.rkimg")).unwrap();
    let mut bytes = std::fs::read(served.join("web-1.0.1.rkimg")).unwrap();
    bytes[4096 * 3] ^= 0x55;
    std::fs::write(served.join("tampered.rkimg"), bytes).unwrap();
    std::fs::write(served.join("garbage.rkimg"), "<html>not an image</html>\n").unwrap();
    let (_, public_test_key) = artifacts::test_key().unwrap();
    let test_pub = keys.path().join("test.pub");
    std::fs::write(&test_pub, format!("{public_test_key}\n")).unwrap();
    let publish = |repo: &str, version: &str, of: &Path| {
        let file = keys.path().join(format!("web-{version}.rkimg"));
        artifacts::as_version(of, version, &file).unwrap();
        let said = publish::publish(&served.join(repo), &[file], &test_pub).unwrap();
        eprintln!("{said}");
    };
    publish("good", "2.1.0", &v2);
    publish("lying", "9.0.0", &v2);
    let lie = served.join("lying/web-9.0.0.rkimg");
    let mut bytes = std::fs::read(&lie).unwrap();
    bytes[4096 * 5] ^= 0x55;
    std::fs::write(&lie, bytes).unwrap();
    std::fs::create_dir(served.join("garbage")).unwrap();
    std::fs::write(served.join("garbage/index.json"), "<html>moved</html>\n").unwrap();
    let server = Served::start(&served);
    // The same files over HTTPS: from a server whose CA the config names, and from one whose
    // CA it does not.
    let pki = keys.path();
    let ca = tls_server_files(pki, "trusted");
    tls_server_files(pki, "stranger");
    let tls = Served::start_tls(&served, &pki.join("trusted.crt"), &pki.join("trusted.key"));
    let stranger = Served::start_tls(&served, &pki.join("stranger.crt"), &pki.join("stranger.key"));
    // The box resolves the HTTPS repository's name with the host's DNS server, which knows
    // one more name only to say it does not exist.
    let _dns = xtask::dns::Dnsmasq::start(&[(REPO_NAME, Some("10.0.2.2")), ("missing.ramkey.test", None)]).unwrap();
    let closed = free_port();
    let sources: Vec<String> = ["good", "lying", "garbage"]
        .iter()
        .map(|r| format!("http://10.0.2.2:{}/{r}", server.port()))
        .chain([
            format!("http://10.0.2.2:{closed}/down"),
            format!("https://{REPO_NAME}:{}/good", tls.port()),
            format!("http://missing.ramkey.test:{}/good", server.port()),
        ])
        .collect();

    let image = artifacts::usb_copy(name).unwrap();
    let config = keys.path().join("config.toml");
    let written = ssh::zone_box_config("pushbox", public.trim(), &sources)
        .replace(
            "\nsources = [",
            &format!("\nca_certs = [\"\"\"\n{ca}\"\"\"]\nsources = ["),
        )
        .replace("\n[pool]", "\n[dns]\nresolvers = [\"10.0.2.2\"]\n\n[pool]");
    std::fs::write(&config, written).unwrap();
    artifacts::put_on_stick(
        &image,
        &[
            (web.as_path(), "::/personalities/web-1.0.0.rkimg"),
            (&config, "::/config.toml"),
        ],
    )
    .unwrap();
    let disk = artifacts::empty_pool(name).unwrap();
    let (ssh_port, web_port) = (free_port(), free_port());
    let mut opts = RunOptions::new(Boot::Usb { image: image.clone() });
    opts.pool = Some(disk);
    opts.state_dir = Some(artifacts::target_dir().join("ramkey/run").join(name));
    opts.forwards = vec![
        Forward {
            host: ssh_port,
            guest: 22,
            address: Some("10.0.2.15".parse().unwrap()),
        },
        Forward {
            host: web_port,
            guest: 80,
            address: Some("10.0.2.16".parse().unwrap()),
        },
    ];
    let mut vm = Machine::start(&Spec::run(name, &opts).unwrap()).unwrap();
    vm.forbid(&["Kernel panic", "ramkey: error: PANIC", "RECOVERY MODE"])
        .unwrap();
    vm.expect("ramkey: zone web: web 1.0.0 came up; kept as the last good image", BOOT)
        .unwrap();
    ssh_when_up(ssh_port, &key, &known_hosts, "true");

    // ramkey push, as an operator runs it, with --swap.
    let args = PushArgs {
        target: "127.0.0.1".into(),
        images: vec![v2.clone()],
        swap: Some("web".into()),
        reboot: false,
        port: Some(ssh_port),
        identity: Some(key.clone()),
        options: ssh::push_options(&known_hosts),
    };
    let said = push::push(&args).unwrap_or_else(|e| panic!("ramkey push: {e}"));
    eprintln!("ramkey push said:\n{said}");
    assert!(said.contains("imported web 2.0.0 as /pool/images/web-2.0.0-"), "{said}");
    assert!(said.contains("web: swapped web 1.0.0 -> web 2.0.0 in "), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("web ") && l.contains("web 2.0.0") && l.contains(" online ")),
        "{said}"
    );
    let page = xtask::http::wait_ok(web_port, "/version.html", BOOT).unwrap();
    assert!(page.ends_with("\r\n\r\nweb 2.0.0\n"), "{page}");

    // Pulled by URL from the host.
    let url = |file: &str| format!("http://10.0.2.2:{}/{file}", server.port());
    let run = |command: &str| ssh(ssh_port, &key, &known_hosts, "yes", command);
    let pulled = run(&format!("ramkeyctl personality import {}", url("web-1.0.1.rkimg")));
    assert!(pulled.status.success(), "{}", text(&pulled));
    let pulled = String::from_utf8_lossy(&pulled.stdout).into_owned();
    assert!(
        pulled.starts_with("imported web 1.0.1 as /pool/images/web-1.0.1-"),
        "{pulled}"
    );
    eprintln!("over HTTP: {pulled}");
    let https = |port: u16, file: &str| format!("ramkeyctl personality import https://10.0.2.2:{port}/{file}");
    let pulled = run(&https(tls.port(), "web-1.0.1.rkimg"));
    assert!(
        pulled.status.success()
            && String::from_utf8_lossy(&pulled.stdout)
                .starts_with("already imported web 1.0.1 as /pool/images/web-1.0.1-"),
        "{}",
        text(&pulled)
    );
    eprintln!("over HTTPS: {}", text(&pulled));
    let refused = run(&https(stranger.port(), "web-1.0.1.rkimg"));
    assert!(
        !refused.status.success() && text(&refused).contains("not signed by a CA the box trusts"),
        "{}",
        text(&refused)
    );
    let plain = run(&https(server.port(), "web-1.0.1.rkimg"));
    assert!(
        !plain.status.success() && text(&plain).contains("is it an https:// server?"),
        "{}",
        text(&plain)
    );
    let tampered = run(&format!("ramkeyctl personality import {}", url("tampered.rkimg")));
    assert!(
        !tampered.status.success()
            && text(&tampered).contains("payload sha256 mismatch")
            && text(&tampered).contains("nothing was kept"),
        "{}",
        text(&tampered)
    );
    let garbage = run(&format!("ramkeyctl personality import {}", url("garbage.rkimg")));
    assert!(
        !garbage.status.success() && text(&garbage).contains("refused: "),
        "{}",
        text(&garbage)
    );
    let missing = run(&format!("ramkeyctl personality import {}", url("absent.rkimg")));
    assert!(text(&missing).contains("HTTP status 404"), "{}", text(&missing));
    let down = run(&format!(
        "ramkeyctl personality import http://10.0.2.2:{closed}/web-1.0.1.rkimg"
    ));
    assert!(
        !down.status.success() && text(&down).contains(&format!("connecting to 10.0.2.2:{closed}")),
        "{}",
        text(&down)
    );
    // An upload cut short: the first MB of v2 on ssh's standard input.
    let mut cut = client("ssh", ssh_port, &key, &known_hosts)
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "root@127.0.0.1",
            "ramkeyctl personality import -",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let head = std::fs::read(&v2).unwrap()[..1 << 20].to_vec();
    std::io::Write::write_all(cut.stdin.as_mut().unwrap(), &head).unwrap();
    drop(cut.stdin.take());
    let cut = cut.wait_with_output().unwrap();
    assert!(
        !cut.status.success() && text(&cut).contains("refused: "),
        "{}",
        text(&cut)
    );
    // The repositories, as `imgadm` users know them.
    let avail = run("ramkeyctl image avail");
    let avail = text(&avail);
    eprintln!("image avail: {avail}");
    let good = format!("http://10.0.2.2:{}/good", server.port());
    let good_tls = format!("https://{REPO_NAME}:{}/good", tls.port());
    for good in [&good, &good_tls] {
        assert!(
            avail
                .lines()
                .any(|l| l.starts_with("web ") && l.contains(" 2.1.0 ") && l.ends_with(good.as_str())),
            "{avail}"
        );
    }
    assert!(
        avail.contains("unavailable: http://10.0.2.2:") && avail.contains("/garbage/index.json: not an image index"),
        "{avail}"
    );
    assert!(
        avail.contains(&format!(
            "unavailable: http://10.0.2.2:{closed}/down/index.json: connecting to"
        )),
        "{avail}"
    );
    assert!(
        avail.contains("cannot resolve \"missing.ramkey.test\": 10.0.2.2:53 says there is no such name"),
        "{avail}"
    );
    let pulled = run("ramkeyctl image import web@2.1.0");
    assert!(pulled.status.success(), "{}", text(&pulled));
    assert!(
        text(&pulled).contains("imported web 2.1.0 as /pool/images/web-2.1.0-"),
        "{}",
        text(&pulled)
    );
    eprintln!("from the repository: {}", text(&pulled));
    let lied = run("ramkeyctl image import web@9.0.0");
    assert!(
        !lied.status.success()
            && text(&lied).contains("where the index says")
            && text(&lied).contains("nothing was kept"),
        "{}",
        text(&lied)
    );
    let absent = run("ramkeyctl image import dns");
    assert!(text(&absent).contains("no source offers dns"), "{}", text(&absent));
    let kept = push::imported_path(&String::from_utf8_lossy(&pulled.stdout))
        .unwrap()
        .to_owned();
    let swapped = run(&format!("ramkeyctl personality swap web {kept}"));
    assert!(
        text(&swapped).contains("web: swapped web 2.0.0 -> web 2.1.0"),
        "{}",
        text(&swapped)
    );
    let installed = text(&run("ramkeyctl image avail"));
    assert!(
        installed
            .lines()
            .any(|l| l.starts_with("web ") && l.contains(" 2.1.0 ") && l.contains(" yes ")),
        "{installed}"
    );
    let list = text(&run("ramkeyctl image list"));
    eprintln!("image list: {list}");
    assert!(
        list.lines().any(|l| l.contains(" 2.1.0 ") && l.contains(" web ")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains(" 2.0.0 ") && l.contains("web (rollback)")),
        "{list}"
    );
    let refused = run("ramkeyctl image delete web@2.1.0");
    assert!(
        !refused.status.success() && text(&refused).contains("is used by web"),
        "{}",
        text(&refused)
    );
    let deleted = run("ramkeyctl image delete web@1.0.1");
    assert!(
        text(&deleted).contains("deleted /pool/images/web-1.0.1-"),
        "{}",
        text(&deleted)
    );

    // A zone cannot reach the host's sshd through its own interface (a macvlan never talks
    // to its parent), while the same probe reaches the host's web server past the router.
    let probe = |address: &str, port: u16| {
        let command = format!(
            "ramkeyctl personality console web -- /bin/bash -c 'timeout 5 bash -c \"</dev/tcp/{address}/{port}\" \
             2>/dev/null && echo reached || echo unreachable'"
        );
        String::from_utf8_lossy(&run(&command).stdout).trim().to_owned()
    };
    assert_eq!(probe("10.0.2.2", server.port()), "reached", "the probe itself works");
    assert_eq!(probe("10.0.2.15", 22), "unreachable", "a zone reached the host's sshd");

    // Nothing partial on the pool, and web still serves.
    let listing = run("ls -a /pool/images");
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        !listing.contains(".import-") && !listing.contains("partial"),
        "{listing}"
    );
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(".rkimg")).count(),
        3,
        "{listing}"
    );
    let page = xtask::http::wait_ok(web_port, "/version.html", BOOT).unwrap();
    assert!(page.ends_with("\r\n\r\nweb 2.0.0\n"), "{page}");
    power_off(vm);
}
