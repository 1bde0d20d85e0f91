//! Prompt decoding: every container/codec we promise, resampled to 8 kHz (and 16 kHz for
//! G.722), cached once and shared, and clear errors that name the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use santral_media::codec::{Codec, FRAME_SAMPLES};
use santral_media::prompt::{PromptCache, PromptError, load_pcm};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "santral-media-prompt-{}-{name}",
        std::process::id()
    ))
}

/// Magnitude of `frequency` in `samples` at `rate`, normalised to amplitude.
fn amplitude_at(samples: &[i16], rate: f64, frequency: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &s) in samples.iter().enumerate() {
        let w = 2.0 * std::f64::consts::PI * frequency * n as f64 / rate;
        re += s as f64 * w.cos();
        im += s as f64 * w.sin();
    }
    2.0 * (re * re + im * im).sqrt() / samples.len() as f64
}

fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f64, frequency: f64) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap_or_else(|e| panic!("{e}"));
    for n in 0..(rate as f64 * seconds) as usize {
        let value = (12000.0
            * (2.0 * std::f64::consts::PI * frequency * n as f64 / rate as f64).sin())
            as i16;
        for channel in 0..channels {
            // Right channel silent: downmix halves the level.
            let _ = writer.write_sample(if channel == 0 { value } else { 0 });
        }
    }
    writer.finalize().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn stereo_44k1_wav_is_downmixed_and_resampled_to_8k_and_16k() {
    let path = temp("stereo.wav");
    write_wav(&path, 44100, 2, 1.0, 1000.0);
    let narrow = load_pcm(&path, 8000).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        (7990..=8010).contains(&narrow.samples.len()),
        "{}",
        narrow.samples.len()
    );
    let middle = &narrow.samples[1000..7000];
    let level = amplitude_at(middle, 8000.0, 1000.0);
    assert!((level - 6000.0).abs() < 300.0, "1 kHz at {level}");
    assert!(amplitude_at(middle, 8000.0, 1500.0) < 100.0);
    let wide = load_pcm(&path, 16000).unwrap_or_else(|e| panic!("{e}"));
    assert!((15980..=16020).contains(&wide.samples.len()));
    let _ = std::fs::remove_file(path);
}

#[test]
fn flac_ogg_and_mp3_prompts_decode_to_the_same_tone() {
    for name in ["tone440.flac", "tone440.ogg", "tone440.mp3"] {
        let pcm = load_pcm(&fixture(name), 8000).unwrap_or_else(|e| panic!("{e}"));
        // MP3 adds encoder delay/padding; allow a few frames either way.
        assert!(
            (7600..=8600).contains(&pcm.samples.len()),
            "{name}: {} samples",
            pcm.samples.len()
        );
        let middle = &pcm.samples[2000..6000];
        let level = amplitude_at(middle, 8000.0, 440.0);
        assert!(
            (level - 16384.0).abs() < 1500.0,
            "{name}: 440 Hz at {level}"
        );
        assert!(
            amplitude_at(middle, 8000.0, 1000.0) < 300.0,
            "{name}: spurious energy"
        );
    }
}

#[test]
fn cache_encodes_once_per_prompt_and_codec_and_shares_the_result() {
    let cache = PromptCache::new();
    let path = fixture("tone440.flac");
    let first = cache
        .get(&path, Codec::Pcmu)
        .unwrap_or_else(|e| panic!("{e}"));
    let second = cache
        .get(&path, Codec::Pcmu)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(Arc::ptr_eq(&first, &second));
    let alaw = cache
        .get(&path, Codec::Pcma)
        .unwrap_or_else(|e| panic!("{e}"));
    let g722 = cache
        .get(&path, Codec::G722)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cache.len(), 3);
    assert_eq!(first.frame_count(), 50);
    assert_eq!(alaw.frame_count(), 50);
    assert_eq!(g722.frame_count(), 50);
    assert_eq!(first.payload(0).map(|p| p.len()), Some(160));
    assert_eq!(g722.payload(49).map(|p| p.len()), Some(160));
    assert_eq!(first.pcm().len(), 50 * FRAME_SAMPLES);
    // The cached µ-law payload decodes to the cached PCM.
    let decoded: Vec<i16> = first
        .payload(10)
        .unwrap_or_default()
        .iter()
        .map(|&c| santral_media::g711::ulaw_decode(c))
        .collect();
    let original = first.pcm_frame(10).unwrap_or_default();
    let worst = decoded
        .iter()
        .zip(original)
        .map(|(a, b)| (*a as i32 - *b as i32).abs())
        .max()
        .unwrap_or(i32::MAX);
    assert!(worst <= 512, "{worst}");
}

#[test]
fn errors_name_the_file() {
    let missing = temp("missing.wav");
    let error = load_pcm(&missing, 8000).map(|_| ());
    assert!(matches!(&error, Err(PromptError::Open { .. })));
    assert!(
        error
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("missing.wav")
    );

    let garbage = temp("garbage.mp3");
    std::fs::write(
        &garbage,
        b"this is not audio at all, just text pretending to be a prompt",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let message = load_pcm(&garbage, 8000)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("garbage.mp3"), "{message}");

    let truncated = temp("truncated.wav");
    let bytes = std::fs::read(fixture("tone440.flac")).unwrap_or_default();
    std::fs::write(&truncated, &bytes[..40]).unwrap_or_else(|e| panic!("{e}"));
    let message = PromptCache::new()
        .get(&truncated, Codec::Pcmu)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(message.contains("truncated.wav"), "{message}");
    let _ = std::fs::remove_file(garbage);
    let _ = std::fs::remove_file(truncated);
}
