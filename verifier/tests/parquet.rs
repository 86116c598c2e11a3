//! Parquet datasets: a file in verl's layout, written by the tests, read back through the same
//! column mapping as JSONL; bad rows name the file, the row and the column.

use std::path::PathBuf;

use laser_verifier::Task;
use laser_verifier::tasks::jsonl::JsonlFields;
use laser_verifier::tasks::parquet::{load_parquet, load_tasks, write_verl_parquet};
use laser_verifier::tasks::template::ChatMessage;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("laser-parquet-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn task(i: usize, gold: &str, chat: Vec<ChatMessage>) -> Task {
    Task {
        id: format!("t{i}"),
        question: format!("What is {i} + {i}?"),
        gold: gold.into(),
        data_source: if i.is_multiple_of(2) {
            "openai/gsm8k".into()
        } else {
            "lighteval/MATH".into()
        },
        chat,
    }
}

#[test]
fn a_verl_parquet_file_reads_back_as_its_tasks() {
    let dir = scratch("verl");
    let path = dir.join("train.parquet");
    let system = ChatMessage {
        role: "system".into(),
        content: "You are a careful solver.".into(),
    };
    let user = ChatMessage {
        role: "user".into(),
        content:
            "What is 1 + 1? Let's think step by step and output the final answer after \"####\"."
                .into(),
    };
    let tasks = vec![
        task(0, "0", Vec::new()),
        task(1, "2", vec![system.clone(), user.clone()]),
        task(2, "\\frac{1}{2}", Vec::new()),
    ];
    let prompt = |t: &Task| format!("{} Please reason step by step.", t.question);
    write_verl_parquet(&path, &tasks, prompt, "train").unwrap();
    let read = load_parquet(&path, &JsonlFields::default()).unwrap();
    assert_eq!(read.len(), 3);
    for (i, (got, want)) in read.iter().zip(&tasks).enumerate() {
        // verl's extra_info.index is the id; ground_truth the gold; data_source kept.
        assert_eq!(got.id, i.to_string());
        assert_eq!(got.gold, want.gold);
        assert_eq!(got.data_source, want.data_source);
    }
    // A one-turn prompt is the user message; the question is that turn's text.
    assert_eq!(read[0].chat.len(), 1);
    assert_eq!(read[0].chat[0].role, "user");
    assert_eq!(read[0].question, prompt(&tasks[0]));
    // A system + user prompt keeps both turns, in order; the question is the user turn.
    assert_eq!(read[1].chat, vec![system, user.clone()]);
    assert_eq!(read[1].question, user.content);
    // By extension, the same reader.
    assert_eq!(load_tasks(&path, &JsonlFields::default()).unwrap(), read);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_row_names_the_file_the_row_and_the_column() {
    let dir = scratch("bad");
    let path = dir.join("bad.parquet");
    let tasks = vec![task(0, "4", Vec::new()), task(1, "  ", Vec::new())];
    write_verl_parquet(&path, &tasks, |t| t.question.clone(), "train").unwrap();
    let err = load_parquet(&path, &JsonlFields::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.parquet")
            && err.contains("row 2")
            && err.contains("reward_model.ground_truth"),
        "{err}"
    );
    // A mapping that names a column the file lacks says which columns it looked for.
    let fields = JsonlFields {
        answer: vec!["final_answer".into()],
        ..JsonlFields::default()
    };
    let err = load_parquet(&path, &fields).unwrap_err().to_string();
    assert!(
        err.contains("row 1") && err.contains("`final_answer`"),
        "{err}"
    );
    // Not parquet at all.
    let junk = dir.join("junk.parquet");
    std::fs::write(&junk, b"{\"question\": \"1+1\"}\n").unwrap();
    let err = load_parquet(&junk, &JsonlFields::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("junk.parquet") && err.contains("parquet"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_column_mapping_reads_nested_and_renamed_columns() {
    let dir = scratch("mapping");
    let path = dir.join("m.parquet");
    let tasks = vec![task(0, "7", Vec::new())];
    write_verl_parquet(&path, &tasks, |t| t.question.clone(), "test").unwrap();
    // Read the split as the data source and the style as the id: any nested column by path.
    let fields = JsonlFields {
        id: vec!["reward_model.style".into()],
        data_source: vec!["extra_info.split".into()],
        ..JsonlFields::default()
    };
    let read = load_parquet(&path, &fields).unwrap();
    assert_eq!(
        (read[0].id.as_str(), read[0].data_source.as_str()),
        ("rule", "test")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_file_pyarrow_wrote_in_verls_layout_reads_like_its_jsonl_source() {
    // data/*.verl.parquet: written by scripts/verl_parquet_from_jsonl.py (pandas + pyarrow,
    // snappy, verl's gsm8k recipe) from the JSONL beside it.
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data");
    let parquet = load_parquet(
        &data.join("reasoning_gym_arithmetic.verl.parquet"),
        &JsonlFields::default(),
    )
    .unwrap();
    let jsonl = laser_verifier::tasks::jsonl::load_jsonl(
        &data.join("reasoning_gym_arithmetic.jsonl"),
        &JsonlFields::default(),
    )
    .unwrap();
    assert_eq!(parquet.len(), jsonl.len());
    for (i, (p, j)) in parquet.iter().zip(&jsonl).enumerate() {
        assert_eq!(p.gold, j.gold, "row {}", i + 1);
        assert_eq!(p.id, i.to_string());
        assert_eq!(p.data_source, "reasoning_gym/basic_arithmetic");
        assert_eq!(p.chat.len(), 1);
        assert!(
            p.question.starts_with(j.question.trim_end()) && p.question.ends_with("\"####\"."),
            "row {}: {:?}",
            i + 1,
            p.question
        );
    }
}
