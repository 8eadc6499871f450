//! Assembling graph and vectors files from their sections.

use super::graph_header::{seal, GraphHeader, MAX_SECTIONS};
use super::sections::{SectionEntry, SectionKind};
use super::vectors_header::VectorsHeader;
use super::{page_align, ELEMENT_F32, FORMAT_VERSION, PAGE};

/// Lays out `sections` after the header page, each at the next page
/// boundary, fills in section table, counts, file length and CRCs, and
/// returns the complete graph file.
pub(crate) fn assemble_graph(
    mut header: GraphHeader,
    sections: &[(SectionKind, &[u8])],
) -> Vec<u8> {
    assert!(
        sections.len() <= MAX_SECTIONS,
        "writer emits a fixed small set of sections"
    );
    let mut entries = Vec::with_capacity(sections.len());
    let mut offset = PAGE as u64;
    for (kind, bytes) in sections {
        entries.push(SectionEntry {
            kind: *kind as u32,
            flags: 0,
            offset,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
            reserved: 0,
        });
        offset = page_align(offset + bytes.len() as u64).expect("in-memory sizes fit in u64");
    }
    header.version = FORMAT_VERSION;
    header.section_count = sections.len() as u32;
    header.file_len = offset;
    let mut out = vec![0u8; offset as usize];
    header.encode(&mut out[..PAGE]);
    for (i, e) in entries.iter().enumerate() {
        e.encode(&mut out[..PAGE], i);
    }
    seal(&mut out[..PAGE], sections.len());
    for ((_, bytes), e) in sections.iter().zip(&entries) {
        out[e.offset as usize..e.offset as usize + bytes.len()].copy_from_slice(bytes);
    }
    out
}

/// Builds a vectors file: header page, then `data` (rows of `padded` f32),
/// zero-padded to a page multiple.
pub(crate) fn assemble_vectors(
    dim: u32,
    padded: u32,
    count: u64,
    build_id: u128,
    data: &[u8],
) -> Vec<u8> {
    let end = page_align(PAGE as u64 + data.len() as u64).expect("in-memory sizes fit in u64");
    let mut out = vec![0u8; end as usize];
    VectorsHeader {
        version: FORMAT_VERSION,
        flags: 0,
        dim,
        padded_dim: padded,
        element: ELEMENT_F32,
        count,
        data_offset: PAGE as u64,
        data_len: data.len() as u64,
        data_crc: crc32fast::hash(data),
        build_id,
    }
    .encode(&mut out[..PAGE]);
    out[PAGE..PAGE + data.len()].copy_from_slice(data);
    out
}
