//! AVX-512F and AVX2+FMA kernels for x86-64.
//!
//! Both emulate the scalar reference's 64 lanes (AVX-512: four 16-wide
//! registers; AVX2: eight 8-wide registers) and its reduction order, so they
//! are bit-identical to [`super::scalar`].
//!
//! Safety, for the whole file: every kernel here is a `#[target_feature]`
//! function; the only way to reach one is through the `Kernels` values built
//! by [`best`] and [`all`], which check the required features with
//! `is_x86_feature_detected!` first. Loads read `LANES` elements at offsets
//! `i` with `i + 16 <= n`, where `n` is the shorter slice length rounded down
//! to a multiple of 16, so every load is in bounds.

use super::Kernels;
use std::arch::x86_64::*;

/// The fastest backend this CPU supports, if any beats the scalar one.
pub(super) fn best() -> Option<Kernels> {
    all().into_iter().next()
}

/// Every x86 backend this CPU supports, fastest first.
pub(super) fn all() -> Vec<Kernels> {
    let mut v = Vec::new();
    let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    if is_x86_feature_detected!("avx512f") {
        let vnni = is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni");
        v.push(Kernels {
            name: if vnni { "avx512+vnni" } else { "avx512" },
            dot: dot_avx512_safe,
            l2: l2_avx512_safe,
            dot_u8: dot_u8_avx512_safe,
            adc: adc_avx512_safe,
            dot_u8_i8: if vnni {
                dot_u8_i8_vnni_safe
            } else if avx2 {
                dot_u8_i8_avx2_safe
            } else {
                super::scalar::dot_u8_i8
            },
            dot_u4_i8: if vnni {
                dot_u4_i8_vnni_safe
            } else if avx2 {
                dot_u4_i8_avx2_safe
            } else {
                super::scalar::dot_u4_i8
            },
        });
    }
    if avx2 {
        v.push(Kernels {
            name: "avx2",
            dot: dot_avx2_safe,
            l2: l2_avx2_safe,
            dot_u8: dot_u8_avx2_safe,
            dot_u8_i8: dot_u8_i8_avx2_safe,
            dot_u4_i8: dot_u4_i8_avx2_safe,
            adc: adc_avx2_safe,
        });
    }
    v
}

macro_rules! safe_wrapper {
    ($safe:ident, $inner:ident, $b:ty, $feat:literal) => {
        fn $safe(a: &[f32], b: &[$b]) -> f32 {
            // SAFETY: this wrapper is only stored in a `Kernels` value by
            // `all()`, after `is_x86_feature_detected!` confirmed $feat.
            unsafe { $inner(a, b) }
        }
    };
}

safe_wrapper!(dot_avx512_safe, dot_avx512, f32, "avx512f");
safe_wrapper!(l2_avx512_safe, l2_avx512, f32, "avx512f");
safe_wrapper!(dot_u8_avx512_safe, dot_u8_avx512, u8, "avx512f");
safe_wrapper!(dot_avx2_safe, dot_avx2, f32, "avx2,fma");
safe_wrapper!(l2_avx2_safe, l2_avx2, f32, "avx2,fma");
safe_wrapper!(dot_u8_avx2_safe, dot_u8_avx2, u8, "avx2,fma");

fn dot_u8_i8_vnni_safe(c: &[u8], w: &[i8]) -> i32 {
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx512f, avx512bw and avx512vnni.
    unsafe { dot_u8_i8_vnni(c, w) }
}

fn dot_u4_i8_vnni_safe(c: &[u8], w: &[i8]) -> i32 {
    if w.len() < 2 * c.len() {
        return super::scalar::dot_u4_i8(c, w);
    }
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx512f, avx512bw and
    // avx512vnni; `w` holds twice `c`'s length.
    unsafe { dot_u4_i8_vnni(c, w) }
}

fn dot_u4_i8_avx2_safe(c: &[u8], w: &[i8]) -> i32 {
    if w.len() < 2 * c.len() {
        return super::scalar::dot_u4_i8(c, w);
    }
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx2 (and fma); `w` holds twice
    // `c`'s length.
    unsafe { dot_u4_i8_avx2(c, w) }
}

fn adc_avx512_safe(table: &[f32], code: &[u8]) -> f32 {
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx512f.
    unsafe { adc_avx512(table, code) }
}

