//! `ossterm generate`: prefill the ids, then decode one token per step from the KV cache.

use std::io::Write;
use std::time::Instant;

use super::limits;
use crate::cli::GenerateArgs;
use crate::engine::SamplingParams;
use crate::engine::sampler::{Sampler, check_params};
use crate::model::Logits;

/// Runs the command.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let ids = &args.ids.ids;
    let defaults = SamplingParams::default();
    let s = &args.sampling;
    let params = SamplingParams {
        temperature: s.temperature.unwrap_or(defaults.temperature),
        top_p: s.top_p.unwrap_or(defaults.top_p),
        top_k: s.top_k.unwrap_or(defaults.top_k),
        min_p: s.min_p.unwrap_or(defaults.min_p),
        seed: s.seed.unwrap_or(defaults.seed),
    };
    check_params(&params)?;
    // The cache holds the prompt and every new token but the last, which is never run.
    let positions = limits::total_tokens(&[
        ("--ids", ids.len()),
        ("--max-new-tokens", args.max_new_tokens.max(1)),
    ])?;
    let (model, _) = super::load::model(&args.model)?;
    limits::check_positions(
        model.config(),
        positions,
        &format!(
            "--ids ({}) and --max-new-tokens ({})",
            ids.len(),
            args.max_new_tokens
        ),
    )?;
    let mut sampler = Sampler::new(params);
    let eos = &model.config().eos_token_ids;
    let mut cache = model.new_cache(positions)?;
    let start = Instant::now();
    let mut logits = model.forward(ids, &mut cache, Logits::Last)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let decode_start = Instant::now();
    let mut new_ids = Vec::new();
    let mut decode_steps = 0usize;
    while new_ids.len() < args.max_new_tokens {
        let next = sampler.sample(&logits)?;
        new_ids.push(next);
        if eos.contains(&next) || new_ids.len() == args.max_new_tokens {
            break;
        }
        logits = model.forward(&[next], &mut cache, Logits::Last)?;
        decode_steps += 1;
    }
    let decode_s = decode_start.elapsed().as_secs_f64();
    let prefill_tok_s = ids.len() as f64 / prefill_s.max(1e-9);
    let decode_tok_s = if decode_steps > 0 {
        decode_steps as f64 / decode_s.max(1e-9)
    } else {
        0.0
    };
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"ids": new_ids, "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s})
        )?;
    } else {
        writeln!(out, "{new_ids:?}")?;
        writeln!(
            out,
            "prefill {prefill_tok_s:.1} tok/s, decode {decode_tok_s:.1} tok/s"
        )?;
    }
    Ok(())
}
