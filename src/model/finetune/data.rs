//! Labelled examples for fine-tuning: CSV or TSV with a header, or JSON Lines; which columns
//! hold the text, an optional second text and the label; and what the labels make of the task
//! (single-label, multi-label with `|`-separated names, regression on a float column).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::model::config::ProblemType;
use crate::model::error::{ModelError, Result};

/// Which columns to read; `None` picks the usual names (`text`/`sentence`, `label`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Columns {
    /// The text.
    pub text: Option<String>,
    /// A second text, making pairs.
    pub text_b: Option<String>,
    /// The label.
    pub label: Option<String>,
}

/// One labelled example as read, the label still as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The text.
    pub text_a: String,
    /// The second text of a pair.
    pub text_b: Option<String>,
    /// The label as written (`|` separates several labels).
    pub label: String,
}

/// A data file read: its columns, the ones chosen, and its examples.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Every column of the file, in order.
    pub columns: Vec<String>,
    /// The text, second-text and label columns chosen.
    pub chosen: (String, Option<String>, String),
    /// The examples, in file order.
    pub examples: Vec<Example>,
}

/// What the labels ask the model to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    /// One label per text, of these (`id2label` in order).
    SingleLabel(Vec<String>),
    /// Any number of these labels per text.
    MultiLabel(Vec<String>),
    /// One real number per text.
    Regression,
}

impl Task {
    /// transformers' `problem_type`.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            Self::SingleLabel(_) => ProblemType::SingleLabelClassification,
            Self::MultiLabel(_) => ProblemType::MultiLabelClassification,
            Self::Regression => ProblemType::Regression,
        }
    }

    /// The label names, `id2label` in order (`LABEL_0` for regression, as transformers names it).
    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::SingleLabel(names) | Self::MultiLabel(names) => names.clone(),
            Self::Regression => vec!["LABEL_0".to_owned()],
        }
    }

    /// What the labels ask for, in words (`2 labels (neg, pos)`, `regression`).
    pub fn describe(&self) -> String {
        match self {
            Self::SingleLabel(names) => format!("{} labels ({})", names.len(), names.join(", ")),
            Self::MultiLabel(names) => {
                format!("multi-label, {} labels ({})", names.len(), names.join(", "))
            }
            Self::Regression => "regression".to_owned(),
        }
    }

    /// The head's outputs.
    pub fn outputs(&self) -> usize {
        match self {
            Self::SingleLabel(names) | Self::MultiLabel(names) => names.len(),
            Self::Regression => 1,
        }
    }

    /// The training target of a label as written, or why it does not fit the task.
    pub fn target(&self, label: &str) -> std::result::Result<Vec<f32>, String> {
        let index = |names: &[String], name: &str| {
            names.iter().position(|known| known == name).ok_or_else(|| {
                format!(
                    "label '{name}' is not one of the training labels ({})",
                    names.join(", ")
                )
            })
        };
        match self {
            Self::SingleLabel(names) => {
                let label = label.trim();
                // Integer labels are class ids, whatever the classes are called.
                let id = match label.parse::<usize>() {
                    Ok(id) if id < names.len() && !names.iter().any(|name| name == label) => id,
                    _ => index(names, label)?,
                };
                Ok(vec![id as f32])
            }
            Self::MultiLabel(names) => {
                let mut hot = vec![0f32; names.len()];
                for name in split_labels(label) {
                    hot[index(names, name)?] = 1.0;
                }
                Ok(hot)
            }
            Self::Regression => label
                .trim()
                .parse::<f32>()
                .map(|score| vec![score])
                .map_err(|_| format!("label '{label}' is not a number")),
        }
    }
}

/// The labels of a head the checkpoint already has, which training continues when the data's
/// labels are the same.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingHead {
    /// `id2label`, in order (names `LABEL_i` when the config has none).
    pub labels: Vec<String>,
    /// The config's `problem_type`.
    pub problem_type: Option<ProblemType>,
}

/// The names of a multi-label value.
fn split_labels(label: &str) -> impl Iterator<Item = &str> {
    label
        .split('|')
        .map(str::trim)
        .filter(|name| !name.is_empty())
}

