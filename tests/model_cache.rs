//! Incremental decoding with the KV cache equals the one-shot forward pass: past several
//! sliding windows, after truncate + re-extend, after restoring a snapshot, and on shapes the
//! fixtures do not have (synthetic models).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use ossterm::model::{Config, GptOss, Kernels, KvCache, LayerKind, Logits, Precision};

fn tiny() -> GptOss {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-bf16");
    GptOss::load(&dir, &Device::Cpu, Precision::F32).expect("fixture loads")
}

fn ids(n: usize, vocab: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 97)) % vocab as u32)
        .collect()
}

fn one_shot(model: &GptOss, ids: &[u32]) -> Tensor {
    let mut cache = model.new_cache(ids.len()).expect("cache");
    model
        .forward(ids, &mut cache, Logits::All)
        .expect("forward")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// Feeds `ids` in the given chunk sizes (then one at a time) and returns the logits of every
/// position, each computed from the cache.
fn incremental(model: &GptOss, cache: &mut KvCache, ids: &[u32], chunks: &[usize]) -> Tensor {
    let mut rows = Vec::new();
    let mut at = 0;
    let mut sizes = chunks.iter().copied();
    while at < ids.len() {
        let n = sizes.next().unwrap_or(1).min(ids.len() - at);
        rows.push(
            model
                .forward(&ids[at..at + n], cache, Logits::All)
                .expect("step"),
        );
        at += n;
    }
    Tensor::cat(&rows, 0).expect("cat")
}

fn check_incremental(model: &GptOss, n: usize, chunks: &[usize]) {
    let vocab = model.config().vocab_size;
    let prompt = ids(n, vocab, 1);
    let want = one_shot(model, &prompt);
    let mut cache = model.new_cache(n).expect("cache");
    let got = incremental(model, &mut cache, &prompt, chunks);
    assert_eq!(cache.len(), n);
    let diff = max_diff(&got, &want);
    assert!(diff <= 1e-3, "incremental vs one-shot: {diff}");
}

#[test]
fn incremental_decoding_equals_one_shot_past_several_windows() {
    let model = tiny();
    // Window 8: 45 tokens span five windows; mixed chunks cross window edges.
    check_incremental(&model, 45, &[]);
    check_incremental(&model, 45, &[3, 9, 1, 6]);
}

#[test]
fn the_default_mode_keeps_a_16_bit_cache_and_decodes_from_it_as_prefill_does() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-bf16");
    let model = GptOss::load(&dir, &Device::Cpu, Precision::Default).expect("fixture loads");
    let c = model.config().clone();
    let n = 45;
    // Token-by-token decode reads the f16 cache where it sits; one-shot prefill attends to
    // the keys and values before their rounding, so the difference is the cache's rounding.
    let prompt = ids(n, c.vocab_size, 1);
    let want = one_shot(&model, &prompt);
    let mut cache = model.new_cache(n).expect("cache");
    let got = incremental(&model, &mut cache, &prompt, &[5]);
    let diff = max_diff(&got, &want);
    assert!(diff <= 0.02, "incremental vs one-shot: {diff}");
    // 2 bytes an element: full layers hold every position, sliding ones their window.
    let per_position = (2 * c.num_key_value_heads * c.head_dim * 2) as u64;
    let positions: u64 = c
        .layer_types
        .iter()
        .map(|kind| match kind {
            LayerKind::FullAttention => n as u64,
            LayerKind::SlidingAttention => n.min(c.sliding_window) as u64,
        })
        .sum();
    assert_eq!(cache.bytes(), positions * per_position);
}

#[test]
fn last_logits_equal_the_last_row_of_all() {
    let model = tiny();
    let prompt = ids(20, model.config().vocab_size, 2);
    let all = one_shot(&model, &prompt);
    let mut cache = model.new_cache(20).expect("cache");
    let last = model
        .forward(&prompt, &mut cache, Logits::Last)
        .expect("forward");
    assert_eq!(last.dims(), &[1, model.config().vocab_size]);
    assert!(max_diff(&last, &all.narrow(0, 19, 1).expect("row")) <= 1e-4);
}

