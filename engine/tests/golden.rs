//! Pins format compatibility with checked-in indexes, one directory per
//! format version.
//!
//! * **Version 1 = read compatibility.** `tests/fixtures/golden-v1/` was
//!   written by format version 1 (300 × 8 vectors from
//!   `clustered(300, 8, 4, 0.1, 42)`, L2, int8, M = 8, ef_construction = 50,
//!   seed 42, one thread). It is never regenerated (this build cannot write
//!   version 1; the CRC32 of each of its files is pinned below): it must keep
//!   opening (plain mmap, verified, `from_bytes`) and answering its 20
//!   recorded queries (ef = 32, k = 5) with the same ids and bit-identical
//!   distances. And since version 2 left the int8 layout alone, a fresh
//!   build with the same inputs, relabelled as version 1 (version words set
//!   to 1, the three CRCs that cover them recomputed), reproduces its files
//!   byte for byte.
//! * **Version 2 data files = the current writer.** `tests/fixtures/golden-v2/` holds
//!   one index per code kind over the same data, M = 8, ef_construction =
//!   50, seed 42, one thread: `int8/` (L2, otherwise v1's parameters, so it
//!   is golden-v1 with the version bumped), `pq/` (cosine, `pq_m = 3`, so
//!   the 8 dimensions split 3/3/2; `pq_train_size = 300`) and `binary/`
//!   (inner product). Each must open and answer its recorded queries as
//!   recorded, at ef = 32, k = 5, both rescoring the whole beam and with
//!   `oversample = 1` (which pins the ranking of the codes themselves), and
//!   a fresh build with the same inputs must reproduce its files byte for
//!   byte. Their MANIFESTs are directory version 3 (the version that added
//!   the append log and changed no data-file byte); manifest versions 1
//!   and 2 stay readable, pinned by golden-v1 and by `malformed.rs`.
//!
//! * **Version 5 = LVQ codes.** `tests/fixtures/golden-v5/lvq8/` (L2) and
//!   `golden-v5/lvq4x8/` (cosine) are the same data as golden-v2 with the
//!   LVQ kinds; the checks of golden-v2 apply
//!   to it (recorded answers, byte-for-byte reproduction; its MANIFEST is
//!   directory version 3 like theirs). The writer still writes version 2
//!   for the other kinds, so golden-v2 keeps reproducing.
//!
//! * **Directory version 4 = the log.** `tests/fixtures/golden-v4/` holds
//!   the MANIFEST (64 bytes, log flag and bound) and the log (plain records
//!   and two begin/commit batches) that a fixed script of writes leaves on
//!   a copy of `golden-v2/int8/`; the log must replay as recorded, and the
//!   script (which since version 6 writes version-6 files) must reproduce
//!   both files byte for byte but for the version word and its CRC. It is
//!   read-compatibility material now: never regenerated.
//!
//! * **Version 6 = labels.** `tests/fixtures/golden-v6/labels/` is
//!   golden-v2/int8's data with labels (a labelled build: data files of
//!   version 6 with the `labels` section), and the MANIFEST and log that
//!   a script of labelled writes leaves on it. It must answer its recorded
//!   label-filtered queries, reproduce byte for byte, and replay its log
//!   as recorded. Regenerate with `STRATA_REGENERATE_GOLDEN_V6=1`.
//!
//! A change that breaks any of this is a format or determinism change: for
//! a deliberate one, bump the format version (the current golden-v2 then
//! becomes read-compatibility material like golden-v1) rather than quietly
//! regenerating. Regenerate golden-v2 (never golden-v1) with
//! `STRATA_REGENERATE_GOLDEN=1 cargo test -p strata --test golden`.
//!
//! `expected.txt` holds one line per query:
//! `<query f32 bits, comma-separated hex> => <id>:<distance f32 bits hex> ...`,
//! followed in golden-v2 by ` | <id>:<distance bits> ...` for the second
//! search setting.

mod common;

use common::{rd32, wr32};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use strata::dataset::clustered;
use strata::{
    BuildParams, BuiltIndex, Generation, IndexBuilder, Metric, Neighbor, OpenOptions, Quantization,
    SearchParams, DEFAULT_MAX_RESULTS,
};

const K: usize = 5;
const EF: usize = 32;
const QUERIES: usize = 20;
const FILES: [&str; 3] = ["MANIFEST", "g00000001.graph", "g00000001.vectors"];

/// CRC32 of each checked-in golden-v1 file: the fixture must stay exactly
/// as it was written by format version 1.
const V1_CRCS: [(&str, usize, u32); 4] = [
    ("MANIFEST", 48, 0x6522_df69),
    ("g00000001.graph", 61_440, 0x8e5a_9466),
    ("g00000001.vectors", 24_576, 0x0373_6184),
    ("expected.txt", 2_935, 0x6d1e_b1d5),
];

/// Search settings recorded for golden-v1 (one group per line).
const V1_SETTINGS: [SearchParams; 1] = [SearchParams {
    ef: EF,
    oversample: None,
    rescore: true,
    filter: None,
    exact_below: None,
    auto_ef: None,
    max_results: DEFAULT_MAX_RESULTS,
    recall: None,
}];

