//! `ossterm parse`: stream-parse harmony output ids, one step per token, then the messages.
//!
//! Ids that begin with `<|start|>` are parsed from the start of a message; any others as the
//! model's answer after a prompt ending in `<|start|>assistant`.

use std::io::Write;
use std::sync::Arc;

use crate::cli::ParseArgs;
use crate::harmony::{Role, StreamParser, Tokenizer};

/// Runs the command.
pub fn run(args: &ParseArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let tokenizer = Arc::new(Tokenizer::from_file(&args.tokenizer)?);
    let ids = &args.ids.ids;
    if let Some((position, id)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| !tokenizer.defines(**id))
    {
        anyhow::bail!(
            "--ids: id {id} (position {position}) is not a token of this tokenizer (its ids run to {}): {}",
            tokenizer.vocab_size().saturating_sub(1),
            tokenizer.path().display()
        );
    }
    let role = match ids.first() {
        Some(&first) if first == tokenizer.specials().start => None,
        _ => Some(Role::Assistant),
    };
    let mut parser = StreamParser::new(Arc::clone(&tokenizer), role);
    for &token in ids {
        let step = parser.push(token);
        if args.json {
            let line = serde_json::json!({
                "token": step.token,
                "channel": step.channel,
                "recipient": step.recipient,
                "content_type": step.content_type,
                "delta": step.delta,
            });
            writeln!(out, "{line}")?;
        }
        if let Some(stop) = step.stop {
            // A closed stderr must not stop the output.
            let _ = writeln!(std::io::stderr(), "stop: {stop:?} at token {token}");
        }
    }
    let tail = parser.finish();
    if args.json {
        if let Some(delta) = tail {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "token": null, "delta": delta })
            )?;
        }
        writeln!(out, "{}", serde_json::to_string(parser.messages())?)?;
        return Ok(());
    }
    for message in parser.messages() {
        let mut header = message.role.as_str().to_owned();
        if let Some(name) = &message.name {
            header.push_str(&format!(":{name}"));
        }
        for (label, value) in [
            ("channel", &message.channel),
            ("to", &message.recipient),
            ("type", &message.content_type),
        ] {
            if let Some(value) = value {
                header.push_str(&format!(" {label}={value}"));
            }
        }
        writeln!(out, "[{header}]\n{}\n", message.text())?;
    }
    Ok(())
}
