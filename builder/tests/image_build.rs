//! Personality image builds, read back with the image crate: a `files` personality built
//! twice gives the same bytes and verifies; the cache answers unchanged inputs; the CLI's
//! keygen, build, inspect, verify and list; and the real `web` personality (mmdebstrap, slow,
//! cached under target/tmp) holds nginx and its service's health check.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ramkey_builder::image_cmd::build::{self, BuildOptions, derive_uuid};
use ramkey_builder::image_cmd::squashfs;
use ramkey_image::SigningKey;
use ramkey_image::check::Check;
use ramkey_image::keys;
use ramkey_image::verify::Platform;

const EPOCH: u64 = 1_700_000_000;

fn key(dir: &Path, seed: u8) -> (PathBuf, PathBuf) {
    // Tests run in parallel threads and share key folders: one creates the files at a time.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = CREATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = SigningKey::from_bytes(&[seed; 32]);
    let (secret, public) = (dir.join(format!("k{seed}.secret")), dir.join(format!("k{seed}.pub")));
    if !secret.exists() {
        keys::write_secret_file(&secret, &key).unwrap();
        keys::write_public_file(&public, &key.verifying_key()).unwrap();
    }
    (secret, public)
}

fn hello(dir: &Path) -> PathBuf {
    let p = dir.join("hello");
    fs::create_dir_all(p.join("files/usr/bin")).unwrap();
    fs::create_dir_all(p.join("files/etc")).unwrap();
    fs::write(
        p.join("personality.toml"),
        r#"name = "hello"
version = "0.1.0"
description = "test personality from files only"
base = { files = true }

[[services]]
name = "hello"
argv = ["/usr/bin/hello"]
restart = "never"
health = { kind = "exec", argv = ["/usr/bin/hello", "--check"] }

[[volumes]]
name = "data"
path = "/var/lib/hello"

[[settings]]
name = "greeting"
type = "string"
default = "hi"
description = "what it says"
"#,
    )
    .unwrap();
    fs::write(p.join("files/usr/bin/hello"), "#!/bin/sh\necho hello\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p.join("files/usr/bin/hello"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(p.join("files/etc/hello.conf"), "greeting = hi\n").unwrap();
    std::os::unix::fs::symlink("hello.conf", p.join("files/etc/hello.link")).unwrap();
    p
}

fn options(out: &Path, key: &Path, cache: Option<PathBuf>) -> BuildOptions {
    BuildOptions {
        out: out.to_path_buf(),
        key: key.to_path_buf(),
        cache,
        use_cache: true,
        epoch: Some(EPOCH),
        progress: false,
        vm: false,
    }
}

fn platform() -> Platform {
    Platform {
        version: "0.1.0".parse().unwrap(),
        arch: "x86_64".into(),
    }
}

/// The payload's paths, listed with `unsquashfs -l` from a copy of the payload bytes.
fn payload_paths(image: &Path, work: &Path) -> Vec<String> {
    let read = ramkey_image::read::open(image).unwrap();
    let bytes = fs::read(image).unwrap();
    // Named after the image: tests running in parallel share `work`.
    let stem = image.file_stem().unwrap().to_string_lossy();
    let payload = work.join(format!("{stem}.payload.sqfs"));
    fs::write(&payload, &bytes[..read.footer.payload_size as usize]).unwrap();
    squashfs::list(&payload)
        .unwrap()
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn files_personality_is_reproducible_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key(dir.path(), 1);
    let p = hello(dir.path());
    let a = build::build(&p, &options(&dir.path().join("a"), &secret, None)).unwrap();
    let b = build::build(&p, &options(&dir.path().join("b"), &secret, None)).unwrap();
    assert!(!a.cached && !b.cached);
    assert_eq!(a.image.file_name().unwrap(), "hello-0.1.0.rkimg");
    let bytes = fs::read(&a.image).unwrap();
    assert_eq!(bytes, fs::read(&b.image).unwrap(), "two builds differ");

    let image = ramkey_image::read::open(&a.image).unwrap();
    let trusted = [keys::read_public_file(&public).unwrap()];
    let verified = ramkey_image::verify::verify(image, &trusted, &platform()).unwrap();
    let m = verified.manifest();
    assert_eq!(
        (m.name.as_str(), m.version.as_str(), m.created),
        ("hello", "0.1.0", EPOCH)
    );
    assert_eq!(m.uuid, derive_uuid("hello", "0.1.0", &m.payload.sha256));
    assert_eq!(m.builder_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.volumes[0].path, "/var/lib/hello");
    let health = m.services[0].health.as_ref().map(|h| &h.check);
    assert!(matches!(health, Some(Check::Exec { argv }) if argv[0] == "/usr/bin/hello"));
    assert_eq!(verified.image().footer.payload_size, m.payload.size);

    let paths = payload_paths(&a.image, dir.path());
    for want in ["/usr/bin/hello", "/etc/hello.conf", "/etc/hello.link"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in {paths:?}");
    }
}

#[test]
fn cache_answers_unchanged_inputs_only() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = key(dir.path(), 2);
    let (other, _) = key(dir.path(), 3);
    let p = hello(dir.path());
    let cache = Some(dir.path().join("cache"));
    let first = build::build(&p, &options(&dir.path().join("o1"), &secret, cache.clone())).unwrap();
    let second = build::build(&p, &options(&dir.path().join("o2"), &secret, cache.clone())).unwrap();
    assert!(!first.cached && second.cached);
    assert_eq!(fs::read(&first.image).unwrap(), fs::read(&second.image).unwrap());
    // Another key, or a changed file, is another image.
    let signed = build::build(&p, &options(&dir.path().join("o3"), &other, cache.clone())).unwrap();
    assert!(!signed.cached);
    fs::write(p.join("files/etc/hello.conf"), "greeting = bye\n").unwrap();
    let changed = build::build(&p, &options(&dir.path().join("o4"), &secret, cache)).unwrap();
    assert!(!changed.cached);
    assert_ne!(changed.cache_key, first.cache_key);
}

