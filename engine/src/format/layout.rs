//! Validation of untrusted bytes into a [`Layout`], and typed zero-copy
//! views over validated files. Numbered invariants refer to
//! `format-spec/validation.md`.
//!
//! Everything a reader later relies on is checked here with checked
//! arithmetic against the actual byte length, before any slice is taken or
//! anything is allocated; the only allocations are the section table and the
//! level counts, both bounded by page 0. Neighbour ids are *not* checked here
//! (that would be O(n) at open): traversal skips any id out of range for its
//! level and clamps counts to the block capacity (see [`GraphView`]).

use super::graph_header::{GraphHeader, MAX_SECTIONS, RESERVED, SECTION_ENTRY, SECTION_TABLE};
use super::labels::LabelsView;
use super::sections::{SectionEntry, SectionKind, FLAG_OPTIONAL};
use super::vectors_header::VectorsHeader;
use super::vectors_header::HEADER_END as VECTORS_HEADER_END;
use super::{page_align, ELEMENT_F32, PAGE};
use crate::error::{Error, FileKind, Result};
use crate::limits::{padded_dim, MAX_DIM, MAX_LEVEL, MAX_M};
use crate::metric::Metric;
use crate::quantization::Quantization;
use std::ops::Range;

/// A validated graph file plus its vectors file: every section range is
/// inside its file, page-aligned, non-overlapping and of the size implied
/// by the header.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub header: GraphHeader,
    pub metric: Metric,
    pub quant: Quantization,
    pub dim: usize,
    pub padded: usize,
    pub n: usize,
    pub m: usize,
    pub m0: usize,
    pub max_level: usize,
    pub entry: u32,
    pub level_counts: Vec<u32>,
    /// Start (in u32 words) of each level's block in `LinksUpper`; index 0 unused.
    pub upper_base: Vec<usize>,
    pub sections: Vec<SectionEntry>,
    ranges: [Option<Range<usize>>; 12],
    /// Code bytes per vector (0 without codes).
    pub stride: usize,
    /// Product quantization's `m` (0 for other kinds).
    pub pq_m: usize,
    pub vectors_header: VectorsHeader,
    pub vectors_range: Range<usize>,
}

/// A `Corrupt` error about the graph file.
pub(super) fn bad(
    what: impl Into<String>,
    expected: impl std::fmt::Display,
    found: impl std::fmt::Display,
) -> Error {
    Error::corrupt(FileKind::Graph, what, expected, found)
}

fn mul(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| bad(what, "a size that fits in memory", "an overflowing product"))
}

fn to_usize(x: u64, what: &str) -> Result<usize> {
    usize::try_from(x).map_err(|_| bad(what, "a value addressable on this machine", x))
}

