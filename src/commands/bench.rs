//! `ossterm bench`: llama-bench-style prefill and decode speed, peak memory, and the decode
//! bound this machine's memory bandwidth sets.

use std::time::Instant;

use anyhow::Context;
use rand::{Rng, SeedableRng};

use crate::cli::BenchArgs;
use crate::model::{Config, GptOss, Logits, Precision, device};

/// Runs the command.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        // Safety: no other thread exists yet; candle reads this variable for its own kernels.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("setting the thread count")?;
    }
    let threads = rayon::current_num_threads();
    // Measured before the model takes the memory.
    let bandwidth_bytes_s = measure_bandwidth();
    let (model, device_name, model_name) = match &args.synthetic.synthetic {
        Some(preset) => {
            let mut config = preset_config(preset)?;
            if let Some(layers) = args.synthetic.layers {
                config = config.with_layers(layers);
            }
            let (device, name) = device::select(args.model.device.unwrap_or_default())?;
            let model = GptOss::synthetic(&config, 0, &device, Precision::from(args.model.dtype))?;
            (model, name, format!("{preset} (synthetic)"))
        }
        None => {
            let (model, name) = super::load::model(&args.model)?;
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
    let mut cache = model.new_cache(args.depth + args.pp.max(1) + args.tg + 1)?;
    if args.depth > 0 {
        model.forward(&random_ids(args.depth), &mut cache, Logits::Last)?;
    }
    let prompt = random_ids(args.pp.max(1));
    let start = Instant::now();
    let mut logits = model.forward(&prompt, &mut cache, Logits::Last)?;
    let pp_tok_s = prompt.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..args.tg {
        let next = logits.argmax(1)?.to_vec1::<u32>()?[0];
        logits = model.forward(&[next], &mut cache, Logits::Last)?;
    }
    let tg_tok_s = if args.tg > 0 {
        args.tg as f64 / start.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let peak_rss_bytes = peak_rss_bytes();
    let bytes_per_token = model.decode_bytes_per_token(args.depth + prompt.len() + args.tg / 2);
    let bound_tok_s = bandwidth_bytes_s / bytes_per_token as f64;
    let ratio = tg_tok_s / bound_tok_s;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": model_name,
                "layers": config.num_hidden_layers,
                "device": device_name,
                "dtype": format!("{:?}", model.dtype()),
                "threads": threads,
                "pp": prompt.len(),
                "tg": args.tg,
                "depth": args.depth,
                "pp_tok_s": pp_tok_s,
                "tg_tok_s": tg_tok_s,
                "peak_rss_bytes": peak_rss_bytes,
                "weight_bytes": model.weight_bytes(),
                "memory_bandwidth_bytes_s": bandwidth_bytes_s,
                "decode_bytes_per_token": bytes_per_token,
                "decode_bound_tok_s": bound_tok_s,
                "decode_vs_bound": ratio,
            })
        );
    } else {
        println!("| model | layers | device | threads | pp t/s | tg t/s | peak RSS |");
        println!("|---|---|---|---|---|---|---|");
        println!(
            "| {model_name} | {} | {device_name} | {threads} | {pp_tok_s:.1} (pp{}) | {tg_tok_s:.2} (tg{}) | {:.2} GiB |",
            config.num_hidden_layers,
            prompt.len(),
            args.tg,
            peak_rss_bytes as f64 / (1u64 << 30) as f64
        );
        println!();
        println!(
            "weights {:.2} GiB; memory read bandwidth {:.1} GB/s (host, {threads} threads)",
            model.weight_bytes() as f64 / (1u64 << 30) as f64,
            bandwidth_bytes_s / 1e9
        );
        println!(
            "bytes read per decoded token {:.1} MB -> bound {bound_tok_s:.2} tok/s; measured {tg_tok_s:.2} = {:.2}x of the bound",
            bytes_per_token as f64 / 1e6,
            ratio
        );
    }
    Ok(())
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

/// Host memory read bandwidth in bytes/s: the best of a few multi-threaded sums over 512 MiB.
fn measure_bandwidth() -> f64 {
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
                for block in chunk.chunks_exact(16) {
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
