//! `ossterm fit`: what context fits in memory, from config.json and the safetensors headers
//! alone (no weights are loaded).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::{DeviceChoice, FitArgs};
use crate::config::Settings;
use crate::memory::inventory::InventoryError;
use crate::memory::inventory::{self, TensorInfo};
use crate::memory::planner::{DEFAULT_CHUNK_TOKENS, DeviceKind, Plan, format_bytes};
use crate::memory::probe::{self, CpuProbe};
use crate::model::Config;

/// Runs the command.
pub fn run(args: &FitArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let settings = Settings::load(None)?;
    let (name, config, tensors) = load_model(args, &settings)?;
    let device_choice = args.model.device.unwrap_or(settings.device);
    let (device, available_bytes, available_source) =
        device_and_memory(device_choice, args.memory)?;
    let plan = Plan::new(
        &config,
        &tensors,
        device,
        args.model.dtype,
        DEFAULT_CHUNK_TOKENS,
    )?;
    let max_context = plan.max_context(available_bytes);
    let rows = plan.rows(available_bytes);
    if args.json {
        let report = serde_json::json!({
            "model": name,
            "device": device,
            "precision": plan.precision,
            "chunk_tokens": plan.chunk_tokens,
            "weight_bytes": plan.weight_bytes(),
            "device_weight_bytes": plan.device_weight_bytes,
            "host_weight_bytes": plan.host_weight_bytes,
            "kv_bytes_per_element": plan.kv_bytes_per_element,
            "kv_bytes_per_token": plan.kv_bytes_per_token,
            "sliding_bytes": plan.sliding_bytes(),
            "sliding_ring_bytes": plan.sliding_ring_bytes,
            "snapshot_bytes": plan.snapshot_bytes,
            "snapshots_budgeted": plan.snapshots_budgeted,
            "scratch_bytes": plan.scratch_bytes(max_context.max(1)),
            "overhead_bytes": plan.overhead_bytes,
            "available_bytes": available_bytes,
            "available_source": available_source,
            "margin_bytes": Plan::margin_bytes(available_bytes),
            "model_max_context": plan.model_max_context,
            "rows": rows,
            "max_context": max_context,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    let (full, sliding) = config.layer_counts();
    let elt = plan.kv_bytes_per_element;
    writeln!(
        out,
        "{name} on {}, precision {}",
        serde_json::to_value(device)?.as_str().unwrap_or("?"),
        plan.precision
    )?;
    writeln!(
        out,
        "  weights      {:>11}  (device {} + embedding {} on the host)",
        format_bytes(plan.weight_bytes()),
        format_bytes(plan.device_weight_bytes),
        format_bytes(plan.host_weight_bytes)
    )?;
    writeln!(
        out,
        "  KV per token {:>11}  ({full} full layers x 2 x {} kv heads x {} x {elt} B)",
        format_bytes(plan.kv_bytes_per_token),
        config.num_key_value_heads,
        config.head_dim
    )?;
    writeln!(
        out,
        "  sliding      {:>11}  ({sliding} layers: ring of {} positions + {} turn snapshots; constant)",
        format_bytes(plan.sliding_bytes()),
        config.sliding_window,
        plan.snapshots_budgeted
    )?;
    writeln!(
        out,
        "  overhead     {:>11}  (runtime, tokenizer; prefill chunk up to {} tokens)",
        format_bytes(plan.overhead_bytes),
        plan.chunk_tokens
    )?;
    writeln!(
        out,
        "  available    {:>11}  ({available_source}; margin {})",
        format_bytes(available_bytes),
        format_bytes(Plan::margin_bytes(available_bytes))
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "  {:>8}  {:>6}  {:>11}  {:>11}  {:>11}  fits",
        "context", "chunk", "KV cache", "scratch", "total"
    )?;
    for row in &rows {
        writeln!(
            out,
            "  {:>8}  {:>6}  {:>11}  {:>11}  {:>11}  {}",
            row.context,
            row.chunk_tokens,
            format_bytes(row.kv_bytes),
            format_bytes(row.scratch_bytes),
            format_bytes(row.total_bytes),
            if row.fits { "yes" } else { "no" }
        )?;
    }
    writeln!(out)?;
    if max_context == 0 {
        writeln!(
            out,
            "  nothing fits: even one token needs {} plus the margin",
            format_bytes(plan.total_bytes(1))
        )?;
    } else {
        writeln!(
            out,
            "  largest context that fits: {max_context} tokens ({} of {})",
            format_bytes(plan.total_bytes(max_context)),
            format_bytes(available_bytes)
        )?;
    }
    Ok(())
}

/// The model's name, config and tensor inventory: a synthetic preset, a local folder, or a hub
/// model's files (config and headers only).
fn load_model(
    args: &FitArgs,
    settings: &Settings,
) -> anyhow::Result<(String, Config, Vec<TensorInfo>)> {
    if let Some(preset) = &args.synthetic.synthetic {
        let unknown = || format!("unknown synthetic preset '{preset}': use gpt-oss-20b");
        let full = inventory::synthetic_preset(preset, None).with_context(unknown)?;
        let layers = args
            .synthetic
            .layers
            .map(|n| super::limits::check_layers(n, preset, full.num_hidden_layers))
            .transpose()?;
        let config = inventory::synthetic_preset(preset, layers).with_context(unknown)?;
        let tensors = inventory::synthetic_int4(&config);
        return Ok((
            format!("{preset} (synthetic, int4 layout)"),
            config,
            tensors,
        ));
    }
    let model = args.model.model.as_deref().unwrap_or(&settings.model);
    let revision = args
        .model
        .revision
        .as_deref()
        .or(settings.revision.as_deref());
    let dir = if Path::new(model).is_dir() {
        Path::new(model).to_path_buf()
    } else {
        crate::hub::resolve_headers(model, revision)?
    };
    let config = Config::from_file(&dir.join("config.json"))?;
    match inventory::read_dir(&dir) {
        Ok(tensors) => Ok((model.to_string(), config, tensors)),
        // A hub model whose weights are not downloaded yet: the int4 AutoRound layout follows
        // from config.json alone.
        Err(InventoryError::NoWeights { .. })
            if config.quantization.as_ref().is_some_and(|q| {
                q.quant_method.starts_with("auto-round") || q.quant_method == "auto_round"
            }) =>
        {
            let tensors = inventory::synthetic_int4(&config);
            Ok((
                format!("{model} (weights not downloaded: int4 layout from config.json)"),
                config,
                tensors,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// The device kind to plan for and the bytes available on it (`--memory` wins).
fn device_and_memory(
    choice: DeviceChoice,
    memory: Option<u64>,
) -> anyhow::Result<(DeviceKind, u64, &'static str)> {
    let kind = match choice {
        DeviceChoice::Auto if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() => {
            DeviceKind::Cuda
        }
        DeviceChoice::Auto
            if cfg!(feature = "metal") && candle_core::utils::metal_is_available() =>
        {
            DeviceKind::Metal
        }
        DeviceChoice::Auto | DeviceChoice::Cpu => DeviceKind::Cpu,
        DeviceChoice::Cuda(_) => DeviceKind::Cuda,
        DeviceChoice::Metal => DeviceKind::Metal,
    };
    if let Some(bytes) = memory {
        return Ok((kind, bytes, "--memory"));
    }
    let available = match (kind, choice) {
        (DeviceKind::Cpu, _) => CpuProbe::new().available_bytes(),
        (DeviceKind::Cuda, DeviceChoice::Cuda(n)) => gpu_free(candle_core::Device::new_cuda(n))?,
        (DeviceKind::Cuda, _) => gpu_free(candle_core::Device::new_cuda(0))?,
        (DeviceKind::Metal, _) => gpu_free(candle_core::Device::new_metal(0))?,
    };
    Ok((kind, available, "reported free by the device"))
}

fn gpu_free(device: candle_core::Result<candle_core::Device>) -> anyhow::Result<u64> {
    match device {
        Ok(device) if !device.is_cpu() => Ok(probe::probe_for(&device).sample().device_free_bytes),
        _ => bail!(
            "this build cannot open that GPU (built without its feature, or no device): pass --memory BYTES to plan for it"
        ),
    }
}