impl Layout {
    /// Validates a graph file and a vectors file (I1–I14 in validation.md).
    /// With `verify_all`, also checks the CRC of every section and of the
    /// vector data (I15); without it, only small sections are checksummed,
    /// so open costs the same whatever the index size.
    pub(crate) fn validate(graph: &[u8], vectors: &[u8], verify_all: bool) -> Result<Layout> {
        let h = GraphHeader::decode(graph)?; // I1 magic, I2 version, I3 header CRC
        if h.file_len != graph.len() as u64 {
            return Err(bad(
                "file length",
                format!("{} bytes (from header)", h.file_len),
                format!("{} bytes (truncated or extended)", graph.len()),
            ));
        }
        if let Some(i) = graph[RESERVED].iter().position(|b| *b != 0) {
            return Err(bad(
                "header reserved bytes 108..252",
                "zero",
                format!(
                    "byte {} = {:#04x}",
                    RESERVED.start + i,
                    graph[RESERVED.start + i]
                ),
            ));
        }
        if h.flags != 0 {
            return Err(bad(
                "header field flags",
                "0 (no optional features are defined)",
                format!("{:#x}", h.flags),
            ));
        }
        let metric = Metric::from_code(h.metric).ok_or_else(|| {
            bad(
                "header field metric",
                "0 (l2), 1 (ip) or 2 (cosine)",
                h.metric,
            )
        })?;
        let quant = Quantization::from_code(h.quant).ok_or_else(|| {
            bad(
                "header field quantization",
                "0 (none), 1 (int8), 2 (pq), 3 (binary), 4 (lvq8) or 5 (lvq4x8)",
                h.quant,
            )
        })?;
        if h.version < 2 && !matches!(quant, Quantization::None | Quantization::Int8) {
            return Err(bad(
                "header field quantization",
                "0 (none) or 1 (int8) in a version 1 file",
                h.quant,
            ));
        }
        if h.version < 5 && matches!(quant, Quantization::Lvq8 | Quantization::Lvq4x8) {
            return Err(bad(
                "header field quantization",
                "0 (none) to 3 (binary) in a file older than version 5 (lvq codes are version 5)",
                h.quant,
            ));
        }
        if h.element != ELEMENT_F32 {
            return Err(bad("header field element_type", "0 (float32)", h.element));
        }
        if h.dim == 0 || h.dim > MAX_DIM {
            return Err(bad("header field dim", format!("1..={MAX_DIM}"), h.dim));
        }
        let dim = h.dim as usize;
        let padded = padded_dim(dim);
        if h.padded_dim as usize != padded {
            return Err(bad("header field padded_dim", padded, h.padded_dim));
        }
        if h.count == 0 || h.count >= u32::MAX as u64 {
            return Err(bad("header field count", "1..4294967295", h.count));
        }
        let n = to_usize(h.count, "header field count")?;
        if h.m < 2 || h.m > MAX_M {
            return Err(bad("header field m", format!("2..={MAX_M}"), h.m));
        }
        if h.m0 != 2 * h.m {
            return Err(bad("header field m0", 2 * h.m, h.m0));
        }
        if h.ef_construction == 0 {
            return Err(bad("header field ef_construction", "at least 1", 0));
        }
        if h.max_level as usize > MAX_LEVEL {
            return Err(bad(
                "header field max_level",
                format!("0..={MAX_LEVEL}"),
                h.max_level,
            ));
        }
        // The quantizer parameter: PQ's m (1..=dim), zero for other kinds.
        let pq_m = h.quant_param as usize;
        match quant {
            Quantization::Pq if pq_m == 0 || pq_m > dim => {
                return Err(bad(
                    "header field quant_param (pq m)",
                    format!("1..={dim}"),
                    pq_m,
                ));
            }
            q if q != Quantization::Pq && pq_m != 0 => {
                return Err(bad(
                    "header field quant_param",
                    "0 for this quantization",
                    pq_m,
                ));
            }
            _ => {}
        }
        let want_stride = quant.code_stride(padded, pq_m);
        if h.code_stride as usize != want_stride {
            return Err(bad("header field code_stride", want_stride, h.code_stride));
        }
        let stride = want_stride;
        let (m, m0, max_level) = (h.m as usize, h.m0 as usize, h.max_level as usize);

        // I6–I9: section table.
        let count = h.section_count as usize;
        debug_assert!(count <= MAX_SECTIONS);
        let mut sections = Vec::with_capacity(count);
        let mut ranges: [Option<Range<usize>>; 12] = Default::default();
        for i in 0..count {
            let s = SectionEntry::decode(graph, i);
            let known = SectionKind::from_code(s.kind);
            let name = known.map_or_else(
                || format!("table entry {i} (kind {})", s.kind),
                |k| k.name().to_string(),
            );
            if s.flags & !FLAG_OPTIONAL != 0 || s.reserved != 0 {
                return Err(bad(
                    format!("section {name} flags/reserved"),
                    "only the optional flag (bit 0) and a zero reserved word",
                    format!("flags {:#x}, reserved {:#x}", s.flags, s.reserved),
                ));
            }
            if !s.offset.is_multiple_of(PAGE as u64) || s.offset < PAGE as u64 {
                return Err(bad(
                    format!("section {name} offset"),
                    "a multiple of 4096, after the header page",
                    s.offset,
                ));
            }
            let end = s
                .offset
                .checked_add(s.len)
                .filter(|e| *e <= graph.len() as u64);
            let Some(end) = end else {
                return Err(bad(
                    format!("section {name} extent"),
                    format!("within the file's {} bytes", graph.len()),
                    format!("offset {} + length {}", s.offset, s.len),
                ));
            };
            let Some(kind) = known else {
                if s.flags & FLAG_OPTIONAL != 0 {
                    // A later version's optional section: in bounds, skipped.
                    sections.push(s);
                    continue;
                }
                return Err(bad(
                    format!("section table entry {i} kind"),
                    "a known section kind 1..=11 (or the optional flag)",
                    s.kind,
                ));
            };
            let slot = &mut ranges[kind as usize];
            if slot.is_some() {
                return Err(bad(
                    format!("section {}", kind.name()),
                    "to appear once",
                    "a duplicate",
                ));
            }
            *slot = Some(s.offset as usize..end as usize);
            sections.push(s);
        }
        let mut sorted: Vec<&SectionEntry> = sections.iter().collect();
        // Ties: empty sections first, so a zero-length section sharing its
        // offset with the next one never reads as an overlap.
        sorted.sort_by_key(|s| (s.offset, s.len));
        for w in sorted.windows(2) {
            if w[0].offset + w[0].len > w[1].offset {
                return Err(bad(
                    "section table",
                    "non-overlapping sections",
                    format!(
                        "sections at offsets {} (length {}) and {} overlap",
                        w[0].offset, w[0].len, w[1].offset
                    ),
                ));
            }
        }

        // I10: which sections exist depends on the quantizer.
        let coded = quant != Quantization::None;
        for kind in SectionKind::ALL {
            let needed = match kind {
                SectionKind::QuantParams | SectionKind::Codes => coded,
                SectionKind::CodeNorms => quant.has_norms(metric, h.version),
                SectionKind::BinaryFactors => quant.has_factors(),
                SectionKind::ResidualCodes => quant.has_residual(),
                _ => true,
            };
            if kind == SectionKind::Labels {
                // Optional from version 6 (present iff some vector has a
                // label); unknown before.
                if h.version < 6 && ranges[kind as usize].is_some() {
                    return Err(bad(
                        "section labels",
                        "absent in a file older than version 6",
                        "present",
                    ));
                }
                continue;
            }
            if needed != ranges[kind as usize].is_some() {
                return Err(bad(
                    format!("section {}", kind.name()),
                    if needed { "present" } else { "absent" },
                    if needed { "missing" } else { "present" },
                ));
            }
        }

        // I11: level counts (small; always checksummed).
        let lc_range = ranges[SectionKind::LevelCounts as usize]
            .clone()
            .expect("checked present");
        let lc_bytes = &graph[lc_range.clone()];
        if lc_bytes.len() != (max_level + 1) * 4 {
            return Err(bad(
                "section level_counts length",
                (max_level + 1) * 4,
                lc_bytes.len(),
            ));
        }
        check_crc(
            FileKind::Graph,
            &sections,
            SectionKind::LevelCounts,
            lc_bytes,
        )?;
        let level_counts: Vec<u32> = lc_bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        if level_counts[0] as usize != n {
            return Err(bad("level_counts[0]", n, level_counts[0]));
        }
        for l in 1..=max_level {
            if level_counts[l] > level_counts[l - 1] || level_counts[l] == 0 {
                return Err(bad(
                    format!("level_counts[{l}]"),
                    format!("1..={}", level_counts[l - 1]),
                    level_counts[l],
                ));
            }
        }
        if h.entry >= level_counts[max_level] {
            return Err(bad(
                "header field entry_point",
                format!(
                    "an ordinal below {} (the nodes on the top level)",
                    level_counts[max_level]
                ),
                h.entry,
            ));
        }

        // I12: every other section has exactly the size the header implies.
        let mut upper_base = vec![0usize; max_level + 1];
        let mut upper_words = 0usize;
        for l in 1..=max_level {
            upper_base[l] = upper_words;
            upper_words = upper_words
                .checked_add(mul(level_counts[l] as usize, 1 + m, "links_upper size")?)
                .ok_or_else(|| {
                    bad(
                        "links_upper size",
                        "a size that fits in memory",
                        "an overflowing sum",
                    )
                })?;
        }
        let expect = |kind: SectionKind| -> Result<usize> {
            match kind {
                SectionKind::QuantParams => {
                    let floats = quant
                        .param_floats(dim, padded)
                        .ok_or_else(|| bad("quant_params size", "a size that fits", "overflow"))?;
                    mul(floats, 4, "quant_params size")
                }
                SectionKind::Codes => mul(n, stride, "codes size"),
                SectionKind::BinaryFactors => mul(n, 8, "binary_factors size"),
                SectionKind::ResidualCodes => mul(n, padded, "residual_codes size"),
                SectionKind::CodeNorms => mul(n, 4, "code_norms size"),
                SectionKind::LevelCounts => Ok((max_level + 1) * 4),
                SectionKind::LinksLevel0 => {
                    mul(mul(n, 1 + m0, "links_level0 size")?, 4, "links_level0 size")
                }
                SectionKind::LinksUpper => mul(upper_words, 4, "links_upper size"),
                SectionKind::OrdinalToId => mul(n, 8, "ordinal_to_id size"),
                SectionKind::IdToOrdinal => mul(n, 16, "id_to_ordinal size"),
                // Sized by its own counts (I16, below).
                SectionKind::Labels => Ok(ranges[kind as usize].as_ref().map_or(0, |r| r.len())),
            }
        };
        for kind in SectionKind::ALL {
            if let Some(r) = &ranges[kind as usize] {
                let want = expect(kind)?;
                if r.len() != want {
                    return Err(bad(
                        format!("section {} length", kind.name()),
                        want,
                        r.len(),
                    ));
                }
            }
        }

        // I13: quantizer parameters are checksummed and finite.
        if let Some(r) = &ranges[SectionKind::QuantParams as usize] {
            let bytes = &graph[r.clone()];
            check_crc(FileKind::Graph, &sections, SectionKind::QuantParams, bytes)?;
            let vals: &[f32] = bytemuck::cast_slice(bytes);
            let steps = quant.nonnegative_params(padded);
            let invalid =
                |(i, v): &(usize, &f32)| !v.is_finite() || (steps.contains(i) && **v < 0.0);
            if let Some((i, v)) = vals.iter().enumerate().find(invalid) {
                return Err(bad(
                    "section quant_params",
                    "finite ranges with non-negative scales",
                    format!("value {v} at index {i}"),
                ));
            }
        }

        // I16: the labels section's length matches its counts.
        if let Some(r) = &ranges[SectionKind::Labels as usize] {
            LabelsView::parse(&graph[r.clone()])?;
        }

        // I14: the vectors file matches the graph.
        let vh = VectorsHeader::decode(vectors)?;
        let vbad = |what: &str, e: &dyn std::fmt::Display, f: &dyn std::fmt::Display| {
            Error::corrupt(FileKind::Vectors, what, e, f)
        };
        if vh.build_id != h.build_id {
            return Err(Error::BuildIdMismatch {
                graph: h.build_id,
                vectors: vh.build_id,
            });
        }
        if vh.flags != 0 {
            return Err(vbad("header field flags", &0, &vh.flags));
        }
        if vh.dim != h.dim || vh.padded_dim != h.padded_dim || vh.element != ELEMENT_F32 {
            return Err(vbad(
                "header fields dim/padded_dim/element_type",
                &format!("{}/{}/0 as in the graph file", h.dim, h.padded_dim),
                &format!("{}/{}/{}", vh.dim, vh.padded_dim, vh.element),
            ));
        }
        if vh.count != h.count {
            return Err(vbad("header field count", &h.count, &vh.count));
        }
        if vh.data_offset != PAGE as u64 {
            return Err(vbad("header field data_offset", &PAGE, &vh.data_offset));
        }
        let data_len = mul(mul(n, padded, "vector data size")?, 4, "vector data size")?;
        if vh.data_len != data_len as u64 {
            return Err(vbad("header field data_len", &data_len, &vh.data_len));
        }
        let file_len = page_align(PAGE as u64 + data_len as u64)
            .ok_or_else(|| vbad("file length", &"a size that fits", &"overflow"))?;
        if vectors.len() as u64 != file_len {
            return Err(vbad(
                "file length",
                &format!("{file_len} bytes (from header)"),
                &format!("{} bytes (truncated or extended)", vectors.len()),
            ));
        }
        let layout = Layout {
            metric,
            quant,
            dim,
            padded,
            n,
            m,
            m0,
            max_level,
            entry: h.entry,
            level_counts,
            upper_base,
            sections,
            ranges,
            stride,
            pq_m,
            vectors_range: PAGE..PAGE + data_len,
            vectors_header: vh,
            header: h,
        };
        if verify_all {
            layout.verify(graph, vectors)?;
        }
        Ok(layout)
    }

