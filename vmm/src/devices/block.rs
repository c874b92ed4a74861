//! virtio-blk (virtio 1.x, 5.2) backed by a file: one request queue; requests IN, OUT,
//! FLUSH and GET_ID. A read-only disk is opened read-only, offers `VIRTIO_BLK_F_RO`, and
//! fails every OUT with `VIRTIO_BLK_S_IOERR`. The request header, the sector and the
//! buffers' addresses and lengths come from the guest: a request outside the disk or the
//! guest's memory fails with IOERR (or, with no status byte to write, is returned unused).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use virtio_queue::{DescriptorChain, Queue, QueueT, Reader, Writer};
use vm_memory::GuestMemoryMmap;

use super::virtio_mmio::{VIRTIO_F_VERSION_1, VirtioDevice};

/// The virtio device id of a block device.
pub const DEVICE_TYPE: u32 = 2;
/// Feature bits (virtio 1.x, 5.2.3).
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Request types.
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Request status.
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

pub const SECTOR_SIZE: u64 = 512;
/// The one queue's size, and the segments a request may have (two go to header and status).
const QUEUE_SIZE: u16 = 256;
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// The length of a GET_ID answer.
const ID_LEN: usize = 20;
/// Data moves between the file and guest memory in pieces of this size.
const CHUNK: usize = 64 * 1024;

/// A disk that cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("disk {path}: {source}")]
pub struct DiskError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A virtio-blk device over a file.
pub struct Block {
    file: File,
    read_only: bool,
    sectors: u64,
    id: [u8; ID_LEN],
    buf: Vec<u8>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("read_only", &self.read_only)
            .field("sectors", &self.sectors)
            .finish()
    }
}

impl Block {
    /// Opens the backing file (read-only for a read-only disk); `id` is what GET_ID answers
    /// (at most 20 bytes are kept). The disk has the file's whole 512-byte sectors.
    pub fn open(path: &Path, read_only: bool, id: &str) -> Result<Block, DiskError> {
        let err = |source| DiskError {
            path: path.into(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        let mut bytes = [0u8; ID_LEN];
        let n = id.len().min(ID_LEN);
        bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Block {
            file,
            read_only,
            sectors: size / SECTOR_SIZE,
            id: bytes,
            buf: vec![0; CHUNK],
        })
    }

    /// The byte range `[start, start + len)` of a request at `sector`, if it lies on the disk.
    fn range(&self, sector: u64, len: usize) -> Option<u64> {
        let start = sector.checked_mul(SECTOR_SIZE)?;
        let end = start.checked_add(len as u64)?;
        (end <= self.sectors * SECTOR_SIZE).then_some(start)
    }

    fn read(&mut self, sector: u64, data: &mut Writer<'_>) -> std::io::Result<()> {
        let len = data.available_bytes();
        let start = self.range(sector, len).ok_or(std::io::ErrorKind::InvalidInput)?;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            self.file.read_exact_at(&mut self.buf[..n], start + done as u64)?;
            data.write_all(&self.buf[..n])?;
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &mut Reader<'_>) -> std::io::Result<()> {
        if self.read_only {
            return Err(std::io::ErrorKind::ReadOnlyFilesystem.into());
        }
        let len = data.available_bytes();
        let start = self.range(sector, len).ok_or(std::io::ErrorKind::InvalidInput)?;
        let mut done = 0;
        while done < len {
            let n = CHUNK.min(len - done);
            data.read_exact(&mut self.buf[..n])?;
            self.file.write_all_at(&self.buf[..n], start + done as u64)?;
            done += n;
        }
        Ok(())
    }

    /// Runs one request; the number of bytes it wrote into guest memory (the used length).
    fn execute(&mut self, chain: DescriptorChain<&GuestMemoryMmap>, mem: &GuestMemoryMmap) -> u32 {
        let (Ok(mut reader), Ok(mut writer)) = (chain.clone().reader(mem), chain.writer(mem)) else {
            return 0;
        };
        let mut header = [0u8; 16];
        let Some(last) = writer.available_bytes().checked_sub(1) else {
            return 0;
        };
        let Ok(mut status) = writer.split_at(last) else {
            return 0;
        };
        let result = if reader.read_exact(&mut header).is_err() {
            Err(std::io::ErrorKind::InvalidInput.into())
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let sector = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
            ]);
            match kind {
                VIRTIO_BLK_T_IN => self.read(sector, &mut writer).map(|()| VIRTIO_BLK_S_OK),
                VIRTIO_BLK_T_OUT => self.write(sector, &mut reader).map(|()| VIRTIO_BLK_S_OK),
                VIRTIO_BLK_T_FLUSH if self.read_only => Ok(VIRTIO_BLK_S_OK),
                VIRTIO_BLK_T_FLUSH => self.file.sync_data().map(|()| VIRTIO_BLK_S_OK),
                VIRTIO_BLK_T_GET_ID => {
                    let n = ID_LEN.min(writer.available_bytes());
                    writer.write_all(&self.id[..n]).map(|()| VIRTIO_BLK_S_OK)
                }
                _ => Ok(VIRTIO_BLK_S_UNSUPP),
            }
        };
        let code = result.unwrap_or(VIRTIO_BLK_S_IOERR);
        let written = writer.bytes_written() + usize::from(status.write_all(&[code]).is_ok());
        written as u32
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_FLUSH | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    /// `struct virtio_blk_config`: the capacity in sectors, then `size_max` (0: no limit)
    /// and `seg_max`; the rest (geometry, block size, ...) is zero and not offered.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; 0x40];
        config[..8].copy_from_slice(&self.sectors.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        let start = (offset as usize).min(config.len());
        let end = start.saturating_add(data.len()).min(config.len());
        data.fill(0);
        data[..end - start].copy_from_slice(&config[start..end]);
    }

