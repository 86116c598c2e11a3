//! JSONL datasets: one JSON object per line, with configurable field names (dotted paths reach
//! into nested objects, so verl's rows and flat Hugging Face rows are read alike). Parquet rows
//! ([`super::parquet`]) go through the same [`task_from_row`].
//!
//! The gold answer comes from the answer field: the last `\boxed{}` when there is one, else the
//! text after GSM8K's `####`, else the whole field.

use super::template::ChatMessage;
use super::{Task, TaskError};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::Path;

/// Which fields hold a task's parts; for each, the first one present is used. A name may be a
/// dotted path into nested objects (`reward_model.ground_truth`), so verl's layout and
/// Hugging-Face-style flat rows are read by one mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonlFields {
    /// A string, or chat messages (`[{"role", "content"}, ..]`, verl's `prompt`).
    pub question: Vec<String>,
    pub answer: Vec<String>,
    /// A task id; `file:line` (or `file:row`) when none is present.
    pub id: Vec<String>,
    /// The dataset tag that picks the reward (verl's `data_source`); empty when absent.
    pub data_source: Vec<String>,
}

impl Default for JsonlFields {
    fn default() -> Self {
        Self {
            question: vec!["question".into(), "prompt".into(), "problem".into()],
            answer: vec![
                "answer".into(),
                "solution".into(),
                "reward_model.ground_truth".into(),
            ],
            id: vec!["id".into(), "extra_info.index".into()],
            data_source: vec!["data_source".into()],
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
        let fallback_id = format!("{}:{line_no}", display_name(path));
        tasks.push(task_from_row(&value, fields, fallback_id).map_err(err)?);
    }
    if tasks.is_empty() {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(tasks)
}

/// One task from one row (a JSONL line, or a parquet row as JSON). The error names the column.
pub fn task_from_row(
    value: &serde_json::Value,
    fields: &JsonlFields,
    fallback_id: String,
) -> Result<Task, String> {
    if !value.is_object() {
        return Err("expected a JSON object".into());
    }
    let (question_field, question_value) = first_present(value, &fields.question)?;
    let (question, chat) = match question_value {
        serde_json::Value::Array(items) => {
            let chat =
                chat_messages(items).map_err(|e| format!("column `{question_field}`: {e}"))?;
            // The last user turn stands for the question in logs and evaluations.
            let question = chat
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.clone())
                .ok_or_else(|| format!("column `{question_field}`: no user message"))?;
            (question, chat)
        }
        other => (scalar(question_field, other)?, Vec::new()),
    };
    if question.trim().is_empty() {
        return Err(format!("empty question in column `{question_field}`"));
    }
    let (answer_field, answer_value) = first_present(value, &fields.answer)?;
    let answer_text = scalar(answer_field, answer_value)?;
    let gold = gold_from_solution(&answer_text)
        .ok_or_else(|| format!("empty gold answer in column `{answer_field}`"))?;
    let id = match first_present(value, &fields.id) {
        Ok((_, serde_json::Value::String(s))) => s.clone(),
        Ok((_, serde_json::Value::Number(n))) => n.to_string(),
        _ => fallback_id,
    };
    let data_source = match first_present(value, &fields.data_source) {
        Ok((name, v)) => scalar(name, v)?,
        Err(_) => String::new(),
    };
    Ok(Task {
        id,
        question,
        gold,
        data_source,
        chat,
    })
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// The value at a dotted path (`a.b.c`); None when any part is missing or null.
fn lookup<'a>(value: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = value.get(path) {
        return (!v.is_null()).then_some(v);
    }
    let mut v = value;
    for part in path.split('.') {
        v = v.get(part)?;
    }
    (!v.is_null()).then_some(v)
}

/// The first of `names` present (and not null), with its name.
fn first_present<'a, 'n>(
    value: &'a serde_json::Value,
    names: &'n [String],
) -> Result<(&'n str, &'a serde_json::Value), String> {
    names
        .iter()
        .find_map(|n| lookup(value, n).map(|v| (n.as_str(), v)))
        .ok_or_else(|| {
            format!(
                "missing column: expected one of {}",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// A string or number column as text. Numeric answers ({"answer": 42}) are common in GSM8K-style
/// files.
fn scalar(name: &str, v: &serde_json::Value) -> Result<String, String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "column `{name}` must be a string or number, got {}",
            json_kind(other)
        )),
    }
}

fn chat_messages(items: &[serde_json::Value]) -> Result<Vec<ChatMessage>, String> {
    if items.is_empty() {
        return Err("no messages".into());
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = |f: &str| match m.get(f) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                _ => Err(format!("message {i} needs a string `{f}`")),
            };
            Ok(ChatMessage {
                role: field("role")?,
                content: field("content")?,
            })
        })
        .collect()
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
