//! `ossterm replica` (hidden): writes a sparse, full-size stand-in for the Intel int4 repo, so
//! loading, planning and memory can be measured at the real shape without the download.

use std::path::PathBuf;

use anyhow::Context;

use crate::cli::ReplicaArgs;
use crate::memory::planner::format_bytes;
use crate::model::replica::{self, DEFAULT_SHARD_BYTES, DEFAULT_TOKENIZER, ReplicaOptions};

/// Runs the command.
pub fn run(args: &ReplicaArgs) -> anyhow::Result<()> {
    let options = ReplicaOptions {
        layers: args.layers,
        seed: args.seed,
        tokenizer: args
            .tokenizer
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKENIZER)),
        shard_bytes: DEFAULT_SHARD_BYTES,
    };
    let summary = replica::write(&args.out, &options)
        .with_context(|| format!("writing the replica to {}", args.out.display()))?;
    for shard in &summary.shards {
        println!(
            "{}  {} tensors  {}",
            shard.file,
            shard.tensors,
            format_bytes(shard.data_bytes)
        );
    }
    println!(
        "wrote a {}-layer replica to {}: {} of tensors in {} shards, {} of it written (the rest are holes)",
        args.layers,
        args.out.display(),
        format_bytes(summary.total_bytes),
        summary.shards.len(),
        format_bytes(summary.written_bytes)
    );
    Ok(())
}
