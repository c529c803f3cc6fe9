//! Colour themes from `themes/*.toml`: the three built in (dark, light, high-contrast) are
//! compiled into the binary; a `<config dir>/themes/NAME.toml` adds or overrides one.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

/// The built-in themes, by name.
const BUILT_IN: [(&str, &str); 3] = [
    ("dark", include_str!("../../themes/dark.toml")),
    ("light", include_str!("../../themes/light.toml")),
    (
        "high-contrast",
        include_str!("../../themes/high-contrast.toml"),
    ),
];

/// The theme used when none is chosen.
pub const DEFAULT_THEME: &str = "dark";

/// Why a theme could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("unknown theme '{name}': use one of {known} or put {name}.toml in {dir}")]
    Unknown {
        name: String,
        known: String,
        dir: String,
    },
    #[error("cannot read theme file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("theme {origin} is not valid TOML: {source}")]
    Parse {
        origin: String,
        source: toml::de::Error,
    },
    #[error("theme {origin}: colour '{value}' for '{key}' is not a colour name, #rrggbb or reset")]
    Color {
        origin: String,
        key: String,
        value: String,
    },
    #[error("theme {origin}: unknown code_theme '{code_theme}': use one of {known}")]
    CodeTheme {
        origin: String,
        code_theme: String,
        known: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    code_theme: String,
    colors: ColorsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColorsFile {
    text: String,
    dim: String,
    accent: String,
    user: String,
    reasoning: String,
    heading: String,
    link: String,
    quote: String,
    inline_code: String,
    border: String,
    border_focus: String,
    status_fg: String,
    status_bg: String,
    error: String,
    warning: String,
    good: String,
    /// The screen's background; without it the terminal's own shows through.
    #[serde(default)]
    background: Option<String>,
}

/// Named styles for every region of the screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    /// The syntect theme that colours code blocks.
    pub code_theme: String,
    pub text: Style,
    pub dim: Style,
    pub accent: Style,
    pub user: Style,
    pub reasoning: Style,
    pub heading: Style,
    pub link: Style,
    pub quote: Style,
    pub inline_code: Style,
    pub border: Style,
    pub border_focus: Style,
    pub status: Style,
    pub error: Style,
    pub warning: Style,
    pub good: Style,
    /// The screen's background and default text colour, for themes that need their own
    /// background (dark text on a dark terminal would be unreadable); `None` uses the
    /// terminal's.
    pub background: Option<Style>,
}

impl Default for Theme {
    fn default() -> Self {
        // The built-in dark theme is checked by `built_in_themes_parse`.
        Self::parse(BUILT_IN[0].1, "dark (built in)").unwrap_or_else(|_| Self::plain())
    }
}

impl Theme {
    /// A theme without colours (a fallback that cannot fail).
    pub fn plain() -> Self {
        let s = Style::default();
        Self {
            name: "plain".into(),
            code_theme: "base16-ocean.dark".into(),
            text: s,
            dim: s.add_modifier(Modifier::DIM),
            accent: s.add_modifier(Modifier::BOLD),
            user: s.add_modifier(Modifier::BOLD),
            reasoning: s.add_modifier(Modifier::ITALIC),
            heading: s.add_modifier(Modifier::BOLD),
            link: s.add_modifier(Modifier::UNDERLINED),
            quote: s,
            inline_code: s,
            border: s,
            border_focus: s.add_modifier(Modifier::BOLD),
            status: s.add_modifier(Modifier::REVERSED),
            error: s.add_modifier(Modifier::BOLD),
            warning: s,
            good: s,
            background: None,
        }
    }

    /// Parses a theme file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ThemeError> {
        let file: ThemeFile = toml::from_str(text).map_err(|source| ThemeError::Parse {
            origin: origin.to_string(),
            source,
        })?;
        let known = crate::tui::highlight::code_theme_names();
        if !known.iter().any(|k| *k == file.code_theme) {
            return Err(ThemeError::CodeTheme {
                origin: origin.to_string(),
                code_theme: file.code_theme,
                known: known.join(", "),
            });
        }
        let c = &file.colors;
        let color = |key: &str, value: &str| {
            Color::from_str(value).map_err(|_| ThemeError::Color {
                origin: origin.to_string(),
                key: key.to_string(),
                value: value.to_string(),
            })
        };
        let fg = |key: &str, value: &str| color(key, value).map(|c| Style::default().fg(c));
        Ok(Self {
            name: file.name.clone(),
            code_theme: file.code_theme.clone(),
            text: fg("text", &c.text)?,
            dim: fg("dim", &c.dim)?,
            accent: fg("accent", &c.accent)?.add_modifier(Modifier::BOLD),
            user: fg("user", &c.user)?.add_modifier(Modifier::BOLD),
            reasoning: fg("reasoning", &c.reasoning)?,
            heading: fg("heading", &c.heading)?.add_modifier(Modifier::BOLD),
            link: fg("link", &c.link)?.add_modifier(Modifier::UNDERLINED),
            quote: fg("quote", &c.quote)?.add_modifier(Modifier::ITALIC),
            inline_code: fg("inline_code", &c.inline_code)?,
            border: fg("border", &c.border)?,
            border_focus: fg("border_focus", &c.border_focus)?.add_modifier(Modifier::BOLD),
            status: fg("status_fg", &c.status_fg)?.bg(color("status_bg", &c.status_bg)?),
            error: fg("error", &c.error)?.add_modifier(Modifier::BOLD),
            warning: fg("warning", &c.warning)?,
            good: fg("good", &c.good)?,
            background: match &c.background {
                Some(value) => Some(fg("text", &c.text)?.bg(color("background", value)?)),
                None => None,
            },
        })
    }

    /// Loads a theme by name: `<themes_dir>/NAME.toml` when it exists, else a built-in one.
    pub fn load(name: &str, themes_dir: Option<&Path>) -> Result<Self, ThemeError> {
        if let Some(dir) = themes_dir {
            let path = dir.join(format!("{name}.toml"));
            if path.is_file() {
                let text = std::fs::read_to_string(&path).map_err(|source| ThemeError::Read {
                    path: path.clone(),
                    source,
                })?;
                return Self::parse(&text, &path.display().to_string());
            }
        }
        let (_, text) =
            BUILT_IN
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| ThemeError::Unknown {
                    name: name.to_string(),
                    known: Self::built_in_names().join(", "),
                    dir: themes_dir.map_or_else(
                        || "the config dir's themes/".to_string(),
                        |d| d.display().to_string(),
                    ),
                })?;
        Self::parse(text, &format!("{name} (built in)"))
    }

    /// The names of the built-in themes.
    pub fn built_in_names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|(n, _)| *n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_themes_parse() {
        for name in Theme::built_in_names() {
            let theme = Theme::load(name, None).unwrap();
            assert_eq!(theme.name, name);
        }
    }

    #[test]
    fn unknown_theme_names_the_choices() {
        let err = Theme::load("neon", None).unwrap_err().to_string();
        assert!(
            err.contains("'neon'") && err.contains("high-contrast"),
            "{err}"
        );
    }

    #[test]
    fn a_theme_file_overrides_and_bad_colours_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = BUILT_IN[0].1.replace("#c0c5ce", "not-a-colour");
        std::fs::write(dir.path().join("mine.toml"), &text).unwrap();
        let err = Theme::load("mine", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'not-a-colour'") && err.contains("text"),
            "{err}"
        );
        std::fs::write(dir.path().join("mine.toml"), BUILT_IN[1].1).unwrap();
        assert_eq!(Theme::load("mine", Some(dir.path())).unwrap().name, "light");
    }
}