/// Search settings recorded for golden-v2: rescoring the whole beam, then
/// rescoring only the `k` best by code distance.
const V2_SETTINGS: [SearchParams; 2] = [
    SearchParams {
        ef: EF,
        oversample: None,
        rescore: true,
        filter: None,
        exact_below: None,
        auto_ef: None,
        max_results: DEFAULT_MAX_RESULTS,
        recall: None,
    },
    SearchParams {
        ef: EF,
        oversample: Some(1.0),
        rescore: true,
        filter: None,
        exact_below: None,
        auto_ef: None,
        max_results: DEFAULT_MAX_RESULTS,
        recall: None,
    },
];

fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn v1_dir() -> PathBuf {
    fixtures_root().join("golden-v1")
}

/// One golden-v2 index.
struct V2 {
    /// Subdirectory of `golden-v2/`.
    name: &'static str,
    metric: Metric,
    quantization: Quantization,
    pq_m: Option<usize>,
    /// `IndexInfo::pq_m` as stored (0 unless PQ).
    stored_pq_m: usize,
    /// `(name, length)` of every graph section, in file order.
    sections: &'static [(&'static str, u64)],
}

/// Section lengths for 300 × 8 (padded 16), M = 8 (m0 = 16).
const V2_INDEXES: [V2; 5] = [
    V2 {
        name: "int8",
        metric: Metric::L2,
        quantization: Quantization::Int8,
        pq_m: None,
        stored_pq_m: 0,
        sections: &[
            ("quant_params", 2 * 16 * 4),
            ("code_norms", 300 * 4),
            ("level_counts", 0), // length depends on max_level; not pinned
            ("links_upper", 0),
            ("codes", 300 * 16),
            ("links_level0", 300 * 17 * 4),
            ("ordinal_to_id", 300 * 8),
            ("id_to_ordinal", 300 * 16),
        ],
    },
    V2 {
        name: "pq",
        metric: Metric::Cosine,
        quantization: Quantization::Pq,
        pq_m: Some(3),
        stored_pq_m: 3,
        sections: &[
            ("quant_params", 256 * 8 * 4), // 256 centroids × dim, dimension-major
            ("level_counts", 0),
            ("links_upper", 0),
            ("codes", 300 * 16), // m = 3 rounded up to 16 bytes
            ("links_level0", 300 * 17 * 4),
            ("ordinal_to_id", 300 * 8),
            ("id_to_ordinal", 300 * 16),
        ],
    },
    V2 {
        name: "binary",
        metric: Metric::InnerProduct,
        quantization: Quantization::Binary,
        pq_m: None,
        stored_pq_m: 0,
        sections: &[
            ("quant_params", 16 * 4), // the centre, padded
            ("binary_factors", 300 * 2 * 4),
            ("level_counts", 0),
            ("links_upper", 0),
            ("codes", 300 * 16), // 2 bytes of bits rounded up to 16
            ("links_level0", 300 * 17 * 4),
            ("ordinal_to_id", 300 * 8),
            ("id_to_ordinal", 300 * 16),
        ],
    },
    // Format version 5, in golden-v5/: the first kind of that version.
    V2 {
        name: "lvq8",
        metric: Metric::L2,
        quantization: Quantization::Lvq8,
        pq_m: None,
        stored_pq_m: 0,
        sections: &[
            ("quant_params", 16 * 4), // the mean, padded
            ("code_norms", 300 * 4),
            ("binary_factors", 300 * 2 * 4), // (lo, step) per vector
            ("level_counts", 0),
            ("links_upper", 0),
            ("codes", 300 * 16),
            ("links_level0", 300 * 17 * 4),
            ("ordinal_to_id", 300 * 8),
            ("id_to_ordinal", 300 * 16),
        ],
    },
    V2 {
        name: "lvq4x8",
        metric: Metric::Cosine,
        quantization: Quantization::Lvq4x8,
        pq_m: None,
        stored_pq_m: 0,
        sections: &[
            ("quant_params", 16 * 4),        // the mean, padded
            ("binary_factors", 300 * 2 * 4), // (lo, step) per vector
            ("level_counts", 0),
            ("links_upper", 0),
            ("codes", 300 * 8), // two 4-bit codes per byte
            ("residual_codes", 300 * 16),
            ("links_level0", 300 * 17 * 4),
            ("ordinal_to_id", 300 * 8),
            ("id_to_ordinal", 300 * 16),
        ],
    },
];

impl V2 {
    /// `golden-v2/NAME`, or `golden-v5/NAME` for the kinds of version 5.
    fn dir(&self) -> PathBuf {
        let version = self.quantization.format_version(self.metric);
        fixtures_root()
            .join(format!("golden-v{version}"))
            .join(self.name)
    }

    fn params(&self) -> BuildParams {
        BuildParams {
            metric: self.metric,
            quantization: self.quantization,
            pq_m: self.pq_m,
            pq_train_size: 300,
            ..v1_params()
        }
    }

    fn build(&self) -> BuiltIndex {
        golden_build(self.params())
    }

