//! The graph file header (page 0, bytes 0..256) and its checksum.
//! Layout: `format-spec/graph-file.md`, "Header".

use super::{rd_u128, rd_u32, rd_u64, wr_u128, wr_u32, wr_u64};
use super::{FORMAT_VERSION, GRAPH_MAGIC, OLDEST_SUPPORTED_VERSION, PAGE};
use crate::error::{Error, FileKind, Result};

pub(crate) const OFF_VERSION: usize = 8;
pub(crate) const OFF_FLAGS: usize = 12;
pub(crate) const OFF_DIM: usize = 16;
pub(crate) const OFF_PADDED_DIM: usize = 20;
pub(crate) const OFF_METRIC: usize = 24;
pub(crate) const OFF_ELEMENT: usize = 28;
pub(crate) const OFF_COUNT: usize = 32;
pub(crate) const OFF_M: usize = 40;
pub(crate) const OFF_M0: usize = 44;
pub(crate) const OFF_EF_CONSTRUCTION: usize = 48;
pub(crate) const OFF_MAX_LEVEL: usize = 52;
pub(crate) const OFF_ENTRY: usize = 56;
pub(crate) const OFF_QUANT: usize = 60;
pub(crate) const OFF_CODE_STRIDE: usize = 64;
pub(crate) const OFF_SECTION_COUNT: usize = 68;
pub(crate) const OFF_SEED: usize = 72;
pub(crate) const OFF_BUILD_ID: usize = 80;
pub(crate) const OFF_FILE_LEN: usize = 96;
/// Quantizer parameter (version 2): `m` for product quantization, else 0.
pub(crate) const OFF_QUANT_PARAM: usize = 104;
pub(crate) const OFF_HEADER_CRC: usize = 252;
/// Header bytes reserved for later versions; written as zero, checked zero.
pub(crate) const RESERVED: std::ops::Range<usize> = OFF_QUANT_PARAM + 4..OFF_HEADER_CRC;
/// The section table starts here, right after the 256-byte header.
pub(crate) const SECTION_TABLE: usize = 256;
/// Bytes per section table entry.
pub(crate) const SECTION_ENTRY: usize = 32;
/// The table must fit in page 0.
pub(crate) const MAX_SECTIONS: usize = (PAGE - SECTION_TABLE) / SECTION_ENTRY;

/// The graph file header, as raw header fields (validated in `layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphHeader {
    pub version: u32,
    pub flags: u32,
    pub dim: u32,
    pub padded_dim: u32,
    pub metric: u32,
    pub element: u32,
    pub count: u64,
    pub m: u32,
    pub m0: u32,
    pub ef_construction: u32,
    pub max_level: u32,
    pub entry: u32,
    pub quant: u32,
    pub code_stride: u32,
    pub section_count: u32,
    pub seed: u64,
    pub build_id: u128,
    pub file_len: u64,
    pub quant_param: u32,
}

impl GraphHeader {
    /// Writes the header fields into page 0 (the CRC is filled by [`seal`]).
    pub(crate) fn encode(&self, page: &mut [u8]) {
        page[..8].copy_from_slice(&GRAPH_MAGIC);
        wr_u32(page, OFF_VERSION, self.version);
        wr_u32(page, OFF_FLAGS, self.flags);
        wr_u32(page, OFF_DIM, self.dim);
        wr_u32(page, OFF_PADDED_DIM, self.padded_dim);
        wr_u32(page, OFF_METRIC, self.metric);
        wr_u32(page, OFF_ELEMENT, self.element);
        wr_u64(page, OFF_COUNT, self.count);
        wr_u32(page, OFF_M, self.m);
        wr_u32(page, OFF_M0, self.m0);
        wr_u32(page, OFF_EF_CONSTRUCTION, self.ef_construction);
        wr_u32(page, OFF_MAX_LEVEL, self.max_level);
        wr_u32(page, OFF_ENTRY, self.entry);
        wr_u32(page, OFF_QUANT, self.quant);
        wr_u32(page, OFF_CODE_STRIDE, self.code_stride);
        wr_u32(page, OFF_SECTION_COUNT, self.section_count);
        wr_u64(page, OFF_SEED, self.seed);
        wr_u128(page, OFF_BUILD_ID, self.build_id);
        wr_u64(page, OFF_FILE_LEN, self.file_len);
        wr_u32(page, OFF_QUANT_PARAM, self.quant_param);
    }

