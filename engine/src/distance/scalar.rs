//! Portable reference kernels.
//!
//! Element `i` accumulates into lane `i % 64` with a fused multiply-add, and
//! the lanes are summed in a fixed tree order (`reduce64`): exactly the order the
//! SIMD backends use, so their results are bit-identical to these.

use super::{reduce16, reduce64};

/// Inner product of two equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        acc[i & 63] = x.mul_add(*y, acc[i & 63]);
    }
    reduce64(&acc)
}

/// Squared Euclidean distance of two equal-length slices.
pub fn l2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 64];
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x - y;
        acc[i & 63] = d.mul_add(d, acc[i & 63]);
    }
    reduce64(&acc)
}

/// Inner product of an f32 slice with u8 codes (each code taken as its integer value).
pub fn dot_u8(a: &[f32], c: &[u8]) -> f32 {
    let mut acc = [0f32; 64];
    for (i, (x, y)) in a.iter().zip(c).enumerate() {
        acc[i & 63] = x.mul_add(*y as f32, acc[i & 63]);
    }
    reduce64(&acc)
}

/// Exact integer inner product of u8 codes with i8 weights.
pub fn dot_u8_i8(c: &[u8], w: &[i8]) -> i32 {
    c.iter().zip(w).map(|(a, b)| *a as i32 * *b as i32).sum()
}

/// Exact `Σ nibble_j · w[j]` over 4-bit codes packed two per byte
/// ([`super::NIBBLE_CHUNK`] layout): in the chunk of code bytes starting
/// at `b` (64 bytes, the last one `r ≤ 64`), byte `b + i` holds component
/// `2b + i` in its low nibble and `2b + r + i` in its high nibble, so `w`
/// is in natural order and twice as long as `c`. Components past `w`
/// count as zero.
pub fn dot_u4_i8(c: &[u8], w: &[i8]) -> i32 {
    let n = c.len();
    let wt = |j: usize| w.get(j).copied().unwrap_or(0) as i32;
    let mut sum = 0i32;
    let mut b = 0;
    while b < n {
        let r = (n - b).min(super::NIBBLE_CHUNK);
        for i in 0..r {
            let x = c[b + i];
            sum += (x & 15) as i32 * wt(2 * b + i) + (x >> 4) as i32 * wt(2 * b + r + i);
        }
        b += r;
    }
    sum
}

/// Table sum for asymmetric distance computation: `Σ_s table[256·s + code[s]]`
/// over the code's bytes (16 lanes, summed in the fixed tree order). Bytes
/// whose row lies outside the table count as zero.
pub fn adc(table: &[f32], code: &[u8]) -> f32 {
    let mut acc = [0f32; 16];
    for (s, &c) in code.iter().enumerate() {
        acc[s & 15] += table.get(s * 256 + c as usize).copied().unwrap_or(0.0);
    }
    reduce16(&acc)
}
