//! `ossterm bench`: llama-bench-style prefill and decode speed, peak memory, and the decode
//! bound this machine's memory bandwidth sets.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use rand::{Rng, SeedableRng};

use candle_core::{DType, Device, Tensor};

use super::limits;
use crate::cli::BenchArgs;
use crate::memory::probe::probe_for;
use crate::model::{Config, GptOss, Logits, Precision, device};

/// Runs the command.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let positions = depth_positions(args)?;
    // A synthetic model's shape is known now: sizes are refused before anything is measured.
    let synthetic = match &args.synthetic.synthetic {
        Some(preset) => {
            let mut config = preset_config(preset)?;
            if let Some(layers) = args.synthetic.layers {
                let layers = limits::check_layers(layers, preset, config.num_hidden_layers)?;
                config = config.with_layers(layers);
            }
            check_depths(&config, &positions)?;
            Some((preset, config))
        }
        None => None,
    };
    if let Some(threads) = args.threads {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = limits::check_threads(threads, cores)?;
        // Safety: no other thread exists yet; candle reads this variable for its own kernels.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting the thread count")?;
    }
    let threads = rayon::current_num_threads();
    let (device, device_label) = device::select(args.model.device.unwrap_or_default())?;
    let mut probe = probe_for(&device);
    let used_before = probe.sample().device_used_bytes;
    // Measured before the model takes the memory.
    let bandwidth_bytes_s = measure_bandwidth(&device)?;
    let (model, device_name, model_name) = match synthetic {
        Some((preset, config)) => {
            let model = GptOss::synthetic_with(
                &config,
                0,
                &device,
                Precision::from(args.model.dtype),
                args.model.kernels.into(),
            )?;
            (model, device_label, format!("{preset} (synthetic)"))
        }
        None => {
            let (model, name) = super::load::model(&args.model)?;
            check_depths(model.config(), &positions)?;
            let label = args.model.model.clone().unwrap_or_default();
            (model, name, label)
        }
    };
    let config = model.config().clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut random_ids = |n: usize| -> Vec<u32> {
        (0..n)
            .map(|_| rng.random_range(0..config.vocab_size as u32))
            .collect()
    };
    warm_up(&model, &mut random_ids)?;
    let mut device_peak = probe.sample().device_used_bytes;
    if !args.json {
        writeln!(
            out,
            "| model | layers | device | threads | depth | pp t/s | tg t/s | tg vs bound |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|")?;
    }
    let mut notes = Vec::new();
    for &depth in &args.depth {
        let run = run_at_depth(&model, args, depth, &mut random_ids)?;
        device_peak = device_peak.max(probe.sample().device_used_bytes);
        // Decode starts at the depth (as llama-bench's tg does), not after the prefill.
        let bytes_per_token = model.decode_bytes_per_token(depth + args.tg / 2);
        let bound_tok_s = bandwidth_bytes_s / bytes_per_token as f64;
        let pp_tok_s = mean(&run.pp_samples_tok_s);
        let tg_tok_s = mean(&run.tg_samples_tok_s).unwrap_or(0.0);
        let ratio = tg_tok_s / bound_tok_s;
        // On a GPU: what the device had in use at its fullest so far, less before loading.
        let peak_device_bytes =
            (!model.device().is_cpu()).then(|| device_peak.saturating_sub(used_before));
        if args.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "model": model_name,
                    "layers": config.num_hidden_layers,
                    "device": device_name,
                    "dtype": format!("{:?}", model.dtype()),
                    "kernels": kernels_name(args),
                    "expert_activations": expert_activations(&model),
                    "dense_weights": dense_weights(&model, args),
                    "threads": threads,
                    "pp": args.pp,
                    "tg": args.tg,
                    "depth": depth,
                    "repeat": args.repeat,
                    "pp_tok_s": pp_tok_s,
                    "tg_tok_s": tg_tok_s,
                    "pp_samples_tok_s": run.pp_samples_tok_s,
                    "tg_samples_tok_s": run.tg_samples_tok_s,
                    "tg_start_position": run.tg_start_position,
                    "peak_rss_bytes": peak_rss_bytes(),
                    "peak_device_bytes": peak_device_bytes,
                    "peak_allocated_bytes": probe.allocated_peak_bytes(),
                    "weight_bytes": model.weight_bytes(),
                    "memory_bandwidth_bytes_s": bandwidth_bytes_s,
                    "decode_bytes_per_token": bytes_per_token,
                    "decode_bound_tok_s": bound_tok_s,
                    "decode_vs_bound": ratio,
                })
            )?;
        } else {
            let pp_cell = pp_tok_s.map_or("-".to_string(), |v| format!("{v:.1} (pp{})", args.pp));
            writeln!(
                out,
                "| {model_name} | {} | {device_name} | {threads} | {depth} | {pp_cell} | {tg_tok_s:.2} (tg{}) | {ratio:.2}x of {bound_tok_s:.2} |",
                config.num_hidden_layers, args.tg,
            )?;
            notes.push(format!(
                "depth {depth}: {:.1} MB read per decoded token; samples: pp {} t/s, tg {} t/s",
                bytes_per_token as f64 / 1e6,
                samples_text(&run.pp_samples_tok_s, 1),
                samples_text(&run.tg_samples_tok_s, 2),
            ));
        }
    }
    if !args.json {
        let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
        writeln!(out)?;
        writeln!(out, "peak RSS {:.2} GiB", gib(peak_rss_bytes()))?;
        writeln!(
            out,
            "kernels {}; expert activations {}; attention and output weights {}",
            kernels_name(args),
            expert_activations(&model),
            dense_weights(&model, args)
        )?;
        if !model.device().is_cpu() {
            writeln!(
                out,
                "peak device memory {:.2} GiB (in use at the fullest sample, less before loading)",
                gib(device_peak.saturating_sub(used_before))
            )?;
            if let Some(peak) = probe.allocated_peak_bytes() {
                writeln!(
                    out,
                    "peak device allocations {:.2} GiB (the memory pool's high-water mark: weights, cache and scratch at their fullest)",
                    gib(peak)
                )?;
            }
        }
        writeln!(
            out,
            "weights {:.2} GiB; memory bandwidth {:.1} GB/s ({})",
            gib(model.weight_bytes()),
            bandwidth_bytes_s / 1e9,
            if model.device().is_cpu() {
                format!("host read, {threads} threads")
            } else {
                "device, measured by a copy".to_string()
            }
        )?;
        for note in notes {
            writeln!(out, "{note}")?;
        }
    }
    Ok(())
}

