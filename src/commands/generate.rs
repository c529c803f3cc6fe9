//! `ossterm generate`: prefill the ids, then decode one token per step from the KV cache.

use std::time::Instant;

use crate::cli::GenerateArgs;
use crate::engine::SamplingParams;
use crate::engine::sampler::Sampler;
use crate::model::Logits;

/// Runs the command.
pub fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let ids = &args.ids.ids;
    let (model, _) = super::load::model(&args.model)?;
    let defaults = SamplingParams::default();
    let s = &args.sampling;
    let mut sampler = Sampler::new(SamplingParams {
        temperature: s.temperature.unwrap_or(defaults.temperature),
        top_p: s.top_p.unwrap_or(defaults.top_p),
        top_k: s.top_k.unwrap_or(defaults.top_k),
        min_p: s.min_p.unwrap_or(defaults.min_p),
        seed: s.seed.unwrap_or(defaults.seed),
    });
    let eos = &model.config().eos_token_ids;
    let mut cache = model.new_cache(ids.len() + args.max_new_tokens.max(1))?;
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
        println!(
            "{}",
            serde_json::json!({"ids": new_ids, "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s})
        );
    } else {
        println!("{new_ids:?}");
        println!("prefill {prefill_tok_s:.1} tok/s, decode {decode_tok_s:.1} tok/s");
    }
    Ok(())
}
