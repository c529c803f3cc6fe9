//! `ossterm score`: logits of a whole id sequence in one forward pass, its mean NLL and the
//! argmax at every position.

use std::collections::HashMap;

use anyhow::Context;

use crate::cli::ScoreArgs;
use crate::model::Logits;
use crate::model::fidelity;

/// Runs the command.
pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let ids = &args.ids.ids;
    let (model, _) = super::load::model(&args.model)?;
    let mut cache = model.new_cache(ids.len())?;
    let logits = model.forward(ids, &mut cache, Logits::All)?;
    let nll_mean = fidelity::nll_mean(&logits, ids)?;
    let argmax: Vec<u32> = logits.argmax(1)?.to_vec1::<u32>()?;
    if let Some(path) = &args.logits_out {
        let tensors = HashMap::from([("logits".to_string(), logits.clone())]);
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"n": ids.len(), "nll_mean": nll_mean, "argmax": argmax})
        );
    } else {
        println!("tokens: {}", ids.len());
        println!("mean NLL: {nll_mean:.6}");
        println!("argmax: {argmax:?}");
    }
    Ok(())
}
