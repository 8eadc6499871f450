//! Writing graph and vectors files section by section.
//!
//! Both writers stream: a section's bytes go to the sink as they are
//! produced, its CRC is computed on the way, and page 0 (header, section
//! table, header CRC) is written last by seeking back. The sink is a file
//! for a build written to disk (`IndexBuilder::build_into`) or a
//! `Cursor<Vec<u8>>` for an index built in memory, so the two paths produce
//! the same bytes by construction.

use super::graph_header::{seal, GraphHeader, MAX_SECTIONS};
use super::sections::{SectionEntry, SectionKind};
use super::vectors_header::VectorsHeader;
use super::{page_align, ELEMENT_F32, FORMAT_VERSION, PAGE};
use std::io::{self, Seek, SeekFrom, Write};

const ZEROS: [u8; PAGE] = [0u8; PAGE];

/// A sink position tracker with a running CRC for the current section.
struct Body<W: Write + Seek> {
    out: W,
    /// Bytes written so far (page 0 included).
    pos: u64,
    crc: crc32fast::Hasher,
    start: u64,
}

impl<W: Write + Seek> Body<W> {
    fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&ZEROS)?; // page 0, written for real at the end
        Ok(Body {
            out,
            pos: PAGE as u64,
            crc: crc32fast::Hasher::new(),
            start: PAGE as u64,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Ends the current section: returns (offset, len, crc) and pads the
    /// sink with zeros to the next page boundary.
    fn end(&mut self) -> io::Result<(u64, u64, u32)> {
        let crc = std::mem::take(&mut self.crc).finalize();
        let (start, len) = (self.start, self.pos - self.start);
        let aligned = page_align(self.pos).expect("file sizes fit in u64");
        self.out
            .write_all(&ZEROS[..(aligned - self.pos) as usize])?;
        self.pos = aligned;
        self.start = aligned;
        Ok((start, len, crc))
    }

    /// Writes page 0 and leaves the sink positioned at the end.
    fn finish(mut self, page: &[u8]) -> io::Result<W> {
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(page)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a graph file: sections in the order they are begun, each at the
/// next page boundary after the header page.
pub(crate) struct GraphWriter<W: Write + Seek> {
    body: Body<W>,
    entries: Vec<SectionEntry>,
    open: Option<SectionKind>,
}

impl<W: Write + Seek> GraphWriter<W> {
    pub(crate) fn new(out: W) -> io::Result<Self> {
        Ok(GraphWriter {
            body: Body::new(out)?,
            entries: Vec::new(),
            open: None,
        })
    }

    /// Starts the next section.
    pub(crate) fn begin(&mut self, kind: SectionKind) {
        assert!(self.open.is_none(), "a section is still open");
        assert!(
            self.entries.len() < MAX_SECTIONS,
            "writer emits a fixed small set of sections"
        );
        self.open = Some(kind);
    }

    /// Appends bytes to the open section.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(self.open.is_some());
        self.body.write(bytes)
    }

    /// Closes the open section.
    pub(crate) fn end(&mut self) -> io::Result<()> {
        let kind = self.open.take().expect("a section is open");
        let (offset, len, crc) = self.body.end()?;
        self.entries.push(SectionEntry {
            kind: kind as u32,
            flags: 0,
            offset,
            len,
            crc,
            reserved: 0,
        });
        Ok(())
    }

    /// A whole section at once.
    pub(crate) fn section(&mut self, kind: SectionKind, bytes: &[u8]) -> io::Result<()> {
        self.begin(kind);
        self.write(bytes)?;
        self.end()
    }

    /// Fills in section count and file length, writes page 0 (with the
    /// header's version, at most [`FORMAT_VERSION`]) and returns the sink
    /// (positioned at the end of the file).
    pub(crate) fn finish(self, mut header: GraphHeader) -> io::Result<W> {
        assert!(self.open.is_none(), "a section is still open");
        assert!(
            (2..=FORMAT_VERSION).contains(&header.version),
            "a version this build writes"
        );
        header.section_count = self.entries.len() as u32;
        header.file_len = self.body.pos;
        let mut page = vec![0u8; PAGE];
        header.encode(&mut page);
        for (i, e) in self.entries.iter().enumerate() {
            e.encode(&mut page, i);
        }
        seal(&mut page, self.entries.len());
        self.body.finish(&page)
    }
}

/// Writes a vectors file: header page, then the rows (`padded` f32 each),
/// zero-padded to a page multiple.
pub(crate) struct VectorsWriter<W: Write + Seek> {
    body: Body<W>,
}

impl<W: Write + Seek> VectorsWriter<W> {
    pub(crate) fn new(out: W) -> io::Result<Self> {
        Ok(VectorsWriter {
            body: Body::new(out)?,
        })
    }

    /// Appends row bytes.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.body.write(bytes)
    }

    /// Writes the header (format `version`, the graph file's; with the
    /// data's length and CRC) and returns the sink.
    pub(crate) fn finish(
        mut self,
        version: u32,
        dim: u32,
        padded: u32,
        count: u64,
        build_id: u128,
    ) -> io::Result<W> {
        let (data_offset, data_len, data_crc) = self.body.end()?;
        let mut page = vec![0u8; PAGE];
        VectorsHeader {
            version,
            flags: 0,
            dim,
            padded_dim: padded,
            element: ELEMENT_F32,
            count,
            data_offset,
            data_len,
            data_crc,
            build_id,
        }
        .encode(&mut page);
        self.body.finish(&page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn sections_are_page_aligned_and_checksummed() {
        let mut w = GraphWriter::new(Cursor::new(Vec::new())).unwrap();
        w.begin(SectionKind::LevelCounts);
        w.write(&[1, 2, 3]).unwrap();
        w.write(&[4]).unwrap();
        w.end().unwrap();
        w.section(SectionKind::LinksUpper, &[]).unwrap();
        w.section(SectionKind::OrdinalToId, &[9; 5000]).unwrap();
        let e = w.entries.clone();
        assert_eq!((e[0].offset, e[0].len), (4096, 4));
        assert_eq!(e[0].crc, crc32fast::hash(&[1, 2, 3, 4]));
        assert_eq!((e[1].offset, e[1].len), (8192, 0));
        assert_eq!((e[2].offset, e[2].len), (8192, 5000));
        let header = GraphHeader {
            version: 2,
            flags: 0,
            dim: 1,
            padded_dim: 16,
            metric: 0,
            element: ELEMENT_F32,
            count: 1,
            m: 2,
            m0: 4,
            ef_construction: 4,
            max_level: 0,
            entry: 0,
            quant: 0,
            code_stride: 0,
            section_count: 0,
            seed: 0,
            build_id: 0,
            file_len: 0,
            quant_param: 0,
        };
        let out = w.finish(header).unwrap().into_inner();
        assert_eq!(out.len(), 4096 * 4);
        assert_eq!(&out[4096..4100], &[1, 2, 3, 4]);
        assert!(out[4100..8192].iter().all(|b| *b == 0));
    }
}
