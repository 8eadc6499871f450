//! The section table: kind, offset, length and CRC32 of every section.
//! Layout: `format-spec/graph-file.md`, "Section table".

use super::graph_header::{SECTION_ENTRY, SECTION_TABLE};
use super::{rd_u32, rd_u64, wr_u32, wr_u64};

/// What a section holds. Codes are stable across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum SectionKind {
    /// Quantizer parameters: int8 `lo` then `scale` (`padded_dim` f32
    /// each); product quantization codebooks (`256 × dim` f32); binary
    /// centre (`padded_dim` f32).
    QuantParams = 1,
    /// Quantized codes, `count × code_stride` bytes in ordinal order.
    Codes = 2,
    /// `‖x̂‖²` of each code's reconstruction, `count` f32.
    CodeNorms = 3,
    /// Number of nodes on each level `0..=max_level`, u32 each.
    LevelCounts = 4,
    /// Level-0 adjacency, `count × (1 + m0)` u32: `[n, ids…, padding]`.
    LinksLevel0 = 5,
    /// Upper-level adjacency, level 1 first, `level_count[l] × (1 + m)` u32 per level.
    LinksUpper = 6,
    /// External id of each ordinal, `count` u64.
    OrdinalToId = 7,
    /// `(id u64, ordinal u64)` pairs sorted by id, for binary search.
    IdToOrdinal = 8,
    /// Per-vector factors, `count × 2` f32: binary codes' `(α, ‖x‖²)`
    /// (version 2), LVQ codes' `(lo, step)` (version 5).
    BinaryFactors = 9,
    /// LVQ-4x8's 8-bit residual codes, `count × padded` u8 (version 5).
    ResidualCodes = 10,
    /// Every vector's labels as an inverted list per label (version 6;
    /// layout in `format/labels.rs`).
    Labels = 11,
}

impl SectionKind {
    /// All kinds known to this version.
    pub const ALL: [SectionKind; 11] = [
        SectionKind::QuantParams,
        SectionKind::Codes,
        SectionKind::CodeNorms,
        SectionKind::LevelCounts,
        SectionKind::LinksLevel0,
        SectionKind::LinksUpper,
        SectionKind::OrdinalToId,
        SectionKind::IdToOrdinal,
        SectionKind::BinaryFactors,
        SectionKind::ResidualCodes,
        SectionKind::Labels,
    ];

    /// The kind for a table code, if known.
    pub fn from_code(code: u32) -> Option<SectionKind> {
        Self::ALL.into_iter().find(|k| *k as u32 == code)
    }

    /// A short name for tools and error messages.
    pub fn name(self) -> &'static str {
        match self {
            SectionKind::QuantParams => "quant_params",
            SectionKind::Codes => "codes",
            SectionKind::CodeNorms => "code_norms",
            SectionKind::LevelCounts => "level_counts",
            SectionKind::LinksLevel0 => "links_level0",
            SectionKind::LinksUpper => "links_upper",
            SectionKind::OrdinalToId => "ordinal_to_id",
            SectionKind::IdToOrdinal => "id_to_ordinal",
            SectionKind::BinaryFactors => "binary_factors",
            SectionKind::ResidualCodes => "residual_codes",
            SectionKind::Labels => "labels",
        }
    }
}

/// Flag bit: a reader that does not know this section's kind may skip it.
pub(crate) const FLAG_OPTIONAL: u32 = 1;

/// One section table entry as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionEntry {
    /// Kind code (see [`SectionKind`]).
    pub kind: u32,
    /// Flag bits (bit 0: optional).
    pub flags: u32,
    /// Byte offset from the start of the file (a multiple of 4096).
    pub offset: u64,
    /// Length in bytes (without padding).
    pub len: u64,
    /// CRC32 of the section's `len` bytes.
    pub crc: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl SectionEntry {
    pub(crate) fn encode(&self, page: &mut [u8], i: usize) {
        let o = SECTION_TABLE + i * SECTION_ENTRY;
        wr_u32(page, o, self.kind);
        wr_u32(page, o + 4, self.flags);
        wr_u64(page, o + 8, self.offset);
        wr_u64(page, o + 16, self.len);
        wr_u32(page, o + 24, self.crc);
        wr_u32(page, o + 28, self.reserved);
    }

    /// Caller ensures the table entry lies within page 0.
    pub(crate) fn decode(page: &[u8], i: usize) -> SectionEntry {
        let o = SECTION_TABLE + i * SECTION_ENTRY;
        SectionEntry {
            kind: rd_u32(page, o),
            flags: rd_u32(page, o + 4),
            offset: rd_u64(page, o + 8),
            len: rd_u64(page, o + 16),
            crc: rd_u32(page, o + 24),
            reserved: rd_u32(page, o + 28),
        }
    }
}
