//! Distance kernel throughput, every backend side by side, as ratios to the
//! scalar reference. Run: `cargo bench -p strata-benches --bench kernels`.
//!
//! It also answers "query in float or quantized?" for int8 codes: the
//! f32-query kernel (`dot_u8`) against the i8-query integer kernel
//! (`dot_u8_i8`) over the same codes, in cache and out of cache.

use std::hint::black_box;
use std::time::Instant;
use strata::distance::Kernels;

fn time<F: FnMut() -> f32>(reps: usize, mut f: F) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0f32;
        for _ in 0..reps {
            acc += f();
        }
        black_box(acc);
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    best * 1e9
}

fn main() {
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let dim = 384;
    for rows in [1_000usize, 200_000] {
        let codes: Vec<u8> = (0..rows * dim)
            .map(|i| ((i * 2654435761usize) >> 13) as u8)
            .collect();
        let floats: Vec<f32> = codes.iter().map(|&c| c as f32 / 255.0 - 0.5).collect();
        let q: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let q8: Vec<i8> = q.iter().map(|x| (x * 127.0) as i8).collect();
        let reps = if quick { 1_000 } else { 2_000_000 };
        println!(
            "dim {dim}, {rows} rows ({} of codes): ns per call",
            if rows > 10_000 {
                "out of cache"
            } else {
                "in cache"
            }
        );
        println!(
            "{:>12} {:>10} {:>10} {:>10} {:>10}",
            "backend", "dot f32", "l2 f32", "f32 x u8", "i8 x u8"
        );
        let mut base = None;
        for k in Kernels::available() {
            let mut r = 0usize;
            let mut next = || {
                r = (r + 7919) % rows;
                r
            };
            let dot = time(reps, || {
                let i = next();
                (k.dot)(&q, &floats[i * dim..(i + 1) * dim])
            });
            let l2 = time(reps, || {
                let i = next();
                (k.l2)(&q, &floats[i * dim..(i + 1) * dim])
            });
            let fu8 = time(reps, || {
                let i = next();
                (k.dot_u8)(&q, &codes[i * dim..(i + 1) * dim])
            });
            let iu8 = time(reps, || {
                let i = next();
                (k.dot_u8_i8)(&codes[i * dim..(i + 1) * dim], &q8) as f32
            });
            println!(
                "{:>12} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                k.name, dot, l2, fu8, iu8
            );
            let b = *base.get_or_insert((dot, fu8, iu8));
            println!(
                "{:>12} {:>9.2}x {:>10} {:>9.2}x {:>9.2}x   (speed-up over scalar)",
                "",
                b.0 / dot,
                "",
                b.1 / fu8,
                b.2 / iu8
            );
        }
    }
}
