//! Shared by the model commands: turn `--model`/`--device`/`--dtype` into a loaded model.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::ModelArgs;
use crate::model::{GptOss, Precision, device};

/// Loads the model named by `--model` (a local folder, or a hub id already in the Hugging
/// Face cache) on the chosen device; returns it with the device's name.
pub fn model(args: &ModelArgs) -> anyhow::Result<(GptOss, String)> {
    let path = model_dir(args)?;
    // Errors name the model as it was given (a hub id stays a hub id).
    let dir = args.model.as_deref().unwrap_or_default();
    let (device, name) = device::select(args.device.unwrap_or_default())?;
    let model = GptOss::load_with(
        &path,
        &device,
        Precision::from(args.dtype),
        args.kernels.into(),
    )
    .with_context(|| format!("loading the model in {dir}"))?;
    Ok((model, name))
}

/// The folder `--model` names: a local folder, or a hub id's snapshot in the cache.
pub fn model_dir(args: &ModelArgs) -> anyhow::Result<PathBuf> {
    let dir = args.model.as_deref().context(
        "--model is required: a local model folder (config.json and safetensors) or a downloaded hub id",
    )?;
    if Path::new(dir).is_dir() {
        Ok(PathBuf::from(dir))
    } else if dir.contains('/') && !dir.starts_with(['/', '.']) {
        crate::hub::cached_snapshot(dir, args.revision.as_deref())?.with_context(|| {
            format!("--model {dir}: not downloaded yet; run `ossterm download {dir}` first (or pass a local folder)")
        })
    } else {
        anyhow::bail!(
            "--model {dir}: no such folder; pass a model folder, or a hub id such as Intel/gpt-oss-20b-int4-g64-rtn-AutoRound after `ossterm download`"
        );
    }
}
