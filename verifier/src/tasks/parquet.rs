//! Parquet datasets: verl's layout (`data_source`, `prompt` as chat messages,
//! `reward_model.ground_truth`, `extra_info.index`) and Hugging-Face-style flat columns, read with
//! the `parquet` crate's record API. Each row becomes JSON and goes through the same column
//! mapping as a JSONL line ([`super::jsonl::task_from_row`]), so one mapping serves both formats.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};

use super::jsonl::{JsonlFields, task_from_row};
use super::{Task, TaskError};

/// Loads every task of a parquet file. A bad row is an error naming the file, the row (1-based)
/// and the column.
pub fn load_parquet(path: &Path, fields: &JsonlFields) -> Result<Vec<Task>, TaskError> {
    let file = std::fs::File::open(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let whole = |message: String| TaskError::Row {
        path: path.to_path_buf(),
        row: 0,
        message,
    };
    let reader = SerializedFileReader::new(file)
        .map_err(|e| whole(format!("not a readable parquet file: {e}")))?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| whole(format!("reading the schema: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let mut tasks = Vec::new();
    for (i, row) in rows.enumerate() {
        let err = |message: String| TaskError::Row {
            path: path.to_path_buf(),
            row: i + 1,
            message,
        };
        let row = row.map_err(|e| err(format!("unreadable row: {e}")))?;
        let value = row.to_json_value();
        tasks.push(task_from_row(&value, fields, format!("{name}:{}", i + 1)).map_err(err)?);
    }
    if tasks.is_empty() {
        return Err(TaskError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(tasks)
}

/// Loads a dataset by its extension: `.parquet`, else JSONL.
pub fn load_tasks(path: &Path, fields: &JsonlFields) -> Result<Vec<Task>, TaskError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        load_parquet(path, fields)
    } else {
        super::jsonl::load_jsonl(path, fields)
    }
}

/// Writes `tasks` as a parquet file in verl's layout (what verl's `data_preprocess` scripts
/// write): `data_source`, `prompt` (the task's chat messages, or one user turn holding
/// `prompt_text(task)`), `ability`, `reward_model {ground_truth, style = "rule"}`,
/// `extra_info {index, split}`. Snappy-compressed, as pandas writes by default.
pub fn write_verl_parquet(
    path: &Path,
    tasks: &[Task],
    prompt_text: impl Fn(&Task) -> String,
    split: &str,
) -> Result<(), TaskError> {
    use parquet::basic::Compression;
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use std::sync::Arc;

    let fail = |message: String| TaskError::Row {
        path: path.to_path_buf(),
        row: 0,
        message,
    };
    // Every field required: one definition level (the list's), so the levels stay simple.
    let schema = parquet::schema::parser::parse_message_type(
        "message verl {
            required binary data_source (STRING);
            required group prompt (LIST) {
                repeated group list {
                    required group element {
                        required binary role (STRING);
                        required binary content (STRING);
                    }
                }
            }
            required binary ability (STRING);
            required group reward_model {
                required binary ground_truth (STRING);
                required binary style (STRING);
            }
            required group extra_info {
                required int64 index;
                required binary split (STRING);
            }
        }",
    )
    .map_err(|e| fail(format!("schema: {e}")))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = std::fs::File::create(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(props))
        .map_err(|e| fail(format!("writer: {e}")))?;
    let bytes = |s: &str| ByteArray::from(s.as_bytes().to_vec());
    let messages: Vec<Vec<(String, String)>> = tasks
        .iter()
        .map(|t| {
            if t.chat.is_empty() {
                vec![("user".to_string(), prompt_text(t))]
            } else {
                t.chat
                    .iter()
                    .map(|m| (m.role.clone(), m.content.clone()))
                    .collect()
            }
        })
        .collect();
    // Repetition levels of the message leaves: 0 starts a row's list, 1 continues it.
    let rep: Vec<i16> = messages
        .iter()
        .flat_map(|m| (0..m.len()).map(|i| i16::from(i > 0)))
        .collect();
    let def = vec![1i16; rep.len()];
    let strings = |f: &dyn Fn(usize, &Task) -> String| -> Vec<ByteArray> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| bytes(&f(i, t)))
            .collect()
    };
    let mut group = writer
        .next_row_group()
        .map_err(|e| fail(format!("row group: {e}")))?;
    let mut leaf = 0;
    while let Some(mut col) = group
        .next_column()
        .map_err(|e| fail(format!("column {leaf}: {e}")))?
    {
        let written = match leaf {
            0 => col.typed::<ByteArrayType>().write_batch(
                &strings(&|_, t| t.data_source.clone()),
                None,
                None,
            ),
            1 | 2 => {
                let values: Vec<ByteArray> = messages
                    .iter()
                    .flatten()
                    .map(|(role, content)| bytes(if leaf == 1 { role } else { content }))
                    .collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&values, Some(&def), Some(&rep))
            }
            3 => col.typed::<ByteArrayType>().write_batch(
                &strings(&|_, _| "math".into()),
                None,
                None,
            ),
            4 => col.typed::<ByteArrayType>().write_batch(
                &strings(&|_, t| t.gold.clone()),
                None,
                None,
            ),
            5 => col.typed::<ByteArrayType>().write_batch(
                &strings(&|_, _| "rule".into()),
                None,
                None,
            ),
            6 => {
                let index: Vec<i64> = (0..tasks.len() as i64).collect();
                col.typed::<Int64Type>().write_batch(&index, None, None)
            }
            _ => col.typed::<ByteArrayType>().write_batch(
                &strings(&|_, _| split.to_string()),
                None,
                None,
            ),
        };
        written.map_err(|e| fail(format!("column {leaf}: {e}")))?;
        col.close()
            .map_err(|e| fail(format!("column {leaf}: {e}")))?;
        leaf += 1;
    }
    group.close().map_err(|e| fail(format!("row group: {e}")))?;
    writer.close().map_err(|e| fail(format!("footer: {e}")))?;
    Ok(())
}
