//! An MCP `tools/call` result as the text the model reads: text as is, other content
//! described (`[image/png, 12 kB]`), never the raw bytes.

use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};

use crate::tools::host::ToolAnswer;

/// The model's view of `result`.
pub fn describe(result: &CallToolResult) -> ToolAnswer {
    let mut parts: Vec<String> = result.content.iter().map(describe_block).collect();
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    let text = parts.join("\n");
    if result.is_error == Some(true) {
        ToolAnswer::error(text)
    } else {
        ToolAnswer {
            text,
            is_error: false,
        }
    }
}

fn describe_block(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => binary(&image.mime_type, &image.data),
        ContentBlock::Audio(audio) => binary(&audio.mime_type, &audio.data),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents {
                uri,
                mime_type,
                blob,
                ..
            } => {
                let mime = mime_type.as_deref().unwrap_or("application/octet-stream");
                format!("[resource {uri}: {}", &binary(mime, blob)[1..])
            }
            _ => "[resource of a kind ossterm does not know]".to_string(),
        },
        ContentBlock::ResourceLink(resource) => format!("[resource link {}]", resource.uri),
        #[allow(unreachable_patterns)]
        _ => "[content of a type ossterm does not know]".to_string(),
    }
}

/// `[mime, N kB]` for base64 `data`.
fn binary(mime: &str, base64_data: &str) -> String {
    let bytes = base64_data.len() / 4 * 3;
    format!("[{mime}, {} kB]", bytes.div_ceil(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_described_by_type_and_size() {
        assert_eq!(
            binary("image/png", &"A".repeat(16384)),
            "[image/png, 12 kB]"
        );
    }
}