    /// Reads and checks magic, version, section count and header CRC.
    pub(crate) fn decode(file: &[u8]) -> Result<GraphHeader> {
        let g = FileKind::Graph;
        if file.len() < 8 {
            return Err(Error::corrupt(
                g,
                "file length",
                "at least one 4096-byte header page",
                format!("{} bytes (truncated)", file.len()),
            ));
        }
        let magic: [u8; 8] = file[..8].try_into().expect("8 bytes");
        if magic != GRAPH_MAGIC {
            return Err(Error::BadMagic {
                file: g,
                found: magic,
            });
        }
        if file.len() < PAGE {
            return Err(Error::corrupt(
                g,
                "file length",
                "at least one 4096-byte header page",
                format!("{} bytes (truncated)", file.len()),
            ));
        }
        let version = rd_u32(file, OFF_VERSION);
        if !(OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::UnsupportedVersion {
                file: g,
                found: version,
                oldest: OLDEST_SUPPORTED_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        let section_count = rd_u32(file, OFF_SECTION_COUNT);
        if section_count as usize > MAX_SECTIONS {
            return Err(Error::corrupt(
                g,
                "header field section_count",
                format!("at most {MAX_SECTIONS}"),
                section_count,
            ));
        }
        let stored = rd_u32(file, OFF_HEADER_CRC);
        let computed = header_crc(file, section_count as usize);
        if stored != computed {
            return Err(Error::ChecksumMismatch {
                file: g,
                what: "header and section table".into(),
                stored,
                computed,
            });
        }
        Ok(GraphHeader {
            version,
            flags: rd_u32(file, OFF_FLAGS),
            dim: rd_u32(file, OFF_DIM),
            padded_dim: rd_u32(file, OFF_PADDED_DIM),
            metric: rd_u32(file, OFF_METRIC),
            element: rd_u32(file, OFF_ELEMENT),
            count: rd_u64(file, OFF_COUNT),
            m: rd_u32(file, OFF_M),
            m0: rd_u32(file, OFF_M0),
            ef_construction: rd_u32(file, OFF_EF_CONSTRUCTION),
            max_level: rd_u32(file, OFF_MAX_LEVEL),
            entry: rd_u32(file, OFF_ENTRY),
            quant: rd_u32(file, OFF_QUANT),
            code_stride: rd_u32(file, OFF_CODE_STRIDE),
            section_count,
            seed: rd_u64(file, OFF_SEED),
            build_id: rd_u128(file, OFF_BUILD_ID),
            file_len: rd_u64(file, OFF_FILE_LEN),
            quant_param: rd_u32(file, OFF_QUANT_PARAM),
        })
    }
}

/// CRC32 of header bytes `[0, 252)` followed by the section table
/// `[256, 256 + 32 * section_count)`. Caller ensures `page.len() >= PAGE`
/// and `section_count <= MAX_SECTIONS`.
pub(crate) fn header_crc(page: &[u8], section_count: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&page[..OFF_HEADER_CRC]);
    h.update(&page[SECTION_TABLE..SECTION_TABLE + SECTION_ENTRY * section_count]);
    h.finalize()
}

/// Fills in the header CRC once header and section table are written.
pub(crate) fn seal(page: &mut [u8], section_count: usize) {
    let crc = header_crc(page, section_count);
    wr_u32(page, OFF_HEADER_CRC, crc);
}
