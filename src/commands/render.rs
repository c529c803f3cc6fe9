//! `ossterm render`: a harmony conversation (openai_harmony's JSON) to the token ids of the
//! prompt for the assistant's next turn.

use std::io::Write;

use anyhow::Context as _;

use crate::cli::RenderArgs;
use crate::harmony::{Conversation, RenderOptions, Tokenizer, render_for_completion};

/// Runs the command.
pub fn run(args: &RenderArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let tokenizer = Tokenizer::from_file(&args.tokenizer)?;
    let path = &args.conversation;
    let json = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read conversation {}", path.display()))?;
    let conversation = Conversation::from_json(&json).with_context(|| {
        format!(
            "{} is not a harmony conversation (openai_harmony's Conversation.to_json())",
            path.display()
        )
    })?;
    let ids = render_for_completion(&conversation, &tokenizer, &RenderOptions::default())
        .with_context(|| format!("cannot render {}", path.display()))?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    } else {
        writeln!(out, "{}", tokenizer.decode(&ids))?;
    }
    Ok(())
}
