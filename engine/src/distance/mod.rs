//! Distance kernels, chosen once per process by CPU feature detection.
//!
//! Every kernel works on slices whose length is a multiple of [`LANES`]
//! (vectors and codes are stored zero-padded to that length, see
//! `format-spec/graph-file.md`), and every backend accumulates in the same
//! 64 virtual lanes with fused multiply-add and reduces them in the same
//! order, so the SIMD kernels return **bit-identical** results to the
//! portable scalar reference in [`scalar`]. Tests check that equality.

pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

pub use crate::limits::{padded_dim, LANES};

/// A kernel over two f32 slices of equal, padded length.
pub type F32Kernel = fn(&[f32], &[f32]) -> f32;
/// A kernel over an f32 query and u8 codes of equal, padded length.
pub type U8Kernel = fn(&[f32], &[u8]) -> f32;
/// An exact integer kernel over u8 codes and an i8 (quantized) query.
pub type U8I8Kernel = fn(&[u8], &[i8]) -> i32;
/// An exact integer kernel over 4-bit codes packed two per byte and an i8
/// query of twice the length (layout: [`scalar::dot_u4_i8`]).
pub type U4I8Kernel = fn(&[u8], &[i8]) -> i32;

/// Code bytes per chunk of the 4-bit layout ([`scalar::dot_u4_i8`]): one
/// 512-bit register of packed codes, 128 components.
pub const NIBBLE_CHUNK: usize = 64;
/// A table-lookup kernel: a table of 256 floats per code byte, and a code.
pub type AdcKernel = fn(&[f32], &[u8]) -> f32;

/// The set of kernels used for one process.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Name of the backend (`"avx512"`, `"avx2"`, `"scalar"`).
    pub name: &'static str,
    /// Inner product of two f32 vectors.
    pub dot: F32Kernel,
    /// Squared Euclidean distance of two f32 vectors.
    pub l2: F32Kernel,
    /// Inner product of an f32 vector with u8 codes.
    pub dot_u8: U8Kernel,
    /// Exact integer inner product of u8 codes with an i8 vector.
    pub dot_u8_i8: U8I8Kernel,
    /// Exact integer inner product of packed 4-bit codes with an i8 vector.
    pub dot_u4_i8: U4I8Kernel,
    /// Sum of one table entry per code byte (product and binary codes).
    pub adc: AdcKernel,
}

impl Kernels {
    /// The portable scalar kernels (the reference every backend must equal).
    pub const SCALAR: Kernels = Kernels {
        name: "scalar",
        dot: scalar::dot,
        l2: scalar::l2,
        dot_u8: scalar::dot_u8,
        dot_u8_i8: scalar::dot_u8_i8,
        dot_u4_i8: scalar::dot_u4_i8,
        adc: scalar::adc,
    };

    /// The fastest kernels this CPU supports, detected once and cached.
    pub fn detect() -> &'static Kernels {
        static CHOSEN: OnceLock<Kernels> = OnceLock::new();
        CHOSEN.get_or_init(|| {
            if std::env::var_os("STRATA_FORCE_SCALAR").is_some() {
                return Kernels::SCALAR;
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(k) = x86::best() {
                return k;
            }
            Kernels::SCALAR
        })
    }

    /// Every backend available on this CPU (the scalar one first), for tests and benches.
    pub fn available() -> Vec<Kernels> {
        #[allow(unused_mut)]
        let mut all = vec![Kernels::SCALAR];
        #[cfg(target_arch = "x86_64")]
        all.extend(x86::all());
        all
    }
}