/// `--kernels` as it is typed (`auto`, `exact`, ...).
fn kernels_name(args: &BenchArgs) -> String {
    use clap::ValueEnum;
    args.model
        .kernels
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

/// What the experts multiply in decode: "8-bit" (the CPU's default kernels) or "f32".
fn expert_activations(model: &GptOss) -> &'static str {
    if model.quantizes_activations() {
        "8-bit"
    } else {
        "f32"
    }
}

/// How the attention projections and lm_head are held: 8-bit (`--dtype q8-dense` where the
/// CPU has the kernel), f32 (`--dtype f32`) or 16-bit.
fn dense_weights(model: &GptOss, args: &BenchArgs) -> &'static str {
    if model.dense_q8() {
        "8-bit"
    } else if args.model.dtype == crate::cli::DtypeChoice::F32 {
        "f32"
    } else {
        "16-bit"
    }
}

/// For each `--depth`, the positions its cache holds (depth + pp + tg + 1), summed without
/// overflow; the names say which flags a refusal is about.
fn depth_positions(args: &BenchArgs) -> anyhow::Result<Vec<(usize, String)>> {
    args.depth
        .iter()
        .map(|&depth| {
            let parts = [
                ("--depth", depth),
                ("--pp", args.pp.max(1)),
                ("--tg", args.tg),
                ("1", 1),
            ];
            let what = format!("--depth {depth} + --pp {} + --tg {} + 1", args.pp, args.tg);
            Ok((limits::total_tokens(&parts)?, what))
        })
        .collect()
}

/// Fails unless every depth's positions fit in the model's.
fn check_depths(config: &Config, positions: &[(usize, String)]) -> anyhow::Result<()> {
    for (n, what) in positions {
        limits::check_positions(config, *n, what)?;
    }
    Ok(())
}

/// Tokens the depth is filled with per forward pass: llama-bench's default micro-batch, and
/// it keeps the attention scratch of a deep fill small.
const DEPTH_FILL_CHUNK_TOKENS: usize = 512;

/// Samples measured at one depth.
struct DepthRun {
    /// Prefill speed of each sample in tokens/s (empty with `--pp 0`).
    pp_samples_tok_s: Vec<f64>,
    /// Decode speed of each sample in tokens/s (empty with `--tg 0`).
    tg_samples_tok_s: Vec<f64>,
    /// Tokens in the cache when each decode sample started.
    tg_start_position: usize,
}