fn adc_avx2_safe(table: &[f32], code: &[u8]) -> f32 {
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx2 (and fma).
    unsafe { adc_avx2(table, code) }
}

fn dot_u8_i8_avx2_safe(c: &[u8], w: &[i8]) -> i32 {
    // SAFETY: only stored in a `Kernels` value by `all()` after
    // `is_x86_feature_detected!` confirmed avx2 (and fma).
    unsafe { dot_u8_i8_avx2(c, w) }
}

#[inline]
fn full_len(a: usize, b: usize) -> usize {
    a.min(b) / 16 * 16
}

// ---------------------------------------------------------------- AVX-512

#[target_feature(enable = "avx512f")]
fn reduce_avx512(a0: __m512, a1: __m512, a2: __m512, a3: __m512) -> f32 {
    let s = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
    let lo = _mm512_castps512_ps256(s);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
    let r8 = _mm256_add_ps(lo, hi);
    let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps::<1>(r8));
    let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
    let r1 = _mm_add_ss(r2, _mm_shuffle_ps::<1>(r2, r2));
    _mm_cvtss_f32(r1)
}

/// Loads 16 f32 at `p[i..i + 16]`.
#[target_feature(enable = "avx512f")]
unsafe fn ld16(p: &[f32], i: usize) -> __m512 {
    debug_assert!(i + 16 <= p.len());
    // SAFETY: callers pass `i + 16 <= p.len()` (see the file's safety note).
    unsafe { _mm512_loadu_ps(p.as_ptr().add(i)) }
}

/// Loads 16 u8 codes at `p[i..i + 16]` widened to f32.
#[target_feature(enable = "avx512f")]
unsafe fn ld16_u8(p: &[u8], i: usize) -> __m512 {
    debug_assert!(i + 16 <= p.len());
    // SAFETY: callers pass `i + 16 <= p.len()`; the load is unaligned-tolerant.
    let bytes = unsafe { _mm_loadu_si128(p.as_ptr().add(i) as *const __m128i) };
    _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes))
}

macro_rules! avx512_kernel {
    ($name:ident, $b:ty, $load_b:ident, |$x:ident, $y:ident, $acc:ident| $step:expr) => {
        #[target_feature(enable = "avx512f")]
        unsafe fn $name(a: &[f32], b: &[$b]) -> f32 {
            let n = full_len(a.len(), b.len());
            let z = _mm512_setzero_ps();
            let (mut c0, mut c1, mut c2, mut c3) = (z, z, z, z);
            let mut i = 0;
            // SAFETY: every load below reads at i + 16 <= n <= a.len(), b.len().
            unsafe {
                while i + 64 <= n {
                    let ($x, $y, $acc) = (ld16(a, i), $load_b(b, i), c0);
                    c0 = $step;
                    let ($x, $y, $acc) = (ld16(a, i + 16), $load_b(b, i + 16), c1);
                    c1 = $step;
                    let ($x, $y, $acc) = (ld16(a, i + 32), $load_b(b, i + 32), c2);
                    c2 = $step;
                    let ($x, $y, $acc) = (ld16(a, i + 48), $load_b(b, i + 48), c3);
                    c3 = $step;
                    i += 64;
                }
                if i + 16 <= n {
                    let ($x, $y, $acc) = (ld16(a, i), $load_b(b, i), c0);
                    c0 = $step;
                }
                if i + 32 <= n {
                    let ($x, $y, $acc) = (ld16(a, i + 16), $load_b(b, i + 16), c1);
                    c1 = $step;
                }
                if i + 48 <= n {
                    let ($x, $y, $acc) = (ld16(a, i + 32), $load_b(b, i + 32), c2);
                    c2 = $step;
                }
            }
            reduce_avx512(c0, c1, c2, c3)
        }
    };
}

avx512_kernel!(dot_avx512, f32, ld16, |x, y, acc| _mm512_fmadd_ps(
    x, y, acc
));
avx512_kernel!(l2_avx512, f32, ld16, |x, y, acc| {
    let d = _mm512_sub_ps(x, y);
    _mm512_fmadd_ps(d, d, acc)
});
avx512_kernel!(dot_u8_avx512, u8, ld16_u8, |x, y, acc| _mm512_fmadd_ps(
    x, y, acc
));

