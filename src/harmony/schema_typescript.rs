//! Tool descriptions as the model saw them in training: JSON-schema parameters written as
//! TypeScript types inside a `namespace`, exactly as openai_harmony lays them out (the golden
//! renders are the judge, quirks included, e.g. a described nested object repeats its comment).

use serde_json::Value;

use super::conversation::ToolNamespaces;

/// The `# Tools` section for these namespaces (in name order).
pub(crate) fn tools_section(namespaces: &ToolNamespaces) -> String {
    let mut sections = vec!["# Tools".to_owned()];
    for namespace in namespaces.values() {
        let has_tools = !namespace.tools.is_empty();
        let mut lines = vec![format!("## {}\n", namespace.name)];
        if let Some(description) = &namespace.description {
            for line in description.lines() {
                lines.push(if has_tools {
                    format!("// {line}")
                } else {
                    line.to_owned()
                });
            }
        }
        if has_tools {
            lines.push(format!("namespace {} {{\n", namespace.name));
            for tool in &namespace.tools {
                lines.extend(tool.description.lines().map(|line| format!("// {line}")));
                match &tool.parameters {
                    Some(schema) => lines.push(format!(
                        "type {} = (_: {}) => any;\n",
                        tool.name,
                        typescript(schema, "")
                    )),
                    None => lines.push(format!("type {} = () => any;\n", tool.name)),
                }
            }
            lines.push(format!("}} // namespace {}", namespace.name));
        }
        sections.push(lines.join("\n"));
    }
    sections.join("\n\n")
}

fn str_field<'a>(schema: &'a Value, key: &str) -> Option<&'a str> {
    schema.get(key).and_then(Value::as_str)
}

fn is_enum(schema: &Value) -> bool {
    schema
        .get("enum")
        .and_then(Value::as_array)
        .is_some_and(|values| !values.is_empty())
}

fn is_nullable(schema: &Value) -> bool {
    schema.get("nullable").and_then(Value::as_bool) == Some(true)
}

/// `T | null` for a nullable schema whose type does not already say null.
fn with_null(type_text: String, schema: &Value) -> String {
    if is_nullable(schema) && !type_text.contains("null") {
        format!("{type_text} | null")
    } else {
        type_text
    }
}

/// How a default value is shown: a plain string in quotes, an enum's string bare, anything
/// else as JSON.
fn default_text(default: &Value, owner: &Value, quote_enum_strings: bool) -> String {
    match default.as_str() {
        Some(text) if !is_enum(owner) => format!("\"{text}\""),
        Some(text) if !quote_enum_strings => text.to_owned(),
        _ => default.to_string(),
    }
}

/// The TypeScript type for a JSON schema; `indent` prefixes nested lines.
fn typescript(schema: &Value, indent: &str) -> String {
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        return one_of_union(variants, indent);
    }
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let names: Vec<&str> = types
            .iter()
            .filter_map(Value::as_str)
            .map(|name| if name == "integer" { "number" } else { name })
            .collect();
        if !names.is_empty() {
            return names.join(" | ");
        }
    }
    match str_field(schema, "type") {
        Some("object") => object_type(schema, indent),
        Some("string") => {
            let members: Vec<String> = schema
                .get("enum")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|v| format!("\"{v}\""))
                        .collect()
                })
                .unwrap_or_default();
            if members.is_empty() {
                "string".to_owned()
            } else {
                members.join(" | ")
            }
        }
        Some("number" | "integer") => "number".to_owned(),
        Some("boolean") => "boolean".to_owned(),
        Some("array") => match schema.get("items") {
            Some(items) => format!("{}[]", typescript(items, indent)),
            None => "Array<any>".to_owned(),
        },
        _ => "any".to_owned(),
    }
}

