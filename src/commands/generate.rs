//! `ossterm generate`: prefill the ids, then decode one token per step from the KV cache.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::limits;
use crate::cli::GenerateArgs;
use crate::engine::SamplingParams;
use crate::engine::sampler::{Sampler, check_params};
use crate::harmony::Tokenizer;
use crate::model::{GptOss, Logits};
use crate::structured::{GrammarVocab, HarmonyConstraint, Phase, TurnConstraint};

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
    // Read and checked before the model loads: a bad schema costs no load.
    let constraint = args
        .json_schema
        .as_deref()
        .map(TurnConstraint::from_schema_file)
        .transpose()?;
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
    let mut gate = match &constraint {
        Some(constraint) => Some(constraint_gate(args, &model, constraint, ids)?),
        None => None,
    };
    let mut sampler = Sampler::new(params);
    let eos = &model.config().eos_token_ids;
    let mut cache = model.new_cache(positions)?;
    let start = Instant::now();
    let mut logits = model.forward(ids, &mut cache, Logits::Last)?;
    let prefill_s = start.elapsed().as_secs_f64();
    let decode_start = Instant::now();
    let mut new_ids = Vec::new();
    let mut decode_steps = 0usize;
    // The constrained answer's ids (without its end token).
    let mut answer_ids = Vec::new();
    while new_ids.len() < args.max_new_tokens {
        let (next, ends_answer) = match &mut gate {
            Some((gate, _)) => {
                let next = sampler.sample_masked(&logits, |row| gate.mask_logits(row))?;
                let phase = gate.phase();
                gate.accept(next)?;
                match phase {
                    Phase::Json { end_token } if next == end_token => (next, true),
                    Phase::Json { .. } => {
                        answer_ids.push(next);
                        (next, false)
                    }
                    Phase::Free => (next, false),
                }
            }
            None => (sampler.sample(&logits)?, false),
        };
        new_ids.push(next);
        if ends_answer || eos.contains(&next) || new_ids.len() == args.max_new_tokens {
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
    let answer = gate
        .as_ref()
        .map(|(_, tokenizer)| tokenizer.decode(&answer_ids));
    if args.json {
        let mut report = serde_json::json!({"ids": new_ids, "prefill_tok_s": prefill_tok_s, "decode_tok_s": decode_tok_s});
        if let Some(answer) = &answer {
            report["answer"] = answer.as_str().into();
        }
        writeln!(out, "{report}")?;
    } else {
        writeln!(out, "{new_ids:?}")?;
        if let Some(answer) = &answer {
            writeln!(out, "{answer}")?;
        }
        writeln!(
            out,
            "prefill {prefill_tok_s:.1} tok/s, decode {decode_tok_s:.1} tok/s"
        )?;
    }
    Ok(())
}

/// The constraint for `--json-schema`, over the model folder's tokenizer, having read the
/// prompt's open header (ids ending in `<|channel|>final<|message|>` start the answer at once).
fn constraint_gate(
    args: &GenerateArgs,
    model: &GptOss,
    constraint: &TurnConstraint,
    ids: &[u32],
) -> anyhow::Result<(HarmonyConstraint, Arc<Tokenizer>)> {
    let tokenizer_path = super::load::model_dir(&args.model)?.join("tokenizer.json");
    let tokenizer = Arc::new(
        Tokenizer::from_file(&tokenizer_path)
            .context("--json-schema needs the model's tokenizer")?,
    );
    let vocab = GrammarVocab::new(&tokenizer, model.config().vocab_size)?;
    let mut gate = HarmonyConstraint::new(vocab, Arc::clone(&tokenizer), constraint)?;
    gate.observe_prompt(ids)?;
    Ok((gate, tokenizer))
}