// ---------------------------------------------------------------- AVX2

/// Loads 8 f32 at `p[i..i + 8]`.
#[target_feature(enable = "avx2,fma")]
unsafe fn ld8(p: &[f32], i: usize) -> __m256 {
    debug_assert!(i + 8 <= p.len());
    // SAFETY: callers pass `i + 8 <= p.len()`.
    unsafe { _mm256_loadu_ps(p.as_ptr().add(i)) }
}

/// Loads 8 u8 codes at `p[i..i + 8]` widened to f32.
#[target_feature(enable = "avx2,fma")]
unsafe fn ld8_u8(p: &[u8], i: usize) -> __m256 {
    debug_assert!(i + 8 <= p.len());
    // SAFETY: callers pass `i + 8 <= p.len()`; `_mm_loadl_epi64` reads 8 bytes.
    let bytes = unsafe { _mm_loadl_epi64(p.as_ptr().add(i) as *const __m128i) };
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes))
}

#[target_feature(enable = "avx2,fma")]
fn reduce_avx2(r: [__m256; 8]) -> f32 {
    // Lane group g of 16 is (r[2g], r[2g + 1]); sum groups as (g0 + g1) + (g2 + g3).
    let lo = _mm256_add_ps(_mm256_add_ps(r[0], r[2]), _mm256_add_ps(r[4], r[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(r[1], r[3]), _mm256_add_ps(r[5], r[7]));
    let r8 = _mm256_add_ps(lo, hi);
    let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps::<1>(r8));
    let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
    let r1 = _mm_add_ss(r2, _mm_shuffle_ps::<1>(r2, r2));
    _mm_cvtss_f32(r1)
}

macro_rules! avx2_kernel {
    ($name:ident, $b:ty, $load_b:ident, |$x:ident, $y:ident, $acc:ident| $step:expr) => {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name(a: &[f32], b: &[$b]) -> f32 {
            let n = full_len(a.len(), b.len());
            let mut r = [_mm256_setzero_ps(); 8];
            let mut i = 0;
            // SAFETY: every load below reads at i + 8 <= n <= a.len(), b.len().
            unsafe {
                while i + 64 <= n {
                    for j in 0..8 {
                        let ($x, $y, $acc) = (ld8(a, i + 8 * j), $load_b(b, i + 8 * j), r[j]);
                        r[j] = $step;
                    }
                    i += 64;
                }
                let mut j = 0;
                while i + 8 <= n {
                    let ($x, $y, $acc) = (ld8(a, i), $load_b(b, i), r[j]);
                    r[j] = $step;
                    i += 8;
                    j += 1;
                }
            }
            reduce_avx2(r)
        }
    };
}

avx2_kernel!(dot_avx2, f32, ld8, |x, y, acc| _mm256_fmadd_ps(x, y, acc));
avx2_kernel!(l2_avx2, f32, ld8, |x, y, acc| {
    let d = _mm256_sub_ps(x, y);
    _mm256_fmadd_ps(d, d, acc)
});
avx2_kernel!(dot_u8_avx2, u8, ld8_u8, |x, y, acc| _mm256_fmadd_ps(
    x, y, acc
));

// ---------------------------------------------------------------- integer

/// Exact `Σ c[i] · w[i]` with AVX-512 VNNI (`vpdpbusd`: 64 products per
/// instruction). Integer sums are exact, so any order equals the scalar one.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_u8_i8_vnni(c: &[u8], w: &[i8]) -> i32 {
    let n = full_len(c.len(), w.len());
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n <= c.len(), w.len().
        let (a, b) = unsafe {
            (
                _mm512_loadu_si512(c.as_ptr().add(i) as *const _),
                _mm512_loadu_si512(w.as_ptr().add(i) as *const _),
            )
        };
        acc = _mm512_dpbusd_epi32(acc, a, b);
        i += 64;
    }
    if i < n {
        let mask: u64 = (1u64 << (n - i)) - 1;
        // SAFETY: masked loads touch only the n - i < 64 bytes selected by
        // `mask`, all below n; masked-off bytes are not accessed.
        let (a, b) = unsafe {
            (
                _mm512_maskz_loadu_epi8(mask, c.as_ptr().add(i) as *const i8),
                _mm512_maskz_loadu_epi8(mask, w.as_ptr().add(i)),
            )
        };
        acc = _mm512_dpbusd_epi32(acc, a, b);
    }
    _mm512_reduce_add_epi32(acc)
}

