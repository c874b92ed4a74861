//! The pool step choosing disks: never the usbkey's, never an ambiguous id or one named
//! twice, and the platform's own probes (blkid, wipefs) asked before any mkfs.

use super::*;

#[test]
fn the_usbkey_disk_is_never_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let usb = "pci0000:00/0000:00:02.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0";
    disk(dir.path(), usb, "sda", "key", &ext4_head(LABEL, true));
    let (state, _, _) = run(dir.path(), None);
    assert!(matches!(state, PoolState::Diskless { .. }));
}

#[test]
fn an_id_matching_two_disks_touches_neither() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "twin", &[]);
    disk(dir.path(), VIRTIO_C, "vdc", "twin", &[]);
    let (state, mounts, mkfs) = run(dir.path(), Some(&pool(&["virtio-twin"], &["virtio-twin"])));
    assert!(mkfs.is_empty() && mounts.is_empty(), "{mkfs:?}");
    let text = state.to_string();
    assert!(
        text.contains("[pool] id virtio-twin matches 2 disks: /dev/vdb (virtio-twin), /dev/vdc (virtio-twin)"),
        "{text}"
    );
}

#[test]
fn one_disk_named_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    disk(dir.path(), VIRTIO_B, "vdb", "a", &[]);
    let mut config = pool(&["virtio-a"], &["virtio-a", "a"]);
    config.filesystem = Filesystem::Btrfs;
    config.mirror = vec!["a".into()];
    let (state, mounts, mkfs) = run(dir.path(), Some(&config));
    assert!(mkfs.is_empty() && mounts.is_empty(), "{mkfs:?}");
    let text = state.to_string();
    assert!(text.contains("virtio-a and a name the same disk /dev/vdb"), "{text}");
}

/// Fake platform tools under `root/sbin`: `mke2fs` leaves a mark, `blkid` and `wipefs` say
/// what they are given (absent when `None`).
fn fake_tools(root: &Path, blkid: Option<(&str, i32)>, wipefs: Option<(&str, i32)>) {
    use std::os::unix::fs::PermissionsExt;
    let sbin = root.join("sbin");
    std::fs::create_dir_all(&sbin).unwrap();
    let mark = root.join("mke2fs-ran");
    let mut scripts = vec![("mke2fs".to_owned(), format!("touch '{}'", mark.display()))];
    for (name, tool) in [("blkid", blkid), ("wipefs", wipefs)] {
        if let Some((out, code)) = tool {
            scripts.push((name.to_owned(), format!("printf '%s' '{out}'; exit {code}")));
        }
    }
    for (name, body) in &scripts {
        let path = sbin.join(name);
        let text = format!("#!/bin/sh\n[ \"$1\" = --ready ] && exit 0\n{body}\n");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Wait out ETXTBSY: a child forked by another test may still hold the file open.
        while let Err(e) = std::process::Command::new(&path).arg("--ready").status() {
            assert_eq!(e.raw_os_error(), Some(nix::libc::ETXTBSY), "{e}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Runs the step with the real tools found under `root` on a blank `vdb`.
fn run_tools(blkid: Option<(&str, i32)>, wipefs: Option<(&str, i32)>) -> (PoolState, bool) {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    disk(r, VIRTIO_B, "vdb", "x", &[]);
    fake_tools(r, blkid, wipefs);
    let mut tools = create::Tools { root: r.to_owned() };
    let (state, _) = run_with(r, Some(&pool(&["virtio-x"], &["virtio-x"])), &mut tools);
    (state, r.join("mke2fs-ran").exists())
}

#[test]
fn the_platforms_probes_are_asked_before_mkfs() {
    let (state, ran) = run_tools(Some(("DEVNAME=/dev/vdb\nPTUUID=1\nPTTYPE=gpt\n", 0)), Some(("", 0)));
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state
            .to_string()
            .contains("a \"gpt\" partition table, as blkid -p says"),
        "{state}"
    );
    let wipefs = "DEVICE OFFSET TYPE UUID LABEL\n/dev/vdb 0x1fe PMBR\n";
    let (state, ran) = run_tools(Some(("", 2)), Some((wipefs, 0)));
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state
            .to_string()
            .contains("a \"PMBR\" signature, as wipefs says (found at offset 510)"),
        "{state}"
    );
    let (state, ran) = run_tools(Some(("", 8)), None);
    assert!(!ran, "mke2fs ran: {state}");
    assert!(state.to_string().contains("ambivalent"), "{state}");
    let (state, ran) = run_tools(Some(("", 4)), None);
    assert!(!ran, "mke2fs ran: {state}");
    assert!(
        state.to_string().contains("blkid -p -o export /dev/vdb failed"),
        "{state}"
    );
    // Nothing found, or no tools at all: the Rust probes alone decide.
    let (state, ran) = run_tools(Some(("", 2)), Some(("", 0)));
    assert!(ran, "{state}");
    let (state, ran) = run_tools(None, None);
    assert!(ran, "{state}");
}