/// The task the training labels describe, and whether it continues the checkpoint's head
/// (`true`: same labels, the head is kept).
pub fn infer_task(
    labels: &[&str],
    existing: Option<&ExistingHead>,
    file: &Path,
) -> Result<(Task, bool)> {
    let bad = |reason: String| ModelError::BadInput(format!("{}: {reason}", file.display()));
    if let Some(line) = labels.iter().position(|label| label.trim().is_empty()) {
        return Err(bad(format!("example {} has no label", line + 1)));
    }
    let only_one = |name: &str| {
        bad(format!(
            "every example has the label '{name}'; a classifier needs at least two labels"
        ))
    };
    if labels.iter().any(|label| label.contains('|')) {
        let names: BTreeSet<&str> = labels
            .iter()
            .flat_map(|label| split_labels(label))
            .collect();
        if names.len() < 2 {
            return Err(only_one(names.first().copied().unwrap_or_default()));
        }
        return Ok(continued_names(
            names,
            existing,
            ProblemType::MultiLabelClassification,
            Task::MultiLabel,
        ));
    }
    let integers: Option<Vec<i64>> = labels
        .iter()
        .map(|label| label.trim().parse::<i64>().ok())
        .collect();
    if let Some(integers) = integers {
        if let Some(negative) = integers.iter().find(|&&id| id < 0) {
            return Err(bad(format!(
                "label {negative} is negative; integer labels are class ids from 0"
            )));
        }
        let distinct: BTreeSet<i64> = integers.iter().copied().collect();
        if distinct.len() < 2 {
            return Err(only_one(labels[0].trim()));
        }
        let count = distinct.last().map_or(0, |&max| max as usize + 1);
        // Integer labels are ids: the checkpoint's names stay when its head covers them.
        if let Some(head) = existing.filter(|head| {
            head.labels.len() >= count
                && head.labels.len() >= 2
                && head.problem_type != Some(ProblemType::Regression)
                && head.problem_type != Some(ProblemType::MultiLabelClassification)
        }) {
            return Ok((Task::SingleLabel(head.labels.clone()), true));
        }
        let names = (0..count).map(|id| format!("LABEL_{id}")).collect();
        return Ok((Task::SingleLabel(names), false));
    }
    if labels
        .iter()
        .all(|label| label.trim().parse::<f64>().is_ok())
    {
        let continues = existing.is_some_and(|head| {
            head.labels.len() == 1
                && head.problem_type != Some(ProblemType::MultiLabelClassification)
        });
        return Ok((Task::Regression, continues));
    }
    let names: BTreeSet<&str> = labels.iter().map(|label| label.trim()).collect();
    if names.len() < 2 {
        return Err(only_one(labels[0].trim()));
    }
    Ok(continued_names(
        names,
        existing,
        ProblemType::SingleLabelClassification,
        Task::SingleLabel,
    ))
}

/// Named labels: the checkpoint's order when its head has exactly these labels, else sorted.
fn continued_names(
    names: BTreeSet<&str>,
    existing: Option<&ExistingHead>,
    problem: ProblemType,
    task: fn(Vec<String>) -> Task,
) -> (Task, bool) {
    if let Some(head) = existing {
        let same = head.labels.len() == names.len()
            && head.labels.iter().all(|name| names.contains(name.as_str()))
            && head.problem_type.is_none_or(|kind| kind == problem);
        if same {
            return (task(head.labels.clone()), true);
        }
    }
    (task(names.into_iter().map(str::to_owned).collect()), false)
}

/// A data file as the Train tab shows it before training: its examples, the task its labels
/// describe and how many examples carry each label.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// The file read.
    pub dataset: Dataset,
    /// The task (as for a model without a head).
    pub task: Task,
    /// Each label and its examples (regression: none).
    pub counts: Vec<(String, usize)>,
}