    fn header_comment(&self) -> String {
        let p = self.params();
        format!(
            "# strata golden-v{}/{}: clustered(300, 8, 4, 0.1, 42), {:?}, {}{}, M=8, ef_construction=50, seed 42, threads 1\n\
             # search k={K} ef={EF}: <query f32 bits> => <id>:<distance bits> (rescoring the beam) | <id>:<distance bits> (oversample 1)\n",
            self.quantization.format_version(self.metric),
            self.name,
            p.metric,
            p.quantization.name(),
            match p.pq_m {
                Some(m) => format!(" m={m} pq_train_size={}", p.pq_train_size),
                None => String::new(),
            },
        )
    }
}

/// Golden-v1's parameters (int8, L2).
fn v1_params() -> BuildParams {
    BuildParams {
        metric: Metric::L2,
        quantization: Quantization::Int8,
        m: 8,
        ef_construction: 50,
        seed: Some(42),
        threads: 1,
        ..Default::default()
    }
}

fn golden_build(params: BuildParams) -> BuiltIndex {
    let data = clustered(300, 8, 4, 0.1, 42);
    let mut b = IndexBuilder::new(8, params).unwrap();
    b.add_rows(&data.data).unwrap();
    b.build().unwrap()
}

/// 20 fixed queries: data rows 0, 15, 30, ... nudged by a fixed pattern.
fn golden_queries() -> Vec<Vec<f32>> {
    let data = clustered(300, 8, 4, 0.1, 42);
    (0..QUERIES)
        .map(|i| {
            data.row(i * 15)
                .iter()
                .enumerate()
                .map(|(j, x)| x + 0.02 * (((i * 7 + j * 3) % 5) as f32 - 2.0))
                .collect()
        })
        .collect()
}

type Hits = Vec<(u64, u32)>;

struct Expected {
    query: Vec<f32>,
    /// One group of hits per search setting.
    groups: Vec<Hits>,
}

fn hits_bits(hits: &[Neighbor]) -> Hits {
    hits.iter().map(|n| (n.id, n.distance.to_bits())).collect()
}

fn format_line(query: &[f32], groups: &[Hits]) -> String {
    let q: Vec<String> = query
        .iter()
        .map(|x| format!("{:08x}", x.to_bits()))
        .collect();
    let g: Vec<String> = groups
        .iter()
        .map(|hits| {
            hits.iter()
                .map(|(id, d)| format!("{id}:{d:08x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    format!("{} => {}", q.join(","), g.join(" | "))
}

fn parse_expected(text: &str) -> Vec<Expected> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (q, h) = line.split_once(" => ").expect("`query => hits`");
            let query = q
                .split(',')
                .map(|x| f32::from_bits(u32::from_str_radix(x, 16).expect("hex f32 bits")))
                .collect();
            let groups = h
                .split(" | ")
                .map(|group| {
                    group
                        .split_whitespace()
                        .map(|pair| {
                            let (id, d) = pair.split_once(':').expect("id:bits");
                            (id.parse().unwrap(), u32::from_str_radix(d, 16).unwrap())
                        })
                        .collect()
                })
                .collect();
            Expected { query, groups }
        })
        .collect()
}

fn search_groups(index: &Generation, query: &[f32], settings: &[SearchParams]) -> Vec<Hits> {
    settings
        .iter()
        .map(|sp| hits_bits(&index.search(query, K, sp).unwrap()))
        .collect()
}

/// Regenerates golden-v2 when `STRATA_REGENERATE_GOLDEN=1` (once per run).
/// Golden-v1 is never regenerated.
fn maybe_regenerate() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if std::env::var("STRATA_REGENERATE_GOLDEN").as_deref() != Ok("1") {
            return;
        }
        for fx in &V2_INDEXES {
            let dir = fx.dir();
            if dir.exists() {
                fs::remove_dir_all(&dir).unwrap();
            }
            let built = fx.build();
            built.write(&dir).unwrap();
            let index = built.into_index().unwrap();
            let mut text = fx.header_comment();
            for q in golden_queries() {
                text.push_str(&format_line(&q, &search_groups(&index, &q, &V2_SETTINGS)));
                text.push('\n');
            }
            fs::write(dir.join("expected.txt"), text).unwrap();
            eprintln!("regenerated {}", dir.display());
        }
    });
}

fn read_expected(dir: &Path, groups: usize) -> Vec<Expected> {
    maybe_regenerate();
    let path = dir.join("expected.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (golden-v2 is regenerated with STRATA_REGENERATE_GOLDEN=1)",
            path.display()
        )
    });
    let e = parse_expected(&text);
    assert_eq!(e.len(), QUERIES, "{}", path.display());
    for x in &e {
        assert_eq!(x.groups.len(), groups, "{}", path.display());
        assert!(x.groups.iter().all(|g| g.len() == K), "{}", path.display());
    }
    e
}

