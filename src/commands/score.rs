//! `ossterm score`: logits of a whole id sequence in one forward pass, its mean NLL and the
//! argmax at every position.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use safetensors::tensor::TensorView;

use super::limits;
use crate::cli::ScoreArgs;
use crate::memory::probe::probe_for;
use crate::model::Logits;
use crate::model::fidelity;

/// Runs the command.
pub fn run(args: &ScoreArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let ids = &args.ids.ids;
    // Refused before the model runs, and again just before writing.
    if let Some(path) = &args.logits_out {
        check_regular_target(path)?;
    }
    let (model, _) = super::load::model(&args.model)?;
    let config = model.config();
    limits::check_positions(config, ids.len(), &format!("--ids ({})", ids.len()))?;
    let available_bytes = probe_for(model.device()).sample().device_free_bytes;
    limits::check_score_logits(ids.len(), config.vocab_size, available_bytes)?;
    let mut cache = model.new_cache(ids.len())?;
    let logits = model.forward(ids, &mut cache, Logits::All)?;
    if let Some(bad) = fidelity::first_non_finite(&logits)? {
        bail!(
            "the logits at position {} (after id {}) are not finite: {} for vocabulary entry {}; the model computed NaN or infinity (check its weights)",
            bad.position,
            ids[bad.position],
            bad.value,
            bad.entry
        );
    }
    let nll_mean = fidelity::nll_mean(&logits, ids)?;
    if !nll_mean.is_finite() {
        bail!("the mean NLL of the {} ids is {nll_mean}", ids.len());
    }
    let argmax: Vec<u32> = logits.argmax(1)?.to_vec1::<u32>()?;
    if let Some(path) = &args.logits_out {
        write_logits(path, &logits)?;
    }
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"n": ids.len(), "nll_mean": nll_mean, "argmax": argmax})
        )?;
    } else {
        writeln!(out, "tokens: {}", ids.len())?;
        writeln!(out, "mean NLL: {nll_mean:.6}")?;
        writeln!(out, "argmax: {argmax:?}")?;
    }
    Ok(())
}

/// Writes `logits` [n, vocab] as tensor `logits` (f32) to a safetensors file at `path`,
/// atomically, and only as a regular file.
fn write_logits(path: &Path, logits: &candle_core::Tensor) -> anyhow::Result<()> {
    let shape = logits.dims().to_vec();
    let bytes: Vec<u8> = logits
        .flatten_all()?
        .to_vec1::<f32>()?
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let view =
        TensorView::new(safetensors::Dtype::F32, shape, &bytes).context("packing the logits")?;
    let file = safetensors::serialize([("logits", view)], None).context("packing the logits")?;
    check_regular_target(path)?;
    crate::store::write_atomic(path, &file)
        .with_context(|| format!("--logits-out {}", path.display()))
}

/// Fails unless `path` is absent or a regular file: the file is written beside it and renamed
/// over it, which would replace a symlink, FIFO or device (`/dev/null` as root) instead of
/// writing through it.
fn check_regular_target(path: &Path) -> anyhow::Result<()> {
    let kind = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => return Ok(()),
        Ok(meta) => file_kind(&meta.file_type()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("--logits-out {}", path.display()));
        }
    };
    bail!(
        "--logits-out {} is a {kind}; ossterm writes logits only to a new file or over a regular one: pass another path",
        path.display()
    )
}

/// A file type in words.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "device";
        }
        if kind.is_socket() {
            return "socket";
        }
    }
    if kind.is_symlink() {
        "symbolic link"
    } else if kind.is_dir() {
        "directory"
    } else {
        "special file"
    }
}
