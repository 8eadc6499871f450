//! The vectors file header (page 0, bytes 0..128).
//! Layout: `format-spec/vectors-file.md`.

use super::{rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64};
use super::{FORMAT_VERSION, OLDEST_SUPPORTED_VERSION, PAGE, VECTORS_MAGIC};
use crate::error::{Error, FileKind, Result};

const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 12;
const OFF_DIM: usize = 16;
const OFF_PADDED_DIM: usize = 20;
const OFF_ELEMENT: usize = 24;
const OFF_COUNT: usize = 32;
const OFF_DATA_OFFSET: usize = 40;
const OFF_DATA_LEN: usize = 48;
const OFF_DATA_CRC: usize = 56;
const OFF_BUILD_ID: usize = 64;
const OFF_HEADER_CRC: usize = 124;
/// End of the header (its CRC field included); the rest of page 0 is zero padding.
pub(crate) const HEADER_END: usize = OFF_HEADER_CRC + 4;
/// Header bytes reserved for later versions; written as zero, checked zero.
const RESERVED: [std::ops::Range<usize>; 3] = [28..32, 60..64, 80..124];

/// The vectors file header fields (validated against the graph in `layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VectorsHeader {
    pub version: u32,
    pub flags: u32,
    pub dim: u32,
    pub padded_dim: u32,
    pub element: u32,
    pub count: u64,
    pub data_offset: u64,
    pub data_len: u64,
    pub data_crc: u32,
    pub build_id: u128,
}

impl VectorsHeader {
    /// Writes the header and its CRC into page 0.
    pub(crate) fn encode(&self, page: &mut [u8]) {
        page[..8].copy_from_slice(&VECTORS_MAGIC);
        wr_u32(page, OFF_VERSION, self.version);
        wr_u32(page, OFF_FLAGS, self.flags);
        wr_u32(page, OFF_DIM, self.dim);
        wr_u32(page, OFF_PADDED_DIM, self.padded_dim);
        wr_u32(page, OFF_ELEMENT, self.element);
        wr_u64(page, OFF_COUNT, self.count);
        wr_u64(page, OFF_DATA_OFFSET, self.data_offset);
        wr_u64(page, OFF_DATA_LEN, self.data_len);
        wr_u32(page, OFF_DATA_CRC, self.data_crc);
        wr_u128(page, OFF_BUILD_ID, self.build_id);
        let crc = crc32fast::hash(&page[..OFF_HEADER_CRC]);
        wr_u32(page, OFF_HEADER_CRC, crc);
    }

    /// Reads and checks magic, version and header CRC.
    pub(crate) fn decode(file: &[u8]) -> Result<VectorsHeader> {
        let v = FileKind::Vectors;
        let short = |len: usize| {
            Error::corrupt(
                v,
                "file length",
                "at least one 4096-byte header page",
                format!("{len} bytes (truncated)"),
            )
        };
        if file.len() < 8 {
            return Err(short(file.len()));
        }
        let magic: [u8; 8] = file[..8].try_into().expect("8 bytes");
        if magic != VECTORS_MAGIC {
            return Err(Error::BadMagic {
                file: v,
                found: magic,
            });
        }
        if file.len() < PAGE {
            return Err(short(file.len()));
        }
        let version = rd_u32(file, OFF_VERSION);
        if !(OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                file: v,
                found: version,
                oldest: OLDEST_SUPPORTED_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        let stored = rd_u32(file, OFF_HEADER_CRC);
        let computed = crc32fast::hash(&file[..OFF_HEADER_CRC]);
        if stored != computed {
            return Err(Error::ChecksumMismatch {
                file: v,
                what: "header".into(),
                stored,
                computed,
            });
        }
        for range in RESERVED {
            if let Some(i) = file[range.clone()].iter().position(|b| *b != 0) {
                let at = range.start + i;
                return Err(Error::corrupt(
                    v,
                    format!("header reserved byte {at}"),
                    0,
                    file[at],
                ));
            }
        }
        Ok(VectorsHeader {
            version,
            flags: rd_u32(file, OFF_FLAGS),
            dim: rd_u32(file, OFF_DIM),
            padded_dim: rd_u32(file, OFF_PADDED_DIM),
            element: rd_u32(file, OFF_ELEMENT),
            count: rd_u64(file, OFF_COUNT),
            data_offset: rd_u64(file, OFF_DATA_OFFSET),
            data_len: rd_u64(file, OFF_DATA_LEN),
            data_crc: rd_u32(file, OFF_DATA_CRC),
            build_id: rd_u128(file, OFF_BUILD_ID),
        })
    }
}