#[test]
fn truncate_and_re_extend_equals_one_shot() {
    let model = tiny();
    let vocab = model.config().vocab_size;
    let first = ids(30, vocab, 3);
    let mut cache = model.new_cache(64).expect("cache");
    model
        .forward(&first[..12], &mut cache, Logits::Last)
        .expect("prefill");
    cache.mark_snapshot();
    model
        .forward(&first[12..], &mut cache, Logits::Last)
        .expect("rest");

    // One step back needs nothing the windows dropped.
    cache.truncate(29).expect("one step back");
    let mut expected_ids = first[..29].to_vec();
    let new_tail = ids(6, vocab, 9);
    let got = incremental(&model, &mut cache, &new_tail, &[2]);
    expected_ids.extend(&new_tail);
    let want = one_shot(&model, &expected_ids)
        .narrow(0, 29, 6)
        .expect("tail");
    assert!(max_diff(&got, &want) <= 1e-3);

    // Far back without a snapshot is refused, with a reason.
    let err = cache.truncate(20).expect_err("windows dropped position 20");
    assert!(err.to_string().contains("no snapshot"), "{err}");

    // Back to the snapshot: the sliding windows are restored exactly.
    cache.truncate(12).expect("snapshot at 12");
    let other = ids(15, vocab, 5);
    let got = incremental(&model, &mut cache, &other, &[4]);
    let mut expected_ids = first[..12].to_vec();
    expected_ids.extend(&other);
    let want = one_shot(&model, &expected_ids)
        .narrow(0, 12, 15)
        .expect("tail");
    assert!(max_diff(&got, &want) <= 1e-3);
}

#[test]
fn rewind_returns_the_latest_restorable_position() {
    let model = tiny();
    let vocab = model.config().vocab_size;
    let prompt = ids(40, vocab, 4);
    let mut cache = model.new_cache(64).expect("cache");
    model
        .forward(&prompt[..10], &mut cache, Logits::Last)
        .expect("a");
    cache.mark_snapshot();
    model
        .forward(&prompt[10..25], &mut cache, Logits::Last)
        .expect("b");
    cache.mark_snapshot();
    model
        .forward(&prompt[25..], &mut cache, Logits::Last)
        .expect("c");
    assert_eq!(cache.snapshot_positions(), vec![10, 25]);
    assert_eq!(cache.rewind(39), 39);
    assert_eq!(cache.rewind(30), 25);
    assert_eq!(cache.len(), 25);
    assert_eq!(cache.rewind(20), 10);
    // Re-feeding from the returned position gives the one-shot logits.
    let got = incremental(&model, &mut cache, &prompt[10..], &[7]);
    let want = one_shot(&model, &prompt).narrow(0, 10, 30).expect("tail");
    assert!(max_diff(&got, &want) <= 1e-3);
    assert_eq!(cache.rewind(3), 0);
}

