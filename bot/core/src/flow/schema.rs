//! JSON Schemas of the two file formats, derived from the loader's own serde
//! types, so the schema editors validate against cannot say something the
//! loader does not. `flows/schema.json` and `flows/bot.schema.json` are these,
//! committed; a test fails when they are stale.

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::Value;

use super::bot::RawBot;
use super::raw::RawFlow;

/// A schema file shipped in `flows/`: its name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaFile {
    /// The file name, e.g. `schema.json`.
    pub name: &'static str,
    /// Pretty-printed JSON with a final newline.
    pub text: String,
}

/// The schema of a flow file (`flows/<id>.yaml`).
pub fn flow_schema() -> serde_json::Value {
    schema_of::<RawFlow>()
}

/// The schema of the bot strings file (`flows/_bot.yaml`).
pub fn bot_schema() -> serde_json::Value {
    schema_of::<RawBot>()
}

/// Both schemas as the files shipped in `flows/`.
pub fn schema_files() -> [SchemaFile; 2] {
    [
        SchemaFile { name: "schema.json", text: pretty(&flow_schema()) },
        SchemaFile { name: "bot.schema.json", text: pretty(&bot_schema()) },
    ]
}

/// Draft 7, the dialect every YAML editor plugin understands (the VS Code
/// YAML extension's language server handles newer drafts only in part).
fn schema_of<T: JsonSchema>() -> serde_json::Value {
    SchemaSettings::draft07()
        .with_transform(RecursiveTransform(tidy))
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Shapes one (sub)schema for editors: descriptions as paragraphs rather than
/// the doc comments' wrapped lines, also as `markdownDescription` (which VS
/// Code renders, code spans and all), and no Rust integer formats.
fn tidy(schema: &mut Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if object.get("format").and_then(Value::as_str).is_some_and(|format| format.starts_with("uint")) {
        object.remove("format");
    }
    if let Some(Value::String(description)) = object.get_mut("description") {
        *description = unwrap_lines(description);
        let markdown = description.clone();
        object.insert("markdownDescription".to_owned(), Value::String(markdown));
    }
}

/// Joins the lines of each paragraph with a space.
fn unwrap_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| paragraph.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_schema_is_closed_and_requires_what_the_loader_requires() {
        let schema = flow_schema();
        assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(schema["additionalProperties"], false);
        let mut required: Vec<&str> =
            schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        required.sort_unstable();
        assert_eq!(required, ["match", "steps", "summary", "title"]);
        let step = &schema["definitions"]["Step"];
        assert_eq!(step["additionalProperties"], false);
        assert_eq!(step["anyOf"].as_array().unwrap().len(), 3);
        assert_eq!(schema["definitions"]["Pattern"]["properties"]["weight"]["default"], 1);
        // Doc comments become the descriptions editors show.
        assert!(step["properties"]["id"]["description"].as_str().unwrap().contains("unique in this flow"));
    }
}