    /// I15: checks the CRC32 of every section and of the vector data.
    pub(crate) fn verify(&self, graph: &[u8], vectors: &[u8]) -> Result<()> {
        for s in &self.sections {
            let bytes = &graph[s.offset as usize..(s.offset + s.len) as usize];
            let computed = crc32fast::hash(bytes);
            if computed != s.crc {
                let name = SectionKind::from_code(s.kind).map_or("unknown", |k| k.name());
                return Err(Error::ChecksumMismatch {
                    file: FileKind::Graph,
                    what: format!("section {name}"),
                    stored: s.crc,
                    computed,
                });
            }
        }
        self.verify_id_maps(graph)?;
        if self.range(SectionKind::Labels).is_some() {
            self.labels(graph)?.verify(self.n)?;
        }
        self.verify_padding(graph, vectors)?;
        let computed = crc32fast::hash(&vectors[self.vectors_range.clone()]);
        if computed != self.vectors_header.data_crc {
            return Err(Error::ChecksumMismatch {
                file: FileKind::Vectors,
                what: "vector data".into(),
                stored: self.vectors_header.data_crc,
                computed,
            });
        }
        Ok(())
    }

    /// Every byte no checksum covers is padding and must be zero: page 0
    /// after the section table, gaps between sections and after the last
    /// one; in the vectors file, page 0 after its header and the tail after
    /// the data. With the checksums this makes every single-bit change to
    /// either file detectable (part of full verification).
    fn verify_padding(&self, graph: &[u8], vectors: &[u8]) -> Result<()> {
        let table_end = SECTION_TABLE + SECTION_ENTRY * self.sections.len();
        let mut covered: Vec<(usize, usize)> = self
            .sections
            .iter()
            .map(|s| (s.offset as usize, (s.offset + s.len) as usize))
            .collect();
        covered.push((0, table_end));
        covered.sort_unstable();
        let mut at = 0;
        for (start, end) in covered
            .into_iter()
            .chain(std::iter::once((graph.len(), graph.len())))
        {
            if let Some(i) = graph.get(at..start).and_then(first_nonzero) {
                return Err(bad(
                    "padding",
                    "zero bytes outside the header, table and sections",
                    format!("a non-zero byte at offset {}", at + i),
                ));
            }
            at = at.max(end);
        }
        for (file_gap, base) in [
            (&vectors[VECTORS_HEADER_END..PAGE], VECTORS_HEADER_END),
            (&vectors[self.vectors_range.end..], self.vectors_range.end),
        ] {
            if let Some(i) = first_nonzero(file_gap) {
                return Err(Error::corrupt(
                    FileKind::Vectors,
                    "padding",
                    "zero bytes outside the header and data",
                    format!("a non-zero byte at offset {}", base + i),
                ));
            }
        }
        Ok(())
    }