/// A top-level `oneOf`: each variant on its own ` | ` line with its comments.
fn one_of_union(variants: &[Value], indent: &str) -> String {
    let mut out = String::new();
    for variant in variants {
        out.push_str(&format!("\n{indent} | "));
        out.push_str(&with_null(
            typescript(variant, &format!("{indent}   ")),
            variant,
        ));
        let mut comments = Vec::new();
        if let Some(description) = str_field(variant, "description") {
            comments.push(description.to_owned());
        }
        if let Some(default) = variant.get("default") {
            comments.push(format!("default: {}", default_text(default, variant, true)));
        }
        if !comments.is_empty() {
            out.push_str(&format!(" // {}", comments.join(" ")));
        }
    }
    out
}

fn object_type(schema: &Value, indent: &str) -> String {
    let mut out = String::new();
    if let Some(description) = str_field(schema, "description") {
        out.push_str(&format!("{indent}// {description}\n"));
    }
    out.push_str("{\n");
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (key, property) in properties {
            let optional = if required.contains(&key.as_str()) {
                ""
            } else {
                "?"
            };
            property_comments(&mut out, property, indent);
            if let Some(variants) = property.get("oneOf").and_then(Value::as_array) {
                one_of_property(&mut out, key, optional, property, variants, indent);
                continue;
            }
            out.push_str(&format!("{indent}{key}{optional}: "));
            out.push_str(&with_null(
                typescript(property, &format!("{indent}    ")),
                property,
            ));
            out.push(',');
            if let Some(default) = property.get("default") {
                out.push_str(&format!(
                    " // default: {}",
                    default_text(default, property, false)
                ));
            }
            out.push('\n');
        }
    }
    out.push_str(&format!("{indent}}}"));
    out
}

/// Title, description (unless a `oneOf` shows it) and examples above a property.
fn property_comments(out: &mut String, property: &Value, indent: &str) {
    if let Some(title) = str_field(property, "title") {
        out.push_str(&format!("{indent}// {title}\n{indent}//\n"));
    }
    if property.get("oneOf").is_none()
        && let Some(description) = str_field(property, "description")
    {
        out.push_str(&format!("{indent}// {description}\n"));
    }
    if let Some(examples) = property.get("examples").and_then(Value::as_array)
        && !examples.is_empty()
    {
        out.push_str(&format!("{indent}// Examples:\n"));
        for example in examples.iter().filter_map(Value::as_str) {
            out.push_str(&format!("{indent}// - \"{example}\"\n"));
        }
    }
}

/// A property whose schema is a `oneOf`: comments above, then one variant per line.
fn one_of_property(
    out: &mut String,
    key: &str,
    optional: &str,
    property: &Value,
    variants: &[Value],
    indent: &str,
) {
    let property_description = str_field(property, "description");
    let first_variant_description = variants.first().and_then(|v| str_field(v, "description"));
    let description_above = property_description.filter(|d| Some(*d) != first_variant_description);
    if let Some(description) = description_above {
        out.push_str(&format!("{indent}// {description}\n"));
    }
    if let Some(default) = property.get("default") {
        out.push_str(&format!(
            "{indent}// default: {}\n",
            default_text(default, property, false)
        ));
    }
    out.push_str(&format!("{indent}{key}{optional}:\n"));
    for (index, variant) in variants.iter().enumerate() {
        out.push_str(&format!("{indent} | "));
        out.push_str(&with_null(
            typescript(variant, &format!("{indent}   ")),
            variant,
        ));
        let mut comments = Vec::new();
        let shown_above = index == 0 && description_above.is_some();
        if !shown_above
            && let Some(description) = str_field(variant, "description")
            && Some(description) != property_description
        {
            comments.push(description.to_owned());
        }
        if let Some(default) = variant.get("default") {
            comments.push(format!(
                "default: {}",
                default_text(default, variant, false)
            ));
        }
        if !comments.is_empty() {
            out.push_str(&format!(" // {}", comments.join(" ")));
        }
        out.push('\n');
    }
    out.push_str(&format!("{indent},\n"));
}
