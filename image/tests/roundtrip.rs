//! Writing an image and reading it back: layout, reproducibility, reading only the trailer.

mod common;

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use common::*;
use ramkey_image::footer::{FOOTER_SIZE, MAGIC};
use ramkey_image::manifest::Manifest;
use ramkey_image::read::{from_reader, open};
use ramkey_image::verify::verify;
use ramkey_image::write::{WriteError, assemble, assemble_file};
use sha2::{Digest, Sha256};

#[test]
fn assembled_image_reads_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, a) = image_bytes();
    assert_eq!(bytes.len() as u64, a.file_size());
    let path = write(dir.path(), &bytes);
    let image = open(&path).unwrap();
    assert_eq!(image.footer, a.footer);
    assert_eq!(image.manifest_bytes, a.manifest_bytes);
    assert_eq!(image.manifest.payload.size, PAYLOAD_SIZE as u64);
    let digest = ramkey_image::footer::hex(&Sha256::digest(payload()));
    assert_eq!(image.manifest.payload.sha256, digest);
    let keys = [other_key().verifying_key(), key().verifying_key()];
    let verified = verify(image, &keys, &platform("0.1.0")).unwrap();
    assert_eq!(verified.manifest().name, "www");
    assert_eq!(verified.key_id().to_string().len(), 16);
}

#[test]
fn layout_is_payload_padding_manifest_signature_footer() {
    let (bytes, a) = image_bytes();
    let f = a.footer;
    assert_eq!(&bytes[..PAYLOAD_SIZE], payload().as_slice());
    assert!(bytes[PAYLOAD_SIZE..8192].iter().all(|&b| b == 0));
    assert_eq!(f.payload_region_size(), 8192);
    assert_eq!(f.manifest_offset, 8192);
    let m = &bytes[8192..8192 + f.manifest_size as usize];
    assert!(std::str::from_utf8(m).unwrap().starts_with("format_version = 1\n"));
    assert_eq!(f.signature_offset, 8192 + f.manifest_size);
    assert_eq!(f.footer_offset() as usize, bytes.len() - FOOTER_SIZE);
    assert_eq!(&bytes[bytes.len() - FOOTER_SIZE..][..8], &MAGIC);
}

#[test]
fn same_inputs_give_same_bytes() {
    assert_eq!(image_bytes().0, image_bytes().0);
}

#[test]
fn manifest_round_trips_through_toml() {
    let m = manifest();
    assert_eq!(Manifest::parse(&m.to_toml().unwrap()).unwrap(), m);
}

/// Records the lowest offset read, to prove the reader stays out of the payload.
struct Spy {
    inner: Cursor<Vec<u8>>,
    lowest_read: u64,
}

impl Read for Spy {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.lowest_read = self.lowest_read.min(self.inner.position());
        self.inner.read(buf)
    }
}

impl Seek for Spy {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn reader_never_touches_the_payload() {
    let (bytes, a) = image_bytes();
    let mut spy = Spy {
        inner: Cursor::new(bytes),
        lowest_read: u64::MAX,
    };
    from_reader(&mut spy, Path::new("spy")).unwrap();
    assert_eq!(spy.lowest_read, a.footer.manifest_offset);
}

#[test]
fn payload_of_exactly_4096_bytes_has_no_padding() {
    let mut p = payload();
    p.truncate(4096);
    p[..96].copy_from_slice(&ramkey_image::squashfs::Superblock::fake(4000));
    let mut out = Vec::new();
    let a = assemble(p.as_slice(), &manifest(), &key(), &mut out).unwrap();
    assert_eq!(a.footer.manifest_offset, 4096);
    let image = from_reader(&mut Cursor::new(out.clone()), Path::new("x")).unwrap();
    let verified =
        ramkey_image::verify::verify_reader(image, Cursor::new(out), &[key().verifying_key()], &platform("1"));
    assert!(verified.is_ok());
}

#[test]
fn assemble_refuses_a_payload_that_is_not_squashfs() {
    let mut out = Vec::new();
    let err = assemble(&[0u8; 5000][..], &manifest(), &key(), &mut out).unwrap_err();
    assert!(err.to_string().contains("squashfs magic"), "{err}");
    let mut p = payload();
    p[..96].copy_from_slice(&ramkey_image::squashfs::Superblock::fake(6000));
    let err = assemble(p.as_slice(), &manifest(), &key(), &mut out).unwrap_err();
    assert!(
        err.to_string()
            .contains("bytes_used (offset 40) is 6000, but the payload is 5000 bytes"),
        "{err}"
    );
}

#[test]
fn assemble_refuses_an_invalid_manifest() {
    let mut m = manifest();
    m.name = "Bad Name".into();
    let err = assemble(payload().as_slice(), &m, &key(), Vec::new()).unwrap_err();
    assert!(matches!(err, WriteError::Manifest { .. }), "{err}");
}

#[test]
fn assemble_file_leaves_nothing_behind_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.squashfs");
    std::fs::write(&bad, b"not squashfs").unwrap();
    let out = dir.path().join("x.rkimg");
    assert!(assemble_file(&bad, &manifest(), &key(), &out).is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let good = dir.path().join("good.squashfs");
    std::fs::write(&good, payload()).unwrap();
    let a = assemble_file(&good, &manifest(), &key(), &out).unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().len(), a.file_size());
    assert!(!dir.path().join("x.rkimg.partial").exists());
}

#[test]
fn docs_example_manifest_is_the_fixture() {
    let doc = include_str!("../../docs/image-format.md");
    let start = doc.find("```toml\n").expect("docs have a toml example") + 8;
    let end = start + doc[start..].find("```").unwrap();
    let fixture = include_str!("fixtures/manifests/good-full.toml");
    let fixture = fixture.split_once('\n').unwrap().1;
    assert_eq!(&doc[start..end], fixture, "docs/image-format.md example drifted");
}