/// [`super::scalar::dot_u4_i8`] with VNNI: per 64-byte chunk, the low
/// nibbles against `w[2b..2b+64]` and the high ones against
/// `w[2b+64..2b+128]`, two `vpdpbusd`; the last, shorter chunk with masked
/// loads. Integer sums: exact, so equal to the scalar kernel.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_u4_i8_vnni(c: &[u8], w: &[i8]) -> i32 {
    debug_assert!(w.len() >= 2 * c.len());
    let n = c.len();
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = _mm512_setzero_si512();
    let mut b = 0;
    while b + 64 <= n {
        // SAFETY: b + 64 <= n = c.len() and 2b + 128 <= 2n <= w.len().
        let (a, wl, wh) = unsafe {
            (
                _mm512_loadu_si512(c.as_ptr().add(b) as *const _),
                _mm512_loadu_si512(w.as_ptr().add(2 * b) as *const _),
                _mm512_loadu_si512(w.as_ptr().add(2 * b + 64) as *const _),
            )
        };
        let lo = _mm512_and_si512(a, low);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(a), low);
        acc = _mm512_dpbusd_epi32(acc, lo, wl);
        acc = _mm512_dpbusd_epi32(acc, hi, wh);
        b += 64;
    }
    if b < n {
        let r = n - b;
        let mask: u64 = (1u64 << r) - 1;
        // SAFETY: masked loads touch only the r < 64 selected bytes: code
        // bytes b..n, weights 2b..2b+r and 2b+r..2b+2r = 2n <= w.len().
        let (a, wl, wh) = unsafe {
            (
                _mm512_maskz_loadu_epi8(mask, c.as_ptr().add(b) as *const i8),
                _mm512_maskz_loadu_epi8(mask, w.as_ptr().add(2 * b)),
                _mm512_maskz_loadu_epi8(mask, w.as_ptr().add(2 * b + r)),
            )
        };
        let lo = _mm512_and_si512(a, low);
        let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(a), low);
        acc = _mm512_dpbusd_epi32(acc, lo, wl);
        acc = _mm512_dpbusd_epi32(acc, hi, wh);
    }
    _mm512_reduce_add_epi32(acc)
}

/// [`super::scalar::dot_u4_i8`] with AVX2: a 64-byte chunk as two 32-byte
/// halves, nibbles times weights with `vpmaddubsw` (at most 15 · 127 · 2,
/// no saturation) then `vpmaddwd` into i32; the last, shorter chunk in
/// scalar code. Exact, so equal to the scalar kernel.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u4_i8_avx2(c: &[u8], w: &[i8]) -> i32 {
    debug_assert!(w.len() >= 2 * c.len());
    let n = c.len();
    let low = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_si256();
    let mut b = 0;
    while b + 64 <= n {
        for half in [0, 32] {
            // SAFETY: b + 64 <= n = c.len(); weights up to 2b + 128 <= 2n <= w.len().
            let (a, wl, wh) = unsafe {
                (
                    _mm256_loadu_si256(c.as_ptr().add(b + half) as *const __m256i),
                    _mm256_loadu_si256(w.as_ptr().add(2 * b + half) as *const __m256i),
                    _mm256_loadu_si256(w.as_ptr().add(2 * b + 64 + half) as *const __m256i),
                )
            };
            let lo = _mm256_and_si256(a, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(a), low);
            let p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, wl), _mm256_maddubs_epi16(hi, wh));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
        }
        b += 64;
    }
    reduce_epi32_avx2(acc) + super::scalar::dot_u4_i8(&c[b..], &w[2 * b..])
}

/// Exact `Σ c[i] · w[i]` with AVX2: widen to i16, `vpmaddwd` into i32.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_u8_i8_avx2(c: &[u8], w: &[i8]) -> i32 {
    let n = full_len(c.len(), w.len());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= c.len(), w.len().
        let (a, b) = unsafe {
            (
                _mm_loadu_si128(c.as_ptr().add(i) as *const __m128i),
                _mm_loadu_si128(w.as_ptr().add(i) as *const __m128i),
            )
        };
        let prod = _mm256_madd_epi16(_mm256_cvtepu8_epi16(a), _mm256_cvtepi8_epi16(b));
        acc = _mm256_add_epi32(acc, prod);
        i += 16;
    }
    reduce_epi32_avx2(acc)
}