/// Hints the CPU to start loading `bytes` (up to the first 8 cache lines)
/// into cache. A hint only: it never faults and changes no result.
#[inline(always)]
pub fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = std::mem::size_of_val(data).min(512);
        let p = data.as_ptr() as *const i8;
        let mut off = 0;
        while off < bytes {
            // SAFETY: `off < size_of_val(data)`, so the address lies inside
            // the slice; prefetch is a hint that never faults or reads.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.add(off)) };
            off += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Sums 16 lane accumulators: halves 8, 4, 2, 1 (the tail of [`reduce64`]).
#[inline]
pub(crate) fn reduce16(acc: &[f32; 16]) -> f32 {
    let mut s = *acc;
    let mut width = 8;
    while width > 0 {
        for j in 0..width {
            s[j] += s[j + width];
        }
        width /= 2;
    }
    s[0]
}

/// Sums 64 lane accumulators in the fixed order all backends use:
/// groups of 16 as `(g0 + g1) + (g2 + g3)`, then halves 8, 4, 2, 1.
#[inline]
pub(crate) fn reduce64(acc: &[f32; 64]) -> f32 {
    let mut s = [0f32; 16];
    for j in 0..16 {
        s[j] = (acc[j] + acc[16 + j]) + (acc[32 + j] + acc[48 + j]);
    }
    reduce16(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn random_vec(rng: &mut impl Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect()
    }

    #[test]
    fn every_backend_is_bit_identical_to_scalar() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let backends = Kernels::available();
        // Under Miri (which checks every SIMD load against its allocation,
        // see .ci/miri) a few shapes suffice: each length still covers the
        // full-block and remainder paths of every kernel.
        let (lens, reps): (&[usize], usize) = if cfg!(miri) {
            (&[16, 80], 1)
        } else {
            (&[16, 32, 48, 64, 80, 128, 384, 400, 1024], 50)
        };
        if cfg!(miri) {
            let names: Vec<&str> = backends.iter().map(|k| k.name).collect();
            eprintln!("backends under test: {names:?}");
        }
        for &len in lens {
            for _ in 0..reps {
                let a = random_vec(&mut rng, len);
                let b = random_vec(&mut rng, len);
                let c: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                let w: Vec<i8> = (0..len).map(|_| rng.gen()).collect();
                let want_int = scalar::dot_u8_i8(&c, &w);
                // A hashed sequence in [-1, 1), not the ChaCha stream: the
                // table is 256 times the vector length, and drawing it from
                // ChaCha dominated the run time under Miri.
                let salt: u32 = rng.gen();
                let table: Vec<f32> = (0..len * 256)
                    .map(|i| {
                        let h = (i as u32 ^ salt).wrapping_mul(0x9E37_79B1);
                        (h >> 8) as f32 / (1u32 << 23) as f32 - 1.0
                    })
                    .collect();
                let want_adc = scalar::adc(&table, &c);
                let want = (
                    scalar::dot(&a, &b),
                    scalar::l2(&a, &b),
                    scalar::dot_u8(&a, &c),
                );
                for k in &backends {
                    let got = ((k.dot)(&a, &b), (k.l2)(&a, &b), (k.dot_u8)(&a, &c));
                    assert_eq!(
                        want.0.to_bits(),
                        got.0.to_bits(),
                        "{} dot len {len}",
                        k.name
                    );
                    assert_eq!(want.1.to_bits(), got.1.to_bits(), "{} l2 len {len}", k.name);
                    assert_eq!(
                        want.2.to_bits(),
                        got.2.to_bits(),
                        "{} dot_u8 len {len}",
                        k.name
                    );
                    let got_int = (k.dot_u8_i8)(&c, &w);
                    assert_eq!(want_int, got_int, "{} dot_u8_i8 len {len}", k.name);
                    // Miri has no shim for the AVX-512 gather
                    // (`llvm.x86.avx512.gather.dps.512`); that one kernel's
                    // bounds argument is in x86.rs and is fuzzed natively.
                    if cfg!(miri) && k.name.starts_with("avx512") {
                        continue;
                    }
                    let got_adc = (k.adc)(&table, &c);
                    assert_eq!(
                        want_adc.to_bits(),
                        got_adc.to_bits(),
                        "{} adc len {len}",
                        k.name
                    );
                }
            }
        }
    }

    #[test]
    fn scalar_kernels_are_close_to_f64_sums() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let a = random_vec(&mut rng, 384);
        let b = random_vec(&mut rng, 384);
        let c: Vec<u8> = (0..384).map(|_| rng.gen()).collect();
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let l2: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum();
        let du: f64 = a.iter().zip(&c).map(|(x, y)| *x as f64 * *y as f64).sum();
        assert!((scalar::dot(&a, &b) as f64 - dot).abs() < 1e-3);
        assert!((scalar::l2(&a, &b) as f64 - l2).abs() < 1e-2);
        assert!((scalar::dot_u8(&a, &c) as f64 - du).abs() < 1e-1);
    }

    #[test]
    fn integer_kernel_handles_extremes_exactly() {
        let c = vec![255u8; 4096];
        let w = vec![-128i8; 4096];
        for k in Kernels::available() {
            assert_eq!((k.dot_u8_i8)(&c, &w), -255 * 128 * 4096, "{}", k.name);
        }
    }

    #[test]
    fn padded_dim_rounds_up_to_lanes() {
        assert_eq!(padded_dim(1), 16);
        assert_eq!(padded_dim(16), 16);
        assert_eq!(padded_dim(17), 32);
        assert_eq!(padded_dim(384), 384);
    }

    /// The 4-bit kernel against an unpacking of its layout (component by
    /// component), and every backend against the scalar one, at every code
    /// length a padded dimension gives (multiples of 8 bytes) up to three
    /// chunks, with extreme values.
    #[test]
    fn nibble_kernel_matches_its_layout_on_every_backend() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(41);
        let max = if cfg!(miri) { 80 } else { 200 };
        for len in (8..=max).step_by(8) {
            for round in 0..if cfg!(miri) { 1 } else { 20 } {
                let c: Vec<u8> = (0..len)
                    .map(|_| if round == 0 { 0xFF } else { rng.gen() })
                    .collect();
                let w: Vec<i8> = (0..2 * len)
                    .map(|_| {
                        if round == 0 {
                            -127
                        } else {
                            rng.gen_range(-127..=127)
                        }
                    })
                    .collect();
                // Component j of the layout: chunk t = j / 128 starts at
                // byte b = 64 t and holds r = min(64, len - b) bytes.
                let nibble = |j: usize| {
                    let b = j / 128 * 64;
                    let r = (len - b).min(NIBBLE_CHUNK);
                    let local = j - 2 * b;
                    if local < r {
                        c[b + local] & 15
                    } else {
                        c[b + local - r] >> 4
                    }
                };
                let want: i32 = (0..2 * len).map(|j| nibble(j) as i32 * w[j] as i32).sum();
                assert_eq!(scalar::dot_u4_i8(&c, &w), want, "scalar len {len}");
                for k in Kernels::available() {
                    assert_eq!((k.dot_u4_i8)(&c, &w), want, "{} len {len}", k.name);
                    // A short weight vector is never read past its end.
                    let short = &w[..w.len() - 8];
                    assert_eq!((k.dot_u4_i8)(&c, short), scalar::dot_u4_i8(&c, short));
                }
            }
        }
    }
}
