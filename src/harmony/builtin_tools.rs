//! The built-in tool namespaces gpt-oss was trained with (`browser`, `python`), with the texts
//! of openai_harmony's `ToolNamespaceConfig::browser()` / `::python()` byte for byte (the
//! goldens `system_browser_tool`, `system_python_tool` in tests/fixtures/o200k_harmony judge).
//! They belong in the system message, not the developer message.

use serde_json::json;

use super::conversation::{SystemContent, ToolDescription, ToolNamespaceConfig};

/// openai_harmony's python namespace text (the stateful Jupyter wording the model was trained
/// with).
pub const PYTHON_TOOL_DESCRIPTION: &str = "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. This tool should be used for internal reasoning, but not for code that is intended to be visible to the user (e.g. when creating plots, tables, or files).\n\nWhen you send a message containing Python code to python, it will be executed in a stateful Jupyter notebook environment. python will respond with the output of the execution or time out after 120.0 seconds. The drive at '/mnt/data' can be used to save and persist user files. Internet access for this session is UNKNOWN. Depends on the cluster.";

/// openai_harmony's browser namespace text (cursor and citation format).
pub const BROWSER_TOOL_DESCRIPTION: &str = "Tool for browsing.\nThe `cursor` appears in brackets before each browsing display: `[{cursor}]`.\nCite information from the tool using the following format:\n`\u{3010}{cursor}\u{2020}L{line_start}(-L{line_end})?\u{3011}`, for example: `\u{3010}6\u{2020}L9-L11\u{3011}` or `\u{3010}8\u{2020}L3\u{3011}`.\nDo not quote more than 10 words directly from the tool output.\nsources=web (default: web)";

impl ToolNamespaceConfig {
    /// The `python` namespace: prose only, no functions; the model calls it as `to=python`
    /// on the analysis channel with the code as the message.
    pub fn python() -> Self {
        Self::new(
            "python",
            Some(PYTHON_TOOL_DESCRIPTION.to_owned()),
            Vec::new(),
        )
    }

    /// The `browser` namespace: `search`, `open` and `find`, called as `browser.search` etc.
    pub fn browser() -> Self {
        let search = ToolDescription::new(
            "search",
            "Searches for information related to `query` and displays `topn` results.",
            Some(json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "topn": {"type": "number", "default": 10},
                    "source": {"type": "string"},
                },
                "required": ["query"],
            })),
        );
        let open = ToolDescription::new(
            "open",
            "Opens the link `id` from the page indicated by `cursor` starting at line number `loc`, showing `num_lines` lines.\nValid link ids are displayed with the formatting: `\u{3010}{id}\u{2020}.*\u{3011}`.\nIf `cursor` is not provided, the most recent page is implied.\nIf `id` is a string, it is treated as a fully qualified URL associated with `source`.\nIf `loc` is not provided, the viewport will be positioned at the beginning of the document or centered on the most relevant passage, if available.\nUse this function without `id` to scroll to a new location of an opened page.",
            Some(json!({
                "type": "object",
                "properties": {
                    "id": {"type": ["number", "string"], "default": -1},
                    "cursor": {"type": "number", "default": -1},
                    "loc": {"type": "number", "default": -1},
                    "num_lines": {"type": "number", "default": -1},
                    "view_source": {"type": "boolean", "default": false},
                    "source": {"type": "string"},
                },
            })),
        );
        let find = ToolDescription::new(
            "find",
            "Finds exact matches of `pattern` in the current page, or the page given by `cursor`.",
            Some(json!({
                "type": "object",
                "properties": {
                    "pattern": {"type": "string"},
                    "cursor": {"type": "number", "default": -1},
                },
                "required": ["pattern"],
            })),
        );
        Self::new(
            "browser",
            Some(BROWSER_TOOL_DESCRIPTION.to_owned()),
            vec![search, open, find],
        )
    }
}

impl SystemContent {
    /// Adds the `browser` namespace (openai_harmony's `with_browser_tool`).
    pub fn with_browser_tool(self) -> Self {
        self.with_tools(ToolNamespaceConfig::browser())
    }

    /// Adds the `python` namespace (openai_harmony's `with_python_tool`).
    pub fn with_python_tool(self) -> Self {
        self.with_tools(ToolNamespaceConfig::python())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namespaces_are_named_as_the_model_calls_them() {
        let browser = ToolNamespaceConfig::browser();
        let names: Vec<&str> = browser.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["search", "open", "find"]);
        assert!(ToolNamespaceConfig::python().tools.is_empty());
        let system = SystemContent::new().with_python_tool().with_browser_tool();
        let tools = system.tools.expect("tools set");
        // Rendered in name order, as the library does.
        assert_eq!(tools.keys().collect::<Vec<_>>(), ["browser", "python"]);
    }
}
