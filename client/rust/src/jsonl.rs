//! Documents as JSON lines: the BEIR corpus format `{"_id", "title", "text", "metadata"}` (or
//! `"id"`), with an optional `"vector"` array. Metadata values must be scalars.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::proto;

/// Parses one line into a document; the error names the offending field.
pub fn parse_document(line: &str) -> Result<proto::Document, String> {
    let value: Json = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Json::Object(object) = value else { return Err("not a JSON object".into()) };
    let id = match object.get("_id").or_else(|| object.get("id")) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        Some(_) => return Err("_id: must be a string or a number".into()),
        None => return Err("no `_id` or `id` field".into()),
    };
    let text_field = |name: &str| match object.get(name) {
        None | Some(Json::Null) => Ok(String::new()),
        Some(Json::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{name}: must be a string")),
    };
    let mut metadata = HashMap::new();
    match object.get("metadata") {
        None | Some(Json::Null) => {}
        Some(Json::Object(map)) => {
            for (key, v) in map {
                metadata.insert(
                    key.clone(),
                    scalar(v).map_err(|why| format!("metadata.{key}: {why}"))?,
                );
            }
        }
        Some(_) => return Err("metadata: must be an object".into()),
    }
    let vector = match object.get("vector") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| {
                x.as_f64().map(|x| x as f32).ok_or_else(|| format!("vector[{i}]: must be a number"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("vector: must be an array of numbers".into()),
    };
    Ok(proto::Document {
        id,
        title: text_field("title")?,
        text: text_field("text")?,
        metadata,
        vector,
    })
}

/// A JSON scalar as a metadata value.
pub fn scalar(value: &Json) -> Result<proto::Value, String> {
    match value {
        Json::String(s) => Ok(s.as_str().into()),
        Json::Bool(b) => Ok((*b).into()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Ok(i.into()),
            None => n.as_f64().map(Into::into).ok_or_else(|| format!("{n} is out of range")),
        },
        Json::Null => Err("null is not a value".into()),
        Json::Array(_) | Json::Object(_) => {
            Err("arrays and objects are not supported; use scalars".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_beir_lines_and_names_bad_fields() {
        let doc =
            parse_document(r#"{"_id": "4983", "title": "T", "text": "body", "metadata": {}}"#)
                .unwrap();
        assert_eq!((doc.id.as_str(), doc.title.as_str(), doc.text.as_str()), ("4983", "T", "body"));
        let doc = parse_document(r#"{"id": 7, "text": "x", "metadata": {"year": 2020, "ok": true, "w": 0.5}, "vector": [1, 0.5]}"#)
            .unwrap();
        assert_eq!(doc.id, "7");
        assert_eq!(doc.metadata["year"], proto::Value::from(2020_i64));
        assert_eq!(doc.metadata["ok"], proto::Value::from(true));
        assert_eq!(doc.metadata["w"], proto::Value::from(0.5));
        assert_eq!(doc.vector, vec![1.0, 0.5]);
        assert_eq!(
            parse_document(r#"{"_id": "1", "metadata": {"tags": ["a"]}}"#).unwrap_err(),
            "metadata.tags: arrays and objects are not supported; use scalars"
        );
        assert_eq!(parse_document(r#"{"title": "x"}"#).unwrap_err(), "no `_id` or `id` field");
        assert_eq!(
            parse_document(r#"{"_id": "1", "vector": [1, "a"]}"#).unwrap_err(),
            "vector[1]: must be a number"
        );
    }
}
