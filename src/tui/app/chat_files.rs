//! `/export [--format md|json] [PATH]` and `/import PATH`: the chat to or from a file. The
//! driver resolves the path (`~` is the home folder) and does the file work.

use std::path::PathBuf;

use super::{App, CommandKind, Effect, ModelState};
use crate::store::{ChatSnapshot, ExportFormat};

/// What `/export` asks the driver to write.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRequest {
    pub chat: ChatSnapshot,
    /// As typed; `None` writes `./ossterm-ID.<ext>`.
    pub path: Option<PathBuf>,
    pub format: ExportFormat,
    /// The model's name (Markdown names it), when one is loaded.
    pub model: Option<String>,
}

const EXPORT_USAGE: &str =
    "usage: /export [--format md|json] [PATH] (a .json path writes harmony JSON)";

/// `(format asked for, path)` of `/export`'s arguments.
fn parse_export(rest: &str) -> Result<(Option<ExportFormat>, Option<PathBuf>), String> {
    let rest = rest.trim();
    let (format, path) = match rest
        .strip_prefix("--format")
        .or_else(|| rest.strip_prefix("-f "))
    {
        Some(after) => {
            let after = after.trim_start_matches([' ', '=']);
            let (name, path) = after.split_once(' ').unwrap_or((after, ""));
            let format = ExportFormat::parse(name)
                .ok_or_else(|| format!("/export: no format '{name}' ({EXPORT_USAGE})"))?;
            (Some(format), path.trim())
        }
        None => (None, rest),
    };
    Ok((format, (!path.is_empty()).then(|| PathBuf::from(path))))
}

impl App {
    pub(super) fn export_command(&mut self, rest: &str) -> Vec<Effect> {
        let (format, path) = match parse_export(rest) {
            Ok(parsed) => parsed,
            Err(usage) => {
                self.notice = Some(usage);
                return Vec::new();
            }
        };
        let format = format.unwrap_or_else(|| {
            path.as_deref()
                .map_or(ExportFormat::Markdown, ExportFormat::from_path)
        });
        let model = match &self.model {
            ModelState::Ready(info) => Some(info.name.clone()),
            _ => None,
        };
        vec![Effect::Export(Box::new(ExportRequest {
            chat: self.snapshot(),
            path,
            format,
            model,
        }))]
    }

    pub(super) fn import_command(&mut self, rest: &str) -> Vec<Effect> {
        let rest = rest.trim();
        if rest.is_empty() {
            self.notice =
                Some("usage: /import FILE (harmony JSON or an ossterm Markdown export)".into());
            return Vec::new();
        }
        let mut effects = Vec::new();
        if self.generating {
            effects.push(Effect::Engine(CommandKind::Stop));
        }
        effects.push(Effect::Import(PathBuf::from(rest)));
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_arguments_choose_the_format() {
        let md = Some(ExportFormat::Markdown);
        let json = Some(ExportFormat::HarmonyJson);
        assert_eq!(parse_export(""), Ok((None, None)));
        assert_eq!(
            parse_export("~/a b.md"),
            Ok((None, Some("~/a b.md".into())))
        );
        assert_eq!(parse_export("--format json"), Ok((json, None)));
        assert_eq!(
            parse_export("--format=md x.json"),
            Ok((md, Some("x.json".into())))
        );
        assert_eq!(
            parse_export("-f harmony out"),
            Ok((json, Some("out".into())))
        );
        assert_eq!(
            parse_export("--format pdf x"),
            Err(format!("/export: no format 'pdf' ({EXPORT_USAGE})"))
        );
    }
}