/// Reads `path` for the Train tab's preview.
pub fn preview(path: &Path, columns: &Columns) -> Result<Preview> {
    let dataset = read(path, columns)?;
    let labels: Vec<&str> = dataset
        .examples
        .iter()
        .map(|ex| ex.label.as_str())
        .collect();
    let (task, _) = infer_task(&labels, None, path)?;
    let counts = match &task {
        Task::SingleLabel(names) | Task::MultiLabel(names) => names
            .iter()
            .enumerate()
            .map(|(id, name)| {
                let count = dataset
                    .examples
                    .iter()
                    .filter(|ex| {
                        task.target(&ex.label).is_ok_and(|target| match &task {
                            Task::MultiLabel(_) => target[id] > 0.5,
                            _ => target[0] as usize == id,
                        })
                    })
                    .count();
                (name.clone(), count)
            })
            .collect(),
        Task::Regression => Vec::new(),
    };
    Ok(Preview {
        dataset,
        task,
        counts,
    })
}

/// Reads a CSV, TSV (by its `.tsv` extension, or a header with tabs and no commas) or JSON
/// Lines file (`.jsonl`/`.json`, or a first line that is an object).
pub fn read(path: &Path, columns: &Columns) -> Result<Dataset> {
    let bad = |reason: String| ModelError::BadInput(format!("{}: {reason}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|err| ModelError::Io {
        path: path.to_owned(),
        reason: format!("cannot read the data file ({err})"),
    })?;
    let text = text.trim_start_matches('\u{feff}');
    let first = text.lines().find(|line| !line.trim().is_empty());
    let Some(first) = first else {
        return Err(bad("the file is empty".to_owned()));
    };
    let extension = path
        .extension()
        .and_then(|ext| ext.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let (header, rows) =
        if extension == "jsonl" || extension == "json" || first.trim_start().starts_with('{') {
            json_lines(text).map_err(bad)?
        } else {
            let tabs = extension == "tsv" || (first.contains('\t') && !first.contains(','));
            delimited(text, if tabs { b'\t' } else { b',' }).map_err(bad)?
        };
    if rows.is_empty() {
        return Err(bad("the file has a header but no examples".to_owned()));
    }
    let find = |wanted: &Option<String>, usual: &[&str], what: &str| -> Result<Option<usize>> {
        match wanted {
            Some(name) => header
                .iter()
                .position(|column| column == name)
                .map(Some)
                .ok_or_else(|| {
                    bad(format!(
                        "no {what} column '{name}'; the columns are {}",
                        header.join(", ")
                    ))
                }),
            None => Ok(usual
                .iter()
                .find_map(|name| header.iter().position(|column| column == name))),
        }
    };
    let label = find(
        &columns.label,
        &["label", "labels", "category", "class", "target"],
        "label",
    )?
    .or_else(|| (header.len() >= 2).then(|| header.len() - 1))
    .ok_or_else(|| {
        bad(format!(
            "no label column; the columns are {}",
            header.join(", ")
        ))
    })?;
    let text_column = find(
        &columns.text,
        &["text", "sentence", "sentence1", "review", "content"],
        "text",
    )?
    .or_else(|| (0..header.len()).find(|&column| column != label))
    .ok_or_else(|| {
        bad(format!(
            "no text column; the columns are {}",
            header.join(", ")
        ))
    })?;
    let text_b = find(&columns.text_b, &["text_b", "sentence2"], "second text")?;
    if text_column == label || text_b == Some(label) {
        return Err(bad(format!(
            "the label column '{}' is also a text column",
            header[label]
        )));
    }
    let examples = rows
        .into_iter()
        .map(|row| Example {
            text_a: row[text_column].clone(),
            // An empty second text is a single text (a file may mix pairs and single texts).
            text_b: text_b
                .map(|column| row[column].clone())
                .filter(|text| !text.is_empty()),
            label: row[label].clone(),
        })
        .collect();
    Ok(Dataset {
        chosen: (
            header[text_column].clone(),
            text_b.map(|column| header[column].clone()),
            header[label].clone(),
        ),
        columns: header,
        examples,
    })
}

type Rows = (Vec<String>, Vec<Vec<String>>);

fn delimited(text: &str, delimiter: u8) -> std::result::Result<Rows, String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|err| format!("cannot read the header ({err})"))?
        .iter()
        .map(|name| name.trim().to_owned())
        .collect();
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(|err| format!("row {} ({err})", index + 2))?;
        rows.push(record.iter().map(str::to_owned).collect());
    }
    Ok((header, rows))
}