/// Sums the eight i32 lanes of `acc` (integer sums: any order is exact).
#[target_feature(enable = "avx2")]
fn reduce_epi32_avx2(acc: __m256i) -> i32 {
    let s = _mm_add_epi32(
        _mm256_castsi256_si128(acc),
        _mm256_extracti128_si256::<1>(acc),
    );
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

// ---------------------------------------------------------------- tables

/// Code bytes whose table rows are all inside `table`, rounded down to 16.
#[inline]
fn adc_len(table: &[f32], code: &[u8]) -> usize {
    code.len().min(table.len() / 256) / 16 * 16
}

/// `Σ_s table[256·s + code[s]]` with 16-lane gathers; lane `j` sums bytes
/// `j, j + 16, …` in order, as the scalar kernel does.
#[target_feature(enable = "avx512f")]
unsafe fn adc_avx512(table: &[f32], code: &[u8]) -> f32 {
    let n = adc_len(table, code);
    let rows = _mm512_setr_epi32(
        0, 256, 512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816, 3072, 3328, 3584, 3840,
    );
    let mut acc = _mm512_setzero_ps();
    let mut s = 0;
    while s < n {
        // SAFETY: s + 16 <= n <= code.len(); the gather reads
        // table[256·(s + j) + code[s + j]] < 256·n <= table.len() for every lane j.
        unsafe {
            let bytes = _mm_loadu_si128(code.as_ptr().add(s) as *const __m128i);
            let idx = _mm512_add_epi32(_mm512_cvtepu8_epi32(bytes), rows);
            let vals = _mm512_i32gather_ps::<4>(idx, table.as_ptr().add(s * 256));
            acc = _mm512_add_ps(acc, vals);
        }
        s += 16;
    }
    let lo = _mm512_castps512_ps256(acc);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc)));
    reduce8_avx(_mm256_add_ps(lo, hi))
}

/// The same with two 8-lane AVX2 gathers (lanes 0–7 and 8–15).
#[target_feature(enable = "avx2,fma")]
unsafe fn adc_avx2(table: &[f32], code: &[u8]) -> f32 {
    let n = adc_len(table, code);
    let rows_lo = _mm256_setr_epi32(0, 256, 512, 768, 1024, 1280, 1536, 1792);
    let rows_hi = _mm256_setr_epi32(2048, 2304, 2560, 2816, 3072, 3328, 3584, 3840);
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut s = 0;
    while s < n {
        // SAFETY: as in `adc_avx512`: s + 16 <= n, every gathered index < 256·n.
        unsafe {
            let base = table.as_ptr().add(s * 256);
            let b_lo = _mm_loadl_epi64(code.as_ptr().add(s) as *const __m128i);
            let b_hi = _mm_loadl_epi64(code.as_ptr().add(s + 8) as *const __m128i);
            let i_lo = _mm256_add_epi32(_mm256_cvtepu8_epi32(b_lo), rows_lo);
            let i_hi = _mm256_add_epi32(_mm256_cvtepu8_epi32(b_hi), rows_hi);
            lo = _mm256_add_ps(lo, _mm256_i32gather_ps::<4>(base, i_lo));
            hi = _mm256_add_ps(hi, _mm256_i32gather_ps::<4>(base, i_hi));
        }
        s += 16;
    }
    reduce8_avx(_mm256_add_ps(lo, hi))
}

/// Sums 8 lanes as halves 4, 2, 1.
#[target_feature(enable = "avx")]
fn reduce8_avx(r8: __m256) -> f32 {
    let r4 = _mm_add_ps(_mm256_castps256_ps128(r8), _mm256_extractf128_ps::<1>(r8));
    let r2 = _mm_add_ps(r4, _mm_movehl_ps(r4, r4));
    let r1 = _mm_add_ss(r2, _mm_shuffle_ps::<1>(r2, r2));
    _mm_cvtss_f32(r1)
}
