//! Property tests: the trailer reader and the verifier never panic, whatever the bytes.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::*;
use proptest::prelude::*;
use ramkey_image::footer::{FOOTER_SIZE, Footer};
use ramkey_image::manifest::Manifest;
use ramkey_image::read::from_reader;
use ramkey_image::verify::verify_reader;

fn read_and_verify(bytes: Vec<u8>) {
    let path = Path::new("fuzz.rkimg");
    if let Ok(image) = from_reader(&mut Cursor::new(bytes.clone()), path) {
        let _ = verify_reader(image, Cursor::new(bytes), &[key().verifying_key()], &platform("0.1"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        read_and_verify(bytes);
    }

    #[test]
    fn arbitrary_footers_do_not_panic(raw in proptest::array::uniform32(any::<u8>()),
                                      len in any::<u64>()) {
        let mut f = [0u8; FOOTER_SIZE];
        for (i, b) in f.iter_mut().enumerate() {
            *b = raw[i % 32].wrapping_mul(i as u8);
        }
        f[..8].copy_from_slice(b"RKIMG\0\0\0");
        let _ = Footer::decode(&f, len);
    }

    #[test]
    fn mutated_images_do_not_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        tail_bias in any::<bool>(),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let (mut bytes, a) = image_bytes();
        // Bias half the cases to the trailer, where the reader looks.
        let start = if tail_bias { a.footer.manifest_offset as usize } else { 0 };
        for (at, value) in flips {
            let i = start + at.index(bytes.len() - start);
            bytes[i] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        read_and_verify(bytes);
    }

    #[test]
    fn footer_fields_with_valid_checksum_do_not_panic(
        fields in proptest::collection::vec(any::<u64>(), 6),
    ) {
        let (mut bytes, _) = image_bytes();
        patch_footer(&mut bytes, |f| {
            for (i, v) in fields.iter().enumerate() {
                f[16 + i * 8..24 + i * 8].copy_from_slice(&v.to_le_bytes());
            }
        });
        read_and_verify(bytes);
    }

    #[test]
    fn arbitrary_manifest_text_does_not_panic(text in "\\PC{0,300}") {
        let _ = Manifest::parse(&text);
        let _ = Manifest::parse(&format!("format_version = 1\n{text}"));
    }
}