    /// The two id maps agree: `id_to_ordinal` is strictly ascending by id and
    /// each pair `(id, ord)` has `ord < count` and `ordinal_to_id[ord] == id`
    /// (O(n), part of full verification).
    fn verify_id_maps(&self, graph: &[u8]) -> Result<()> {
        let ord_to_id: &[u64] = self.cast(graph, SectionKind::OrdinalToId);
        let pairs: &[[u64; 2]] = self.cast(graph, SectionKind::IdToOrdinal);
        let mut prev: Option<u64> = None;
        for (i, &[id, ord]) in pairs.iter().enumerate() {
            let agrees = usize::try_from(ord).ok().and_then(|o| ord_to_id.get(o)) == Some(&id);
            if prev.is_some_and(|p| p >= id) || !agrees {
                return Err(bad(
                    format!("section id_to_ordinal pair {i}"),
                    "pairs strictly ascending by id, each naming an ordinal whose ordinal_to_id entry is that id",
                    format!("id {id}, ordinal {ord}"),
                ));
            }
            prev = Some(id);
        }
        Ok(())
    }

    /// The view of the labels section (empty without one).
    pub(crate) fn labels<'a>(&self, graph: &'a [u8]) -> Result<LabelsView<'a>> {
        self.range(SectionKind::Labels)
            .map_or(Ok(LabelsView::default()), |r| LabelsView::parse(&graph[r]))
    }

    /// The byte range of a section, if present.
    pub(crate) fn range(&self, kind: SectionKind) -> Option<Range<usize>> {
        self.ranges[kind as usize].clone()
    }

    /// Typed views over validated bytes. Cheap (a few slice casts): call per search.
    pub(crate) fn view<'a>(&'a self, graph: &'a [u8], vectors: &'a [u8]) -> GraphView<'a> {
        GraphView {
            l: self,
            l0: self.cast(graph, SectionKind::LinksLevel0),
            upper: self.cast(graph, SectionKind::LinksUpper),
            codes: self
                .range(SectionKind::Codes)
                .map_or(&[][..], |r| &graph[r]),
            norms: self.cast(graph, SectionKind::CodeNorms),
            factors: self.cast(graph, SectionKind::BinaryFactors),
            residuals: self
                .range(SectionKind::ResidualCodes)
                .map_or(&[][..], |r| &graph[r]),
            quant_params: self.cast(graph, SectionKind::QuantParams),
            ord_to_id: self.cast(graph, SectionKind::OrdinalToId),
            id_to_ord: self.cast(graph, SectionKind::IdToOrdinal),
            vectors: bytemuck::cast_slice(&vectors[self.vectors_range.clone()]),
        }
    }

    fn cast<'a, T: bytemuck::Pod>(&self, graph: &'a [u8], kind: SectionKind) -> &'a [T] {
        // Validated: the range is in bounds, starts at a multiple of 4096 from
        // an 8-byte-aligned base (mmap or `Bytes::Owned`), and its length is a
        // multiple of size_of::<T>() (I12), so the cast cannot fail; an empty
        // slice is returned rather than panicking if that ever changed.
        self.range(kind)
            .and_then(|r| bytemuck::try_cast_slice(&graph[r]).ok())
            .unwrap_or(&[])
    }
}