/// A private copy of a checked-in index, so no test can touch the fixture.
fn copy_fixture(dir: &Path) -> tempfile::TempDir {
    maybe_regenerate();
    let tmp = tempfile::tempdir().unwrap();
    for name in FILES {
        fs::copy(dir.join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

fn check(index: &Generation, expected: &[Expected], settings: &[SearchParams], how: &str) {
    for (i, e) in expected.iter().enumerate() {
        let got = search_groups(index, &e.query, settings);
        assert_eq!(got, e.groups, "{how}: query {i} differs from expected.txt");
    }
}

/// Opens a copy of the fixture in `dir` three ways (mmap, verified mmap,
/// `from_bytes`) and checks each answers as recorded.
fn check_checked_in(dir: &Path, expected: &[Expected], settings: &[SearchParams], name: &str) {
    let tmp = copy_fixture(dir);
    let mapped = Generation::open(tmp.path()).unwrap();
    check(&mapped, expected, settings, &format!("{name}: mmap open"));
    let verified = Generation::open_with(
        tmp.path(),
        &OpenOptions {
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    verified.verify().unwrap();
    check(
        &verified,
        expected,
        settings,
        &format!("{name}: verified open"),
    );
    let g = fs::read(tmp.path().join(FILES[1])).unwrap();
    let v = fs::read(tmp.path().join(FILES[2])).unwrap();
    let owned = Generation::from_bytes(&g, &v).unwrap();
    check(&owned, expected, settings, &format!("{name}: from_bytes"));
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

// ---------------------------------------------------------------------------
// Version 1: read compatibility.

#[test]
fn v1_fixture_is_exactly_as_checked_in() {
    maybe_regenerate();
    for (name, len, crc) in V1_CRCS {
        let bytes = fs::read(v1_dir().join(name)).unwrap();
        assert_eq!(bytes.len(), len, "golden-v1/{name} length");
        assert_eq!(
            crc32fast::hash(&bytes),
            crc,
            "golden-v1/{name} changed: version 1 files cannot be regenerated"
        );
    }
    let mut names: Vec<String> = fs::read_dir(v1_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "MANIFEST",
            "expected.txt",
            "g00000001.graph",
            "g00000001.vectors"
        ]
    );
}

#[test]
fn v1_checked_in_index_answers_as_recorded() {
    let expected = read_expected(&v1_dir(), 1);
    check_checked_in(&v1_dir(), &expected, &V1_SETTINGS, "golden-v1");
}

#[test]
fn v1_checked_in_header_is_read_as_written() {
    let dir = copy_fixture(&v1_dir());
    let index = Generation::open(dir.path()).unwrap();
    let info = index.info();
    assert_eq!(info.format_version, 1);
    assert_eq!(info.metric, Metric::L2);
    assert_eq!(info.quantization, Quantization::Int8);
    assert_eq!(index.quantization(), Quantization::Int8);
    assert_eq!((info.code_bytes, info.pq_m), (16, 0));
    assert_eq!((info.dim, info.count), (8, 300));
    assert_eq!((info.m, info.m0, info.ef_construction), (8, 16, 50));
    assert_eq!(info.seed, 42);
    assert_eq!(info.level_counts[0], 300);
    let names: Vec<&str> = info.sections.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        [
            "quant_params",
            "code_norms",
            "level_counts",
            "links_upper",
            "codes",
            "links_level0",
            "ordinal_to_id",
            "id_to_ordinal"
        ]
    );
}

/// Versions 2 (data files) and 3 (directory: MANIFEST, log) changed nothing
/// for int8 but the version words: the current writer's files with their
/// version words set back to 1 (and golden-v1's build id,
/// whose derivation from the seed and parameters is not part of the format)
/// and the CRCs covering them recomputed are golden-v1 byte for byte.
/// A version-4 MANIFEST of a generation without a log (64 bytes: the
/// version-3 fields, a zero log bound, reserved zero, CRC at 60) in the
/// 48-byte layout of versions 1-3, version word kept, CRC at 40 recomputed.
/// (A fresh MANIFEST is version 6, version 4's layout.)
fn manifest_as_v3_layout(v4: &[u8]) -> Vec<u8> {
    assert_eq!(v4.len(), 64, "a version-4 layout MANIFEST");
    assert_eq!(rd32(v4, 8), 6);
    assert!(v4[12..16].iter().all(|b| *b == 0), "no log flag");
    assert!(v4[40..60].iter().all(|b| *b == 0), "no log bound");
    let mut m = v4[..40].to_vec();
    m.extend_from_slice(&crc32fast::hash(&v4[..40]).to_le_bytes());
    m.extend_from_slice(&[0; 4]);
    m
}

#[test]
fn v1_files_are_a_fresh_int8_build_relabelled_as_version_1() {
    maybe_regenerate();
    let built = golden_build(v1_params());
    let tmp = tempfile::tempdir().unwrap();
    built.write(tmp.path()).unwrap();
    // (file, build id offset, header CRC offset; the CRC covers
    // [0, CRC offset) plus, for the graph, the section table.)
    for (name, id_at, crc_at) in [
        ("MANIFEST", 24usize, 40usize),
        ("g00000001.graph", 80, 252),
        ("g00000001.vectors", 64, 124),
    ] {
        let mut fresh = fs::read(tmp.path().join(name)).unwrap();
        let golden = fs::read(v1_dir().join(name)).unwrap();
        let written = if name == "MANIFEST" { 6 } else { 2 };
        if name == "MANIFEST" {
            fresh = manifest_as_v3_layout(&fresh);
        }
        assert_eq!(fresh.len(), golden.len(), "{name}: length");
        assert_eq!(
            rd32(&fresh, 8),
            written,
            "{name}: the writer writes version {written}"
        );
        assert_eq!(rd32(&golden, 8), 1, "{name}: golden-v1 is version 1");
        wr32(&mut fresh, 8, 1);
        fresh[id_at..id_at + 16].copy_from_slice(&golden[id_at..id_at + 16]);
        let crc = if name.ends_with(".graph") {
            let sections = rd32(&fresh, 68) as usize;
            let mut h = crc32fast::Hasher::new();
            h.update(&fresh[..crc_at]);
            h.update(&fresh[256..256 + 32 * sections]);
            h.finalize()
        } else {
            crc32fast::hash(&fresh[..crc_at])
        };
        wr32(&mut fresh, crc_at, crc);
        let diffs: Vec<usize> = (0..fresh.len())
            .filter(|&i| fresh[i] != golden[i])
            .collect();
        assert!(
            diffs.is_empty(),
            "{name}: the version-1 relabelling of a fresh build differs from golden-v1 at bytes {:?}",
            &diffs[..diffs.len().min(32)]
        );
    }
}

#[test]
fn v1_recorded_queries_are_the_generated_ones() {
    let expected = read_expected(&v1_dir(), 1);
    for (e, q) in expected.iter().zip(golden_queries()) {
        assert_eq!(
            e.query.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            q.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
    }
}

// ---------------------------------------------------------------------------
// Version 2: the current writer.

#[test]
fn v2_checked_in_indexes_answer_as_recorded() {
    for fx in &V2_INDEXES {
        let expected = read_expected(&fx.dir(), V2_SETTINGS.len());
        check_checked_in(
            &fx.dir(),
            &expected,
            &V2_SETTINGS,
            &format!("golden-v2/{}", fx.name),
        );
    }
}

#[test]
fn v2_checked_in_headers_are_read_as_written() {
    for fx in &V2_INDEXES {
        let dir = copy_fixture(&fx.dir());
        let index = Generation::open(dir.path()).unwrap();
        let info = index.info();
        let name = fx.name;
        assert_eq!(
            info.format_version,
            fx.quantization.format_version(fx.metric),
            "{name}"
        );
        assert_eq!(info.metric, fx.metric, "{name}");
        assert_eq!(info.quantization, fx.quantization, "{name}");
        assert_eq!(index.quantization(), fx.quantization, "{name}");
        assert_eq!(info.pq_m, fx.stored_pq_m, "{name}");
        // Traversal codes: half a byte per padded dimension for lvq4x8.
        let code_bytes = if fx.quantization == Quantization::Lvq4x8 {
            8
        } else {
            16
        };
        assert_eq!(info.code_bytes, code_bytes, "{name}");
        assert_eq!((info.dim, info.count), (8, 300), "{name}");
        assert_eq!(
            (info.m, info.m0, info.ef_construction),
            (8, 16, 50),
            "{name}"
        );
        assert_eq!(info.seed, 42, "{name}");
        assert_eq!(info.level_counts[0], 300, "{name}");
        assert_eq!(
            info.sections.len(),
            fx.sections.len(),
            "{name}: {:?}",
            info.sections
        );
        for (got, want) in info.sections.iter().zip(fx.sections) {
            assert_eq!(got.0, want.0, "{name}: section order");
            if want.1 != 0 {
                assert_eq!(got.2, want.1, "{name}: section {} length", want.0);
            }
        }
        // The header word at 104 is the quantizer parameter.
        let g = fs::read(dir.path().join(FILES[1])).unwrap();
        assert_eq!(
            rd32(&g, 104) as usize,
            fx.stored_pq_m,
            "{name}: quant_param"
        );
        assert_eq!(rd32(&g, 60), fx.quantization.code(), "{name}: quantization");
    }
}

#[test]
fn v2_fresh_builds_reproduce_checked_in_files() {
    for fx in &V2_INDEXES {
        let name = fx.name;
        let expected = read_expected(&fx.dir(), V2_SETTINGS.len());
        let built = fx.build();
        let g = fs::read(fx.dir().join(FILES[1])).unwrap();
        let v = fs::read(fx.dir().join(FILES[2])).unwrap();
        assert!(
            built.graph_bytes() == g.as_slice(),
            "{name}: graph file differs from the checked-in golden-v2 graph"
        );
        assert!(
            built.vectors_bytes() == v.as_slice(),
            "{name}: vectors file differs from the checked-in golden-v2 vectors"
        );
        let tmp = tempfile::tempdir().unwrap();
        built.write(tmp.path()).unwrap();
        for file in FILES {
            let mut fresh = fs::read(tmp.path().join(file)).unwrap();
            if file == "MANIFEST" {
                // The checked-in MANIFESTs are directory version 3 (48
                // bytes); a fresh one is version 4 with no log bound.
                fresh = manifest_as_v3_layout(&fresh);
                wr32(&mut fresh, 8, 3);
                let crc = crc32fast::hash(&fresh[..40]);
                wr32(&mut fresh, 40, crc);
            }
            assert!(
                fresh == fs::read(fx.dir().join(file)).unwrap(),
                "{name}: {file} differs from the checked-in one"
            );
        }
        // And the fresh in-memory index answers as recorded.
        check(
            &built.into_index().unwrap(),
            &expected,
            &V2_SETTINGS,
            &format!("{name}: fresh build"),
        );
    }
}

#[test]
fn v2_recorded_queries_are_the_generated_ones() {
    for fx in &V2_INDEXES {
        let expected = read_expected(&fx.dir(), V2_SETTINGS.len());
        for (e, q) in expected.iter().zip(golden_queries()) {
            assert_eq!(
                e.query.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                q.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "{}",
                fx.name
            );
        }
    }
}

/// The v2 int8 index is the v1 one with the version bumped, so it answers
/// golden-v1's queries exactly as golden-v1 recorded.
#[test]
fn v2_int8_answers_like_v1() {
    let v1 = read_expected(&v1_dir(), 1);
    let v2 = read_expected(&V2_INDEXES[0].dir(), V2_SETTINGS.len());
    assert_eq!(V2_INDEXES[0].name, "int8");
    for (i, (a, b)) in v1.iter().zip(&v2).enumerate() {
        assert_eq!(a.groups[0], b.groups[0], "query {i}");
    }
}

/// Under L2 and cosine every query's own (nudged) row is found first
/// whatever the codes; results are sorted; and the codes matter: at
/// oversample 1, PQ and binary return different neighbours than rescoring
/// the beam does for at least one query.
#[test]
fn v2_recorded_answers_are_plausible() {
    for fx in &V2_INDEXES {
        let expected = read_expected(&fx.dir(), V2_SETTINGS.len());
        for (i, e) in expected.iter().enumerate() {
            if fx.metric != Metric::InnerProduct {
                assert_eq!(e.groups[0][0].0, (i * 15) as u64, "{}: query {i}", fx.name);
            }
            for g in &e.groups {
                assert!(
                    g.windows(2)
                        .all(|w| f32::from_bits(w[0].1) <= f32::from_bits(w[1].1)),
                    "{}: query {i} not sorted",
                    fx.name
                );
            }
        }
        // lvq4x8 re-ranks on its resident residual codes first, which on
        // this data ranks like float32: oversample 1 changes nothing.
        if !matches!(fx.quantization, Quantization::Int8 | Quantization::Lvq4x8) {
            assert!(
                expected.iter().any(|e| e.groups[0] != e.groups[1]),
                "{}: oversample 1 changed nothing",
                fx.name
            );
        }
    }
}

#[test]
fn fixtures_stay_small() {
    maybe_regenerate();
    let v1 = dir_bytes(&v1_dir());
    assert!(v1 < 100 * 1024, "golden-v1 is {v1} bytes");
    // 300 vectors per index: 15 pages of graph and 6 of vectors each (every
    // section is page-aligned), about 86 KiB per index.
    for fx in &V2_INDEXES {
        let b = dir_bytes(&fx.dir());
        assert!(b < 96 * 1024, "golden-v2/{} is {b} bytes", fx.name);
    }
    let v2 = dir_bytes(&fixtures_root().join("golden-v2"));
    assert!(v2 < 280 * 1024, "golden-v2 is {v2} bytes");
}

// ---------------------------------------------------------------------------
// Directory version 4: `golden-v4/` holds the MANIFEST and log that a fixed
// script of writes (plain records and two begin/commit batches) leaves on
// a copy of `golden-v2/int8/` (whose data files it shares, so they are not
// checked in twice). Regenerated with STRATA_REGENERATE_GOLDEN_V4=1.
// ---------------------------------------------------------------------------

const V4_FILES: [&str; 2] = ["MANIFEST", "g00000001.log"];

fn v4_dir() -> PathBuf {
    fixtures_root().join("golden-v4")
}

/// A deterministic vector of the script.
fn v4_vector(i: usize) -> Vec<f32> {
    (0..8)
        .map(|j| i as f32 * 0.25 - 1.0 + j as f32 * 0.125)
        .collect()
}

/// The script, on a writer of a copy of golden-v2/int8.
fn v4_script(dir: &Path) {
    use strata::log::Op;
    use strata::{BatchOptions, Durability, Writer};
    let w = Writer::open(dir, Durability::EveryOp).unwrap();
    w.insert(1000, &v4_vector(0)).unwrap();
    w.delete(3).unwrap();
    w.upsert(4, &v4_vector(1)).unwrap();
    let ops = [
        Op::Insert {
            id: 1001,
            vector: v4_vector(2),
            labels: vec![],
        },
        Op::Insert {
            id: 1002,
            vector: v4_vector(3),
            labels: vec![],
        },
        Op::Delete { id: 5 },
        Op::Upsert {
            id: 6,
            vector: v4_vector(4),
            labels: vec![],
        },
    ];
    w.apply_batch(&ops, BatchOptions::default()).unwrap();
    // A batch of one is a plain record.
    w.insert_batch(&[1003], &v4_vector(5), BatchOptions::default())
        .unwrap();
    w.delete_batch(&[7, 8], BatchOptions::default()).unwrap();
}

/// A copy of golden-v2/int8 with golden-v4's MANIFEST and log.
fn v4_checked_in_copy() -> tempfile::TempDir {
    let tmp = copy_fixture(&fixtures_root().join("golden-v2/int8"));
    for name in V4_FILES {
        fs::copy(v4_dir().join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

/// `bytes` (a 64-byte-headed MANIFEST or log) with the version word at 8
/// set to `version` and the CRC of `[0, 60)` at 60 recomputed.
fn relabelled(mut bytes: Vec<u8>, version: u32) -> Vec<u8> {
    wr32(&mut bytes, 8, version);
    let crc = crc32fast::hash(&bytes[..60]);
    wr32(&mut bytes, 60, crc);
    bytes
}

/// Since directory version 6 the script writes a version-6 MANIFEST and
/// log; without labels its records are version 4's bytes, so the files
/// differ from golden-v4 only in the version word and the CRC covering it.
#[test]
fn v4_script_writes_version_4_bytes_but_the_version_words() {
    let tmp = copy_fixture(&fixtures_root().join("golden-v2/int8"));
    v4_script(tmp.path());
    for name in V4_FILES {
        let fresh = fs::read(tmp.path().join(name)).unwrap();
        assert_eq!(rd32(&fresh, 8), 6, "{name}: written at directory version 6");
        assert!(
            relabelled(fresh, 4) == fs::read(v4_dir().join(name)).unwrap(),
            "golden-v4/{name} differs from what the script writes, relabelled as version 4"
        );
    }
}

/// `Writer::open` rewrites a version-4 log as version 6 (same records)
/// and the MANIFEST at version 6; the contents stay as they were.
#[test]
fn a_version_4_log_is_upgraded_by_the_writer() {
    use strata::{Durability, Writer};
    let tmp = v4_checked_in_copy();
    let before = fs::read(tmp.path().join("g00000001.log")).unwrap();
    let w = Writer::open(tmp.path(), Durability::EveryOp).unwrap();
    let live = w.live();
    assert_eq!(live.stats().live, 300);
    drop(live);
    drop(w);
    let log = fs::read(tmp.path().join("g00000001.log")).unwrap();
    let m = fs::read(tmp.path().join("MANIFEST")).unwrap();
    assert_eq!((rd32(&log, 8), rd32(&m, 8)), (6, 6));
    // Batches are carried as plain records: same operations, same answers.
    let (_, old_ops, _) = strata::log::parse_log(&before).unwrap();
    let (_, new_ops, _) = strata::log::parse_log(&log).unwrap();
    assert_eq!(old_ops, new_ops);
}

#[test]
fn v4_checked_in_log_replays_as_recorded() {
    let tmp = v4_checked_in_copy();
    let m = fs::read(tmp.path().join("MANIFEST")).unwrap();
    let log = fs::read(tmp.path().join("g00000001.log")).unwrap();
    // MANIFEST: version 4, the log flag, the bound = the whole log.
    assert_eq!((m.len(), rd32(&m, 8), rd32(&m, 12)), (64, 4, 1));
    assert_eq!(
        u64::from_le_bytes(m[40..48].try_into().unwrap()),
        log.len() as u64
    );
    assert_eq!(u64::from_le_bytes(m[48..56].try_into().unwrap()), 14);
    let (info, ops, report) = strata::log::parse_log(&log).unwrap();
    assert_eq!((info.generation, info.dim, rd32(&log, 8)), (1, 8, 4));
    assert_eq!(
        (ops.len(), report.records, report.batches, report.torn_bytes),
        (10, 14, 2, 0)
    );
    let live = strata::Index::open(tmp.path()).unwrap();
    let s = live.stats();
    assert_eq!(
        (s.base_count, s.deleted, s.inserted, s.live, s.log_records),
        (300, 6, 6, 300, 14)
    );
    for id in [3, 5, 7, 8] {
        assert!(!live.contains(id), "{id} deleted");
    }
    for (id, v) in [(1000, 0), (4, 1), (1001, 2), (1002, 3), (6, 4), (1003, 5)] {
        let hit = live.exact_search(&v4_vector(v), 1).unwrap();
        assert_eq!((hit[0].id, hit[0].distance), (id, 0.0), "id {id}");
    }
    // The same log with its last batch's commit cut off: that batch is torn.
    let cut = log.len() - 1;
    fs::write(tmp.path().join("g00000001.log"), &log[..cut]).unwrap();
    let m_old = {
        // The bound would (rightly) refuse the cut log: drop the flag.
        let mut m = m.clone();
        wr32(&mut m, 12, 0);
        m[40..56].fill(0);
        let crc = crc32fast::hash(&m[..60]);
        wr32(&mut m, 60, crc);
        m
    };
    assert!(strata::Index::open(tmp.path()).is_err(), "below the bound");
    fs::write(tmp.path().join("MANIFEST"), m_old).unwrap();
    let live = strata::Index::open(tmp.path()).unwrap();
    assert!(
        live.contains(7) && live.contains(8),
        "the torn batch is dropped whole"
    );
    assert_eq!(live.stats().log_records, 10);
}

// ---------------------------------------------------------------------------
// Version 6: labels. `golden-v6/labels/` is golden-v2/int8's data built
// with labels (data files of version 6), plus the MANIFEST and log a
// script of labelled writes leaves on it. Regenerated with
// STRATA_REGENERATE_GOLDEN_V6=1.
// ---------------------------------------------------------------------------

const V6_FILES: [&str; 4] = [
    "MANIFEST",
    "g00000001.graph",
    "g00000001.vectors",
    "g00000001.log",
];

/// The label filters whose answers `expected.txt` records, one group each.
const V6_FILTERS: [&str; 3] = [
    "label = 2",
    "label in (100, 3) and not label = 0",
    "not label in (0, 1, 2, 3, 4)",
];

fn v6_dir() -> PathBuf {
    fixtures_root().join("golden-v6/labels")
}

/// Row `i`'s labels: one of five classes, a second label on a third of the
/// rows, none on another third.
fn v6_labels(i: usize) -> Vec<u32> {
    match i % 3 {
        0 => vec![(i % 5) as u32],
        1 => vec![(i % 5) as u32, 100 + (i % 2) as u32],
        _ => vec![],
    }
}

fn v6_build() -> BuiltIndex {
    let data = clustered(300, 8, 4, 0.1, 42);
    let mut b = IndexBuilder::new(8, v1_params()).unwrap();
    for i in 0..300 {
        b.add_with_labels(i as u64, data.row(i), &v6_labels(i))
            .unwrap();
    }
    b.build().unwrap()
}

/// Labelled and plain writes, single and batched.
fn v6_script(dir: &Path) {
    use strata::log::Op;
    use strata::{BatchOptions, Durability, Writer};
    let w = Writer::open(dir, Durability::EveryOp).unwrap();
    w.insert_with_labels(1000, &v4_vector(0), &[7, 2]).unwrap();
    w.upsert_with_labels(4, &v4_vector(1), &[100]).unwrap();
    w.delete(3).unwrap();
    w.insert(1001, &v4_vector(2)).unwrap();
    let ops = [
        Op::Insert {
            id: 1002,
            vector: v4_vector(3),
            labels: vec![2, 100],
        },
        Op::Upsert {
            id: 6,
            vector: v4_vector(4),
            labels: vec![],
        },
        Op::Upsert {
            id: 9,
            vector: v4_vector(5),
            labels: vec![3],
        },
    ];
    w.apply_batch(&ops, BatchOptions::default()).unwrap();
}

fn v6_groups(index: &strata::Index, query: &[f32]) -> Vec<Hits> {
    V6_FILTERS
        .iter()
        .map(|f| {
            let filter = strata::Filter::labels(f).unwrap();
            let sp = SearchParams {
                filter: Some(&filter),
                ..SearchParams::with_ef(EF)
            };
            hits_bits(&index.search(query, K, &sp).unwrap())
        })
        .collect()
}

#[test]
fn v6_fresh_build_and_script_reproduce_checked_in_files() {
    let tmp = tempfile::tempdir().unwrap();
    v6_build().write(tmp.path()).unwrap();
    v6_script(tmp.path());
    if std::env::var("STRATA_REGENERATE_GOLDEN_V6").as_deref() == Ok("1") {
        fs::create_dir_all(v6_dir()).unwrap();
        for name in V6_FILES {
            fs::copy(tmp.path().join(name), v6_dir().join(name)).unwrap();
        }
        let index = strata::Index::open(tmp.path()).unwrap();
        let mut text = format!(
            "# strata golden-v6/labels: golden-v2/int8's data with labels v6_labels(i), then v6_script's log\n\
             # search k={K} ef={EF}, one group per filter: {}\n",
            V6_FILTERS.join(" | ")
        );
        for q in golden_queries() {
            text.push_str(&format_line(&q, &v6_groups(&index, &q)));
            text.push('\n');
        }
        fs::write(v6_dir().join("expected.txt"), text).unwrap();
    }
    for name in V6_FILES {
        assert!(
            fs::read(tmp.path().join(name)).unwrap() == fs::read(v6_dir().join(name)).unwrap(),
            "golden-v6/labels/{name} differs from what the build and script write"
        );
    }
}

#[test]
fn v6_checked_in_index_answers_as_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    for name in V6_FILES {
        fs::copy(v6_dir().join(name), tmp.path().join(name)).unwrap();
    }
    let g = fs::read(tmp.path().join("g00000001.graph")).unwrap();
    let log = fs::read(tmp.path().join("g00000001.log")).unwrap();
    let m = fs::read(tmp.path().join("MANIFEST")).unwrap();
    assert_eq!((rd32(&g, 8), rd32(&log, 8), rd32(&m, 8)), (6, 6, 6));
    let index = strata::Index::open(tmp.path()).unwrap();
    index.with_generation(|g| {
        g.verify().unwrap();
        let info = g.info();
        assert_eq!(info.format_version, 6);
        assert_eq!(info.sections.last().unwrap().0, "labels");
        // Classes 0..5, and 100, 101 on a third of the rows.
        assert_eq!((info.labels, info.label_postings), (7, 200 + 100));
    });
    assert_eq!(index.labels(1000).unwrap(), [2, 7]);
    assert_eq!(index.labels(4).unwrap(), [100]);
    assert_eq!(index.labels(6).unwrap(), Vec::<u32>::new());
    assert_eq!(index.labels(10).unwrap(), v6_labels(10));
    assert!(index.labels(3).is_err(), "deleted");
    let text = fs::read_to_string(v6_dir().join("expected.txt")).unwrap();
    let expected = parse_expected(&text);
    assert_eq!(expected.len(), QUERIES);
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(e.groups.len(), V6_FILTERS.len());
        assert_eq!(v6_groups(&index, &e.query), e.groups, "query {i}");
    }
}