#[test]
fn missing_service_program_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, _) = key(dir.path(), 4);
    let p = hello(dir.path());
    fs::remove_file(p.join("files/usr/bin/hello")).unwrap();
    let e = build::build(&p, &options(&dir.path().join("o"), &secret, None)).unwrap_err();
    assert!(e.to_string().contains("/usr/bin/hello"), "{e}");
}

fn ramkey(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ramkey"))
        .args(args)
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .env("RAMKEY_CACHE_DIR", cwd.join("cache"))
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_keygen_build_inspect_verify_list() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hello(d);
    let o = ramkey(&["keygen", "--out", "keys/test"], d);
    assert!(o.status.success(), "{}", text(&o));
    let id = keys::KeyId::of(&keys::read_public_file(&d.join("keys/test.pub")).unwrap()).to_string();
    assert!(text(&o).contains(&id));
    let o = ramkey(&["keygen", "--out", "keys/test"], d);
    assert!(!o.status.success(), "keygen overwrote a key");
    let o = ramkey(&["keygen", "--out", "keys/other"], d);
    assert!(o.status.success(), "{}", text(&o));

    let o = ramkey(
        &["image", "build", "hello", "--key", "keys/test.secret", "--out", "imgs"],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.join("imgs/hello-0.1.0.rkimg").is_file());
    let o = ramkey(
        &["image", "build", "hello", "--key", "keys/test.secret", "--out", "imgs"],
        d,
    );
    assert!(text(&o).contains("from cache"), "{}", text(&o));

    let o = ramkey(&["image", "inspect", "imgs/hello-0.1.0.rkimg"], d);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "hello 0.1.0",
        &id,
        "payload:",
        "volume:       data at /var/lib/hello",
        "health:       hello: exec /usr/bin/hello --check",
    ] {
        assert!(t.contains(want), "inspect lacks {want:?}:\n{t}");
    }
    let o = ramkey(&["image", "inspect", "--manifest", "imgs/hello-0.1.0.rkimg"], d);
    assert!(text(&o).starts_with("format_version = 1"), "{}", text(&o));

    let o = ramkey(
        &["image", "verify", "imgs/hello-0.1.0.rkimg", "--key", "keys/test.pub"],
        d,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("OK"), "{}", text(&o));
    let o = ramkey(
        &["image", "verify", "imgs/hello-0.1.0.rkimg", "--key", "keys/other.pub"],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not trusted"), "{}", text(&o));
    let o = ramkey(
        &[
            "image",
            "verify",
            "imgs/hello-0.1.0.rkimg",
            "--key",
            "keys/test.pub",
            "--platform",
            "0.0.1",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // A changed payload byte: the digest no longer matches the signed manifest.
    let mut bytes = fs::read(d.join("imgs/hello-0.1.0.rkimg")).unwrap();
    bytes[200] ^= 0xff;
    fs::write(d.join("imgs/bad.rkimg"), bytes).unwrap();
    let o = ramkey(&["image", "verify", "imgs/bad.rkimg", "--key", "keys/test.pub"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("sha256 mismatch"), "{}", text(&o));

    let o = ramkey(&["image", "list", "imgs"], d);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let line = t.lines().find(|l| l.contains("hello-0.1.0.rkimg")).unwrap();
    assert!(
        line.starts_with("hello") && line.contains("0.1.0") && line.contains(&id),
        "{t}"
    );
    let size = fs::metadata(d.join("imgs/hello-0.1.0.rkimg"))
        .unwrap()
        .len()
        .to_string();
    assert!(line.contains(&size), "{t}");
}

/// Builds the real `web` personality with mmdebstrap (needs root and the Debian archive; a
/// few minutes cold, cached under target/tmp afterwards).
#[test]
fn web_personality_has_nginx_and_its_health_check() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-build");
    fs::create_dir_all(&tmp).unwrap();
    let (secret, public) = key(&tmp, 7);
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../personalities/web");
    let mut opts = options(&tmp.join("out"), &secret, Some(tmp.join("cache")));
    opts.progress = true;
    let report = build::build(&web, &opts).unwrap();
    eprintln!("{report}");
    let image = ramkey_image::read::open(&report.image).unwrap();
    let trusted = [keys::read_public_file(&public).unwrap()];
    let verified = ramkey_image::verify::verify(image, &trusted, &platform()).unwrap();
    let m = verified.manifest();
    assert_eq!(m.name, "web");
    let nginx = m.services.iter().find(|s| s.name == "nginx").unwrap();
    assert_eq!(nginx.argv, ["/usr/sbin/nginx", "-g", "daemon off;"]);
    assert!(
        matches!(&nginx.health.as_ref().map(|h| &h.check), Some(Check::Http { url, expect_status: 200 }) if url == "http://127.0.0.1/")
    );
    assert!(m.volumes.iter().any(|v| v.path == "/srv/www"));
    let paths = payload_paths(&report.image, &tmp);
    for want in [
        "/usr/sbin/nginx",
        "/etc/nginx/nginx.conf",
        "/usr/share/ramkey-web/index.html",
        "/var/lib/dpkg/status",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} not in the web image");
    }
    assert!(
        !paths.iter().any(|p| p.starts_with("/usr/share/man/")),
        "manuals in the image"
    );
    assert!(
        !paths
            .iter()
            .any(|p| p.starts_with("/var/lib/apt/lists/") && !p.ends_with("lock") && !p.ends_with("partial"))
    );
    assert!(report.entry.packages > 10, "{report}");
}

/// Builds `personalities/NAME`, verifies it, and returns its manifest and payload paths.
fn build_and_read(name: &str) -> (ramkey_image::manifest::Manifest, Vec<String>) {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-build");
    fs::create_dir_all(&tmp).unwrap();
    let (secret, public) = key(&tmp, 7);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../personalities")
        .join(name);
    let report = build::build(&dir, &options(&tmp.join("out"), &secret, Some(tmp.join("cache")))).unwrap();
    eprintln!("{report}");
    let image = ramkey_image::read::open(&report.image).unwrap();
    let trusted = [keys::read_public_file(&public).unwrap()];
    let verified = ramkey_image::verify::verify(image, &trusted, &platform()).unwrap();
    (verified.manifest().clone(), payload_paths(&report.image, &tmp))
}

/// The `office` personality (dnsmasq from Debian) builds, verifies and holds its programs.
#[test]
fn office_personality_has_dnsmasq_and_its_settings() {
    let (m, paths) = build_and_read("office");
    assert_eq!(m.name, "office");
    assert!(m.services.iter().any(|s| s.name == "dnsmasq"));
    assert!(m.settings.iter().any(|s| s.name == "dhcp-start"));
    for want in ["/usr/sbin/dnsmasq", "/usr/local/sbin/ramkey-office-start"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in the office image");
    }
}

/// The `kv` personality (redis from Debian) builds, verifies and holds its programs.
#[test]
fn kv_personality_has_redis_and_its_volume() {
    let (m, paths) = build_and_read("kv");
    assert_eq!(m.name, "kv");
    assert!(m.services.iter().any(|s| s.name == "redis"));
    assert!(m.volumes.iter().any(|v| v.name == "data"));
    for want in ["/usr/bin/redis-server", "/usr/local/sbin/ramkey-kv-start"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in the kv image");
    }
}

#[test]
fn vm_builds_share_the_cached_payload_under_their_own_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (secret, public) = key(dir.path(), 9);
    let p = hello(dir.path());
    let shape = fs::read_to_string(p.join("personality.toml")).unwrap() + "\n[vm]\nvcpus = 2\nmemory_mib = 160\n";
    fs::write(p.join("personality.toml"), shape).unwrap();
    let cache = Some(dir.path().join("cache"));
    let zone = build::build(&p, &options(&dir.path().join("zone"), &secret, cache.clone())).unwrap();
    let mut vm_opts = options(&dir.path().join("vm"), &secret, cache);
    vm_opts.vm = true;
    let vm = build::build(&p, &vm_opts).unwrap();
    assert!(vm.cached, "the --vm build reuses the zone build's payload");

    let trusted = [keys::read_public_file(&public).unwrap()];
    let open = |image: &Path| {
        let read = ramkey_image::read::open(image).unwrap();
        ramkey_image::verify::verify(read, &trusted, &platform())
            .unwrap()
            .manifest()
            .clone()
    };
    let (z, v) = (open(&zone.image), open(&vm.image));
    assert_eq!(z.runtime, ramkey_image::runtime::Runtime::Zone);
    assert_eq!(v.runtime, ramkey_image::runtime::Runtime::Vm);
    assert_eq!((v.vm.vcpus, v.vm.memory_mib), (2, 160));
    assert!(
        !z.to_toml().unwrap().contains("[vm]"),
        "a zone's manifest leaves [vm] out"
    );
    assert_eq!(z.payload, v.payload);
}
