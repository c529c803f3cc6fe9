//! The planner's prefill scratch against the real peak: one long prefill chunk on the CPU,
//! the process's peak resident memory (reset before it) compared with `Plan::scratch_bytes`.
//! Its own binary: other tests in the process would move the peak.

use candle_core::Device;
use ossterm::cli::DtypeChoice;
use ossterm::memory::allocator;
use ossterm::memory::inventory::synthetic_int4;
use ossterm::memory::planner::{DeviceKind, Plan};
use ossterm::memory::probe::process_rss_bytes;
use ossterm::model::{Config, GptOss, Logits, Precision};

/// Many heads and a long context, so the attention scores dominate the scratch.
fn score_heavy_config() -> Config {
    let mut config = Config::gpt_oss_20b().with_layers(2);
    config.vocab_size = 4096;
    config.hidden_size = 256;
    config.intermediate_size = 256;
    config.num_attention_heads = 64;
    config.num_key_value_heads = 8;
    config.head_dim = 32;
    config.num_local_experts = 4;
    config.num_experts_per_tok = 2;
    config.sliding_window = 128;
    config.max_position_embeddings = 8192;
    config
}

/// Peak resident memory (`VmHWM`) since the last reset.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

/// Resets the peak to the current resident memory (Linux: clear_refs 5).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
}

#[test]
fn prefill_peak_stays_within_the_planned_scratch() {
    if !cfg!(target_os = "linux") {
        return;
    }
    allocator::map_large_blocks();
    let config = score_heavy_config();
    let chunk = 512;
    let context = 2048;
    let plan = Plan::new(
        &config,
        &synthetic_int4(&config),
        DeviceKind::Cpu,
        DtypeChoice::Auto,
        chunk,
    )
    .expect("plan");
    let model = GptOss::synthetic(&config, 3, &Device::Cpu, Precision::Default).expect("model");
    let mut cache = model.new_cache(context).expect("cache");
    let ids: Vec<u32> = (0..context as u32).map(|i| (i * 31) % 4000 + 1).collect();
    let last = context - chunk;
    model
        .forward(&ids[..last], &mut cache, Logits::Last)
        .expect("fill");
    allocator::release_free_memory();
    let before = process_rss_bytes();
    reset_peak();
    model
        .forward(&ids[last..], &mut cache, Logits::Last)
        .expect("last chunk");
    let peak = peak_rss().saturating_sub(before);
    let planned = plan.scratch_bytes(context);
    let one_score_copy = (config.num_attention_heads * chunk * context * 4) as u64;
    eprintln!(
        "last chunk of {chunk} at {context}: peak +{} MiB, planned scratch {} MiB, one score copy {} MiB",
        peak >> 20,
        planned >> 20,
        one_score_copy >> 20
    );
    // Within the 5% the planner's margin adds on top of its total.
    assert!(
        peak as f64 <= planned as f64 * 1.05,
        "peak {peak} B over the planned {planned} B"
    );
    // The scores are what it is about: more than one copy is live at the peak, and the plan is
    // not a wild overestimate.
    assert!(peak > one_score_copy, "peak {peak} B");
    assert!(peak * 2 > planned, "peak {peak} B vs planned {planned} B");
}