/// Fills a fresh cache with `depth` tokens (untimed, once), then `--repeat` times: back to
/// the depth, time a prefill of `--pp` tokens; back to the depth, time `--tg` greedy decode
/// steps. Like llama-bench, prefill and decode are separate tests that both start at the depth.
fn run_at_depth(
    model: &GptOss,
    args: &BenchArgs,
    depth: usize,
    random_ids: &mut impl FnMut(usize) -> Vec<u32>,
) -> anyhow::Result<DepthRun> {
    let mut cache = model.new_cache(depth + args.pp.max(args.tg) + 1)?;
    for chunk in random_ids(depth).chunks(DEPTH_FILL_CHUNK_TOKENS) {
        model.forward(chunk, &mut cache, Logits::Last)?;
    }
    // Sliding windows drop what a sample pushes past them: the snapshot brings them back.
    cache.mark_snapshot();
    let mut run = DepthRun {
        pp_samples_tok_s: Vec::new(),
        tg_samples_tok_s: Vec::new(),
        tg_start_position: depth,
    };
    for _ in 0..args.repeat {
        if args.pp > 0 {
            cache.truncate(depth)?;
            let prompt = random_ids(args.pp);
            model.device().synchronize()?;
            let start = Instant::now();
            model.forward(&prompt, &mut cache, Logits::Last)?;
            model.device().synchronize()?;
            run.pp_samples_tok_s
                .push(args.pp as f64 / start.elapsed().as_secs_f64());
        }
        if args.tg > 0 {
            cache.truncate(depth)?;
            run.tg_start_position = cache.len();
            let mut next = random_ids(1)[0];
            model.device().synchronize()?;
            let start = Instant::now();
            for _ in 0..args.tg {
                let logits = model.forward(&[next], &mut cache, Logits::Last)?;
                next = logits.argmax(1)?.to_vec1::<u32>()?[0];
            }
            // The last step's kernels may still be queued.
            model.device().synchronize()?;
            run.tg_samples_tok_s
                .push(args.tg as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(run)
}

/// The mean of `samples`, none when there are none.
fn mean(samples: &[f64]) -> Option<f64> {
    (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64)
}

/// `samples` as `a / b / c` with `decimals` digits, or `-` when there are none.
fn samples_text(samples: &[f64], decimals: usize) -> String {
    if samples.is_empty() {
        return "-".to_string();
    }
    samples
        .iter()
        .map(|v| format!("{v:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The config of a synthetic preset.
fn preset_config(name: &str) -> anyhow::Result<Config> {
    match name {
        "gpt-oss-20b" => Ok(Config::gpt_oss_20b()),
        other => anyhow::bail!("unknown synthetic preset '{other}'; available: gpt-oss-20b"),
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), else the current one.
fn peak_rss_bytes() -> u64 {
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        && let Some(kib) = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
    {
        return kib * 1024;
    }
    memory_stats::memory_stats().map_or(0, |m| m.physical_mem as u64)
}

/// A short prefill and two decode steps on a scratch cache, so that kernel loading (CUDA
/// compiles its PTX on first use) and thread start-up stay out of the figures.
fn warm_up(model: &GptOss, random_ids: &mut impl FnMut(usize) -> Vec<u32>) -> anyhow::Result<()> {
    let mut cache = model.new_cache(64)?;
    let prompt = random_ids(48);
    model.forward(&prompt, &mut cache, Logits::Last)?;
    for id in random_ids(2) {
        model.forward(&[id], &mut cache, Logits::Last)?;
    }
    model.device().synchronize()?;
    Ok(())
}

/// Memory bandwidth in bytes/s of the device the model runs on.
fn measure_bandwidth(device: &Device) -> anyhow::Result<f64> {
    if device.is_cpu() {
        return Ok(measure_host_bandwidth());
    }
    // A 256 MiB copy reads and writes every byte once; the best of a few. Small, so that what
    // the allocator may keep of it barely moves the peak device memory reported.
    let source = Tensor::zeros((1usize << 26,), DType::F32, device)?;
    let mut best = 0f64;
    for _ in 0..5 {
        device.synchronize()?;
        let start = Instant::now();
        let copy = source.affine(1.0, 0.0)?;
        device.synchronize()?;
        let seconds = start.elapsed().as_secs_f64();
        drop(copy);
        best = best.max(2.0 * (1u64 << 28) as f64 / seconds);
    }
    Ok(best)
}

/// Host memory read bandwidth in bytes/s: the best of a few multi-threaded, prefetched sums over
/// 512 MiB.
fn measure_host_bandwidth() -> f64 {
    use rayon::prelude::*;
    let len = (512usize << 20) / 4;
    let buffer: Vec<f32> = (0..len).map(|i| (i % 7) as f32).collect();
    let mut best = 0f64;
    for _ in 0..4 {
        let start = Instant::now();
        let sum: f32 = buffer
            .par_chunks(1 << 16)
            .map(|chunk| {
                let mut acc = [0f32; 16];
                for (i, block) in chunk.chunks_exact(16).enumerate() {
                    // Prefetched 1 KiB ahead, as the decode kernels do: without it this read
                    // measured below what decode itself reaches (21.6 vs 22.1 GB/s).
                    #[cfg(target_arch = "x86_64")]
                    // Safety: SSE is part of x86_64; a prefetch never faults.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            chunk.as_ptr().wrapping_add(16 * i + 256).cast(),
                        );
                    }
                    for l in 0..16 {
                        acc[l] += block[l];
                    }
                }
                acc.iter().sum::<f32>()
            })
            .sum();
        let seconds = start.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        best = best.max((len * 4) as f64 / seconds);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_average_and_print_in_order() {
        assert_eq!(mean(&[]), None);
        assert_eq!(mean(&[2.0, 4.0, 9.0]), Some(5.0));
        assert_eq!(samples_text(&[], 2), "-");
        assert_eq!(samples_text(&[12.04, 2.26, 3.0], 1), "12.0 / 2.3 / 3.0");
    }
}
