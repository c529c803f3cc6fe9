//! Shared by the model commands: turn `--model`/`--device`/`--dtype` into a loaded model.

use std::path::Path;

use anyhow::Context;

use crate::cli::ModelArgs;
use crate::model::{GptOss, Precision, device};

/// Loads the model folder named by `--model` on the chosen device; returns it with the
/// device's name.
pub fn model(args: &ModelArgs) -> anyhow::Result<(GptOss, String)> {
    let dir = args.model.as_deref().context(
        "--model DIR is required (a local model folder with config.json and safetensors)",
    )?;
    let path = Path::new(dir);
    if !path.is_dir() {
        anyhow::bail!(
            "--model {dir}: no such folder; download the model first (ossterm download {dir}) and pass its folder"
        );
    }
    let (device, name) = device::select(args.device.unwrap_or_default())?;
    let model = GptOss::load_with(
        path,
        &device,
        Precision::from(args.dtype),
        args.kernels.into(),
    )
    .with_context(|| format!("loading the model in {dir}"))?;
    Ok((model, name))
}