    fn process(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, virtio_queue::Error> {
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let len = self.execute(chain, mem);
            queue.add_used(mem, head, len)?;
            used = true;
        }
        Ok(used)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const NEXT: u16 = 1;
    const WRITE: u16 = 2;
    const HEADER: u64 = 0x1_0000;
    const DATA: u64 = 0x2_0000;
    const STATUS: u64 = 0x3_0000;

    pub(crate) fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    /// A disk file of `sectors` sectors, sector `i` filled with byte `i`.
    pub(crate) fn disk_file(name: &str, sectors: u8) -> PathBuf {
        let path = std::env::temp_dir().join(format!("ramkey-vmm-{name}-{}", std::process::id()));
        let bytes: Vec<u8> = (0..sectors).flat_map(|i| [i; SECTOR_SIZE as usize]).collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Runs one request (header, then `data` of `len` bytes unless 0, then the status byte)
    /// and returns the status and the used length.
    fn request(block: &mut Block, mem: &GuestMemoryMmap, kind: u32, sector: u64, len: u32, write: bool) -> (u8, u32) {
        let mut header = [0u8; 16];
        header[..4].copy_from_slice(&kind.to_le_bytes());
        header[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut descs = vec![(HEADER, 16, 0)];
        if len > 0 {
            descs.push((DATA, len, if write { 0 } else { WRITE }));
        }
        descs.push((STATUS, 1, WRITE));
        let n = descs.len();
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let next = if i + 1 < n { NEXT } else { 0 };
                RawDescriptor::from(Descriptor::new(addr, len, flags | next, i as u16 + 1))
            })
            .collect();
        let mock = MockSplitQueue::create(mem, GuestAddress(0x8000), 16);
        mock.add_desc_chains(&raw, 0).unwrap();
        let mut queue: Queue = mock.create_queue().unwrap();
        assert!(block.process(0, &mut queue, mem).unwrap());
        let used_len: u32 = mem.read_obj(mock.used_addr().unchecked_add(8)).unwrap();
        (mem.read_obj(GuestAddress(STATUS)).unwrap(), used_len)
    }

    use vm_memory::Address;

    #[test]
    fn reads_writes_flushes_and_ids_reach_the_file() {
        let path = disk_file("rw", 8);
        let mem = memory();
        let mut block = Block::open(&path, false, "ramkey-disk1").unwrap();
        assert_eq!(block.features() & VIRTIO_BLK_F_RO, 0);
        let (status, used) = request(&mut block, &mem, VIRTIO_BLK_T_IN, 2, 1024, false);
        assert_eq!((status, used), (VIRTIO_BLK_S_OK, 1025));
        let mut data = [0u8; 1024];
        mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        assert!(data[..512].iter().all(|b| *b == 2) && data[512..].iter().all(|b| *b == 3));

        mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
        let (status, used) = request(&mut block, &mem, VIRTIO_BLK_T_OUT, 7, 512, true);
        assert_eq!((status, used), (VIRTIO_BLK_S_OK, 1));
        assert_eq!(
            request(&mut block, &mem, VIRTIO_BLK_T_FLUSH, 0, 0, false).0,
            VIRTIO_BLK_S_OK
        );
        let file = std::fs::read(&path).unwrap();
        assert!(file[7 * 512..].iter().all(|b| *b == 0xab) && file[6 * 512] == 6);

        let (status, used) = request(&mut block, &mem, VIRTIO_BLK_T_GET_ID, 0, 20, false);
        assert_eq!((status, used), (VIRTIO_BLK_S_OK, 21));
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id[..13], b"ramkey-disk1\0");
        assert_eq!(request(&mut block, &mem, 99, 0, 0, false).0, VIRTIO_BLK_S_UNSUPP);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_read_only_disk_refuses_writes_and_says_so() {
        let path = disk_file("ro", 4);
        let mem = memory();
        let mut block = Block::open(&path, true, "ro").unwrap();
        assert_ne!(block.features() & VIRTIO_BLK_F_RO, 0);
        let (status, used) = request(&mut block, &mem, VIRTIO_BLK_T_OUT, 0, 512, true);
        assert_eq!((status, used), (VIRTIO_BLK_S_IOERR, 1));
        assert_eq!(std::fs::read(&path).unwrap()[0], 0, "the file is untouched");
        assert_eq!(
            request(&mut block, &mem, VIRTIO_BLK_T_IN, 3, 512, false).0,
            VIRTIO_BLK_S_OK
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn requests_outside_the_disk_or_memory_fail_without_a_panic() {
        let path = disk_file("bounds", 4);
        let mem = memory();
        let mut block = Block::open(&path, false, "b").unwrap();
        // Past the end, straddling the end, and a sector whose byte offset overflows.
        for (sector, len) in [(4, 512), (3, 1024), (u64::MAX / 2, 512)] {
            assert_eq!(
                request(&mut block, &mem, VIRTIO_BLK_T_IN, sector, len, false).0,
                VIRTIO_BLK_S_IOERR
            );
            assert_eq!(
                request(&mut block, &mem, VIRTIO_BLK_T_OUT, sector, len, true).0,
                VIRTIO_BLK_S_IOERR
            );
        }
        // A data buffer beyond guest memory: the chain is refused and returned unused.
        let (status, used) = request(&mut block, &mem, VIRTIO_BLK_T_IN, 0, u32::MAX, false);
        assert_eq!((status, used), (0xff, 0));
        // The configuration space: 4 sectors, seg_max 254; reads past it are zeros.
        let mut capacity = [0u8; 8];
        block.read_config(0, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 4);
        let mut word = [0u8; 4];
        block.read_config(12, &mut word);
        assert_eq!(u32::from_le_bytes(word), 254);
        block.read_config(0x3e, &mut word);
        block.read_config(u64::MAX, &mut word);
        assert_eq!(word, [0; 4]);
        let _ = std::fs::remove_file(&path);
    }
}