fn check_crc(
    file: FileKind,
    sections: &[SectionEntry],
    kind: SectionKind,
    bytes: &[u8],
) -> Result<()> {
    let s = sections
        .iter()
        .find(|s| s.kind == kind as u32)
        .expect("section present");
    let computed = crc32fast::hash(bytes);
    if computed != s.crc {
        return Err(Error::ChecksumMismatch {
            file,
            what: format!("section {}", kind.name()),
            stored: s.crc,
            computed,
        });
    }
    Ok(())
}

/// Zero-copy typed slices over one validated index.
pub(crate) struct GraphView<'a> {
    pub l: &'a Layout,
    pub l0: &'a [u32],
    pub upper: &'a [u32],
    pub codes: &'a [u8],
    pub norms: &'a [f32],
    pub factors: &'a [[f32; 2]],
    /// LVQ-4x8's residual codes, `padded` bytes per ordinal (empty otherwise).
    pub residuals: &'a [u8],
    pub quant_params: &'a [f32],
    pub ord_to_id: &'a [u64],
    pub id_to_ord: &'a [u64],
    pub vectors: &'a [f32],
}

impl GraphView<'_> {
    /// The full-precision (padded) vector of an ordinal.
    #[inline]
    pub(crate) fn vector(&self, ord: u32) -> &[f32] {
        let p = self.l.padded;
        self.vectors
            .get(ord as usize * p..(ord as usize + 1) * p)
            .unwrap_or(&[])
    }

    /// The code of an ordinal.
    #[inline]
    pub(crate) fn code(&self, ord: u32) -> &[u8] {
        let p = self.l.stride;
        self.codes
            .get(ord as usize * p..(ord as usize + 1) * p)
            .unwrap_or(&[])
    }

    /// The `code_norms` entry (`‖x̂‖²`) of an ordinal; `+∞` if there is
    /// none (a file without the section ranks nothing by it).
    #[inline]
    pub(crate) fn norm_of(&self, ord: u32) -> f32 {
        self.norms
            .get(ord as usize)
            .copied()
            .unwrap_or(f32::INFINITY)
    }

    /// The `binary_factors` pair of an ordinal; `(0, +∞)` if there is none.
    #[inline]
    pub(crate) fn factors_of(&self, ord: u32) -> [f32; 2] {
        self.factors
            .get(ord as usize)
            .copied()
            .unwrap_or([0.0, f32::INFINITY])
    }

    /// The residual code of an ordinal (LVQ-4x8; empty otherwise).
    #[inline]
    pub(crate) fn residual(&self, ord: u32) -> &[u8] {
        let p = self.l.padded;
        self.residuals
            .get(ord as usize * p..(ord as usize + 1) * p)
            .unwrap_or(&[])
    }

    /// The stored links block of `node` on `level`, count clamped to capacity.
    #[inline]
    pub(crate) fn links(&self, level: usize, node: u32) -> &[u32] {
        let cap = if level == 0 { self.l.m0 } else { self.l.m };
        match self.block(level, node) {
            [count, ids @ ..] => &ids[..(*count as usize).min(cap)],
            [] => &[],
        }
    }

    /// The whole stored block `[count, ids…, padding]` of `node` on `level`
    /// (empty if the node is not on that level); reads nothing.
    #[inline]
    pub(crate) fn block(&self, level: usize, node: u32) -> &[u32] {
        let node = node as usize;
        let (words, cap, base) = if level == 0 {
            (self.l0, self.l.m0, 0)
        } else {
            match self.l.level_counts.get(level) {
                Some(&c) if node < c as usize => (self.upper, self.l.m, self.l.upper_base[level]),
                _ => return &[],
            }
        };
        let start = base + node * (1 + cap);
        words.get(start..start + 1 + cap).unwrap_or(&[])
    }

    /// The external id of an ordinal.
    #[inline]
    pub(crate) fn id(&self, ord: u32) -> u64 {
        self.ord_to_id
            .get(ord as usize)
            .copied()
            .unwrap_or(u64::MAX)
    }

    /// Nodes on `level`: a neighbour id at or above it is skipped.
    #[inline]
    pub(crate) fn level_limit(&self, level: usize) -> u32 {
        if level == 0 {
            self.l.n as u32
        } else {
            self.l.level_counts.get(level).copied().unwrap_or(0)
        }
    }

    /// The ordinal of an external id (binary search over sorted pairs).
    pub(crate) fn ordinal(&self, id: u64) -> Option<u32> {
        let pairs: &[[u64; 2]] = bytemuck::try_cast_slice(self.id_to_ord).ok()?;
        let i = pairs.binary_search_by_key(&id, |p| p[0]).ok()?;
        let ord = pairs[i][1];
        (ord < self.l.n as u64).then_some(ord as u32)
    }
}

