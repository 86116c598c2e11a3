//! JSONL datasets: one JSON object per line, with configurable field names.
//!
//! The gold answer comes from the answer field: the last `\boxed{}` when there is one, else the
//! text after GSM8K's `####`, else the whole field.

use super::{Task, TaskError};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;

/// Which fields hold the question and the answer; the first one present is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonlFields {
    pub question: Vec<String>,
    pub answer: Vec<String>,
    /// Field holding a task id; the line number is used when absent.
    pub id: Option<String>,
}

impl Default for JsonlFields {
    fn default() -> Self {
        Self {
            question: vec!["question".into(), "prompt".into(), "problem".into()],
            answer: vec!["answer".into(), "solution".into()],
            id: Some("id".into()),
        }
    }
}

/// Loads every task of a JSONL file.
pub fn load_jsonl(path: &Path, fields: &JsonlFields) -> Result<Vec<Task>, TaskError> {
    let file = std::fs::File::open(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_jsonl(std::io::BufReader::new(file), path, fields)
}

/// Reads tasks from any reader; `path` names the source in errors.
pub fn read_jsonl(
    reader: impl BufRead,
    path: &Path,
    fields: &JsonlFields,
) -> Result<Vec<Task>, TaskError> {
    let mut tasks = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line_no = i + 1;
        let err = |message: String| TaskError::Line {
            path: path.to_path_buf(),
            line: line_no,
            message,
        };
        let line = line.map_err(|e| err(format!("unreadable line: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| err(format!("invalid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| err("expected a JSON object".into()))?;
        let question = pick(obj, &fields.question).map_err(err)?;
        let answer_text = pick(obj, &fields.answer).map_err(err)?;
        let gold = gold_from_solution(&answer_text).ok_or_else(|| {
            err(format!(
                "empty gold answer in field `{}`",
                present(obj, &fields.answer)
            ))
        })?;
        if question.trim().is_empty() {
            return Err(err(format!(
                "empty question in field `{}`",
                present(obj, &fields.question)
            )));
        }
        let id = match fields.id.as_deref().and_then(|f| obj.get(f)) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => format!("{}:{line_no}", display_name(path)),
        };
        tasks.push(Task { id, question, gold });
    }
    if tasks.is_empty() {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(tasks)
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn present<'a>(obj: &serde_json::Map<String, serde_json::Value>, names: &'a [String]) -> &'a str {
    names
        .iter()
        .find(|n| obj.contains_key(n.as_str()))
        .map(String::as_str)
        .unwrap_or("?")
}

fn pick(
    obj: &serde_json::Map<String, serde_json::Value>,
    names: &[String],
) -> Result<String, String> {
    for name in names {
        match obj.get(name) {
            Some(serde_json::Value::String(s)) => return Ok(s.clone()),
            // Numeric answers ({"answer": 42}) are common in GSM8K-style files.
            Some(serde_json::Value::Number(n)) => return Ok(n.to_string()),
            Some(serde_json::Value::Null) | None => continue,
            Some(other) => {
                return Err(format!(
                    "field `{name}` must be a string or number, got {}",
                    json_kind(other)
                ));
            }
        }
    }
    Err(format!(
        "missing field: expected one of {}",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The gold answer inside a reference answer/solution field.
pub fn gold_from_solution(text: &str) -> Option<String> {
    if let Some(b) = crate::extract::last_boxed_content(text) {
        let b = b.trim();
        return (!b.is_empty()).then(|| b.to_string());
    }
    if let Some(pos) = text.rfind("####") {
        let after = text[pos + 4..].trim_start_matches('#').trim();
        let line = after.lines().next().unwrap_or("").trim();
        return (!line.is_empty()).then(|| line.to_string());
    }
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}