#[test]
fn full_context_is_an_error_not_a_panic() {
    let model = tiny();
    let mut cache = model.new_cache(8).expect("cache");
    model
        .forward(&[1, 2, 3, 4, 5], &mut cache, Logits::Last)
        .expect("fits");
    let err = model
        .forward(&[1, 2, 3, 4], &mut cache, Logits::Last)
        .expect_err("9 > 8");
    assert!(err.to_string().contains("context limit of 8"), "{err}");
    assert_eq!(cache.len(), 5);
    let err = model
        .forward(&[9999], &mut cache, Logits::Last)
        .expect_err("out of vocab");
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

#[test]
fn cache_bytes_grow_with_full_layers_only() {
    let model = tiny();
    let c = model.config().clone();
    let mut cache = model.new_cache(100).expect("cache");
    let per_position = (2 * c.num_key_value_heads * c.head_dim * 4) as u64;
    let (full, sliding) = c.layer_counts();
    model
        .forward(&ids(30, c.vocab_size, 6), &mut cache, Logits::Last)
        .expect("run");
    let expected = per_position * (full as u64 * 30 + sliding as u64 * c.sliding_window as u64);
    assert_eq!(cache.bytes(), expected);
}

fn small_config(
    heads: usize,
    kv: usize,
    head_dim: usize,
    experts: usize,
    top_k: usize,
    window: usize,
    layers: usize,
) -> Config {
    let mut c = Config::gpt_oss_20b().with_layers(layers);
    c.vocab_size = 97;
    c.hidden_size = 64;
    c.intermediate_size = 96;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv;
    c.head_dim = head_dim;
    c.num_local_experts = experts;
    c.num_experts_per_tok = top_k;
    c.sliding_window = window;
    c
}

#[test]
fn other_shapes_decode_incrementally_like_one_shot() {
    let shapes = [
        small_config(6, 3, 16, 4, 1, 5, 3),
        small_config(8, 1, 64, 16, 4, 3, 2),
        small_config(2, 2, 8, 2, 2, 1, 2),
    ];
    for (i, config) in shapes.iter().enumerate() {
        let model =
            GptOss::synthetic(config, i as u64, &Device::Cpu, Precision::F32).expect("synthetic");
        check_incremental(&model, 17, &[4, 1, 5]);
    }
    // A layer list that is not the usual alternation.
    let mut config = small_config(4, 2, 16, 4, 2, 4, 3);
    config.layer_types = vec![
        LayerKind::FullAttention,
        LayerKind::SlidingAttention,
        LayerKind::SlidingAttention,
    ];
    let model = GptOss::synthetic(&config, 9, &Device::Cpu, Precision::F32).expect("synthetic");
    check_incremental(&model, 13, &[2]);
}

/// The fused kernels' decode (one-launch attention over the cache view, and in the default mode
/// stacked experts with device-side routing), through their CPU reference implementations,
/// against the one-shot prefill that uses candle's ops.
#[test]
fn fused_decode_equals_one_shot_past_windows_and_across_shapes() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-a-int4");
    let model =
        GptOss::load_with(&dir, &Device::Cpu, Precision::F32, Kernels::Fused).expect("loads");
    check_incremental(&model, 45, &[3, 9, 1, 6]);
    // The default mode's bf16 cache: chunking changes the last bits of a key before its
    // rounding to bf16, which moves logits by ~0.005 (and can flip one of this fixture's
    // routing near-ties); most positions must still agree that closely.
    let model =
        GptOss::load_with(&dir, &Device::Cpu, Precision::Default, Kernels::Fused).expect("loads");
    let prompt = ids(45, model.config().vocab_size, 1);
    let want = one_shot(&model, &prompt);
    let mut cache = model.new_cache(45).expect("cache");
    let got = incremental(&model, &mut cache, &prompt, &[3, 9, 1, 6]);
    let mut per_position = (got - want)
        .and_then(|d| d.abs())
        .and_then(|d| d.max(1))
        .and_then(|d| d.to_vec1::<f32>())
        .expect("diff");
    per_position.sort_by(f32::total_cmp);
    assert!(
        per_position[per_position.len() / 2] <= 0.02,
        "{per_position:?}"
    );
    let shapes = [
        small_config(6, 3, 16, 4, 1, 5, 3),
        small_config(8, 1, 64, 16, 4, 3, 2),
        small_config(2, 2, 8, 2, 2, 1, 2),
    ];
    for (i, config) in shapes.iter().enumerate() {
        let model = GptOss::synthetic_with(
            config,
            i as u64,
            &Device::Cpu,
            Precision::F32,
            Kernels::Fused,
        )
        .expect("synthetic");
        check_incremental(&model, 17, &[4, 1, 5]);
    }
}

#[test]
fn q4_0_default_mode_equals_its_dequantized_f32_model() {
    let config = small_config(4, 2, 16, 8, 2, 4, 2);
    // Exact kernels: the default ones quantize decode's activations to 8 bits.
    let quantized = GptOss::synthetic_with(
        &config,
        11,
        &Device::Cpu,
        Precision::Default,
        Kernels::Exact,
    )
    .expect("q4");
    let dense = GptOss::synthetic(&config, 11, &Device::Cpu, Precision::F32).expect("f32");
    assert!(quantized.weight_bytes() < dense.weight_bytes());
    let prompt = ids(12, config.vocab_size, 7);
    let diff = max_diff(&one_shot(&quantized, &prompt), &one_shot(&dense, &prompt));
    assert!(diff <= 1e-3, "{diff}");
}