fn json_lines(text: &str) -> std::result::Result<Rows, String> {
    let mut header: Vec<String> = Vec::new();
    let mut objects = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|err| format!("line {} is not JSON ({err})", index + 1))?;
        let Value::Object(object) = value else {
            return Err(format!("line {} is not a JSON object", index + 1));
        };
        for key in object.keys() {
            if !header.contains(key) {
                header.push(key.clone());
            }
        }
        objects.push(object);
    }
    let cell = |value: Option<&Value>| match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join("|"),
        Some(other) => other.to_string(),
    };
    let rows = objects
        .iter()
        .map(|object| header.iter().map(|key| cell(object.get(key))).collect())
        .collect();
    Ok((header, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(labels: &[&str]) -> Task {
        infer_task(labels, None, Path::new("train.csv")).unwrap().0
    }

    #[test]
    fn labels_make_the_task() {
        assert_eq!(
            task(&["pos", "neg", "pos"]),
            Task::SingleLabel(vec!["neg".into(), "pos".into()])
        );
        let ids = task(&["0", "2", "1"]);
        assert_eq!(
            ids,
            Task::SingleLabel(vec!["LABEL_0".into(), "LABEL_1".into(), "LABEL_2".into()])
        );
        assert_eq!(ids.target("2"), Ok(vec![2.0]));
        assert_eq!(task(&["0.5", "1", "-2.25"]), Task::Regression);
        assert_eq!(
            task(&["a|b", "c", "b"]),
            Task::MultiLabel(vec!["a".into(), "b".into(), "c".into()])
        );
        let one = infer_task(&["x", "x"], None, Path::new("t.csv")).unwrap_err();
        assert!(one.to_string().contains("at least two labels"), "{one}");
        let blank = infer_task(&["x", " "], None, Path::new("t.csv")).unwrap_err();
        assert!(
            blank.to_string().contains("example 2 has no label"),
            "{blank}"
        );
    }

    #[test]
    fn a_head_with_the_same_labels_continues_in_its_order() {
        let head = ExistingHead {
            labels: vec!["POSITIVE".into(), "NEGATIVE".into()],
            problem_type: None,
        };
        let (task, continues) =
            infer_task(&["NEGATIVE", "POSITIVE"], Some(&head), Path::new("t.csv")).unwrap();
        assert!(continues);
        assert_eq!(task.labels(), head.labels);
        let (_, continues) = infer_task(&["good", "bad"], Some(&head), Path::new("t.csv")).unwrap();
        assert!(!continues);
    }

    #[test]
    fn csv_tsv_and_json_lines_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "sentence,label\n\"good, very\",pos\nbad,neg\n").unwrap();
        let tsv = dir.path().join("a.tsv");
        std::fs::write(&tsv, "sentence\tlabel\ngood, very\tpos\nbad\tneg\n").unwrap();
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(
            &jsonl,
            "{\"sentence\": \"good, very\", \"label\": \"pos\"}\n\n{\"sentence\": \"bad\", \"label\": \"neg\"}\n",
        )
        .unwrap();
        for path in [&csv, &tsv, &jsonl] {
            let read = read(path, &Columns::default()).unwrap();
            assert_eq!(read.examples.len(), 2, "{}", path.display());
            assert_eq!(read.examples[0].text_a, "good, very");
            assert_eq!(read.examples[1].label, "neg");
        }
        let missing = read(
            &csv,
            &Columns {
                label: Some("stars".into()),
                ..Columns::default()
            },
        )
        .unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("the columns are sentence, label"),
            "{missing}"
        );
        let empty = dir.path().join("e.csv");
        std::fs::write(&empty, "\n").unwrap();
        assert!(read(&empty, &Columns::default())
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
