//! The softphone's per-tick audio work: resampling 20 ms between a sound card's rate and the
//! 8 kHz frames of the call, both ways.

use criterion::{Criterion, criterion_group, criterion_main};
use santral_phone::resample::Resampler;
use std::hint::black_box;

fn resampling(c: &mut Criterion) {
    let capture: Vec<f32> = (0..960).map(|i| ((i as f32) * 0.05).sin() * 0.5).collect();
    let playback: Vec<f32> = (0..160).map(|i| ((i as f32) * 0.3).sin() * 0.5).collect();
    let mut out = Vec::with_capacity(2048);

    let mut down = Resampler::new(48_000, 8_000);
    c.bench_function("resample 20 ms 48k->8k (capture)", |b| {
        b.iter(|| {
            out.clear();
            down.process(black_box(&capture), &mut out);
            black_box(out.len())
        })
    });
    let mut up = Resampler::new(8_000, 48_000);
    c.bench_function("resample 20 ms 8k->48k (playback)", |b| {
        b.iter(|| {
            out.clear();
            up.process(black_box(&playback), &mut out);
            black_box(out.len())
        })
    });
    let mut odd = Resampler::new(44_100, 8_000);
    let capture_44k: Vec<f32> = capture.iter().copied().cycle().take(882).collect();
    c.bench_function("resample 20 ms 44.1k->8k (capture)", |b| {
        b.iter(|| {
            out.clear();
            odd.process(black_box(&capture_44k), &mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, resampling);
criterion_main!(benches);