/// Offset of the first non-zero byte of `bytes`, scanning whole aligned
/// `u64` words where it can (padding runs are up to a page long; this is
/// 8× fewer steps than a byte loop, which matters under Miri).
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    let (head, words, tail) = bytemuck::pod_align_to::<u8, u64>(bytes);
    let in_bytes = |b: &[u8], base: usize| b.iter().position(|x| *x != 0).map(|i| base + i);
    in_bytes(head, 0)
        .or_else(|| {
            let w = words.iter().position(|w| *w != 0)?;
            let at = head.len() + 8 * w;
            in_bytes(&bytes[at..at + 8], at)
        })
        .or_else(|| in_bytes(tail, bytes.len() - tail.len()))
}

#[cfg(test)]
mod tests {
    use super::first_nonzero;

    #[test]
    fn first_nonzero_matches_a_byte_scan_at_every_alignment() {
        let mut buf = [0u8; 64];
        // Every alignment and the lengths around one, two and three words
        // (fewer lengths under Miri, which runs this ~10⁵× slower).
        let max_len = if cfg!(miri) { 18 } else { 40 };
        for start in 0..9 {
            for len in 0..max_len {
                for hot in std::iter::once(None).chain((0..len).map(Some)) {
                    buf.iter_mut().for_each(|b| *b = 0);
                    if let Some(h) = hot {
                        buf[start + h] = 0x80;
                    }
                    // A non-zero byte just outside the slice must not count.
                    buf[start + len] = 1;
                    let s = &buf[start..start + len];
                    assert_eq!(first_nonzero(s), s.iter().position(|b| *b != 0));
                    assert_eq!(first_nonzero(s), hot);
                }
            }
        }
    }
}
