//! TableLoader: a table from a CSV file with a header row or a Parquet file (uncompressed or
//! snappy; read with the parquet crate's record API, no arrow); named target columns become the
//! regression targets, the other columns (or those named) the features. Missing cells (empty,
//! NA, null) are an error naming the file, the line (CSV) or row (Parquet) and the column, or
//! are dropped or filled as configured; a cell that is not a number is always an error with its
//! position, column and text. Nothing is scaled here: standardisation is the host's recorded
//! transform.

use std::collections::BTreeMap;

use plugin_sdk::prelude::*;
use serde::Deserialize;
use serde_json::json;

/// Cells that mean "no value".
const MISSING: [&str; 8] = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoaderConfig {
    data_loader: LoaderSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoaderSection {
    path: String,
    target_columns: Vec<String>,
    feature_columns: Vec<String>,
    missing: String,
    delimiter: String,
    format: String,
}

/// Reads a CSV table for regression.
pub struct TableLoader {
    config: LoaderSection,
    delimiter: u8,
    table: Option<Table>,
}

/// The numbers read, row by row, before missing values are handled.
struct Table {
    features: Vec<String>,
    targets: Vec<String>,
    /// How a row's position reads in messages: `line` (CSV, counting the header) or `row`.
    position: &'static str,
    /// Per row: its position in the file, then the feature cells, then the target cells.
    rows: Vec<(u64, Vec<Option<f64>>)>,
}

impl PluginClass for TableLoader {
    const NAME: &'static str = "TableLoader";
    const SUMMARY: &'static str =
        "a CSV or Parquet table: configured feature and target columns, missing values refused, dropped or filled";

    fn config_keys() -> Vec<ConfigKey> {
        let s = "data_loader";
        vec![
            ConfigKey::new(s, "path", ConfigType::String)
                .required()
                .describe("the CSV file (with a header row) or Parquet file"),
            ConfigKey::new(s, "format", ConfigType::Choice(["auto", "csv", "parquet"].map(String::from).to_vec()))
                .default("auto")
                .describe("auto: parquet for .parquet/.pq files, otherwise csv"),
            ConfigKey::new(s, "target_columns", ConfigType::List(Box::new(ConfigType::String)))
                .required()
                .describe("the columns to predict (one or more)"),
            ConfigKey::new(s, "feature_columns", ConfigType::List(Box::new(ConfigType::String)))
                .default(json!([]))
                .describe("the input columns; empty: every column that is not a target"),
            ConfigKey::new(s, "missing", ConfigType::Choice(["error", "drop", "mean"].map(String::from).to_vec()))
                .default("error")
                .describe("a missing cell (empty, NA, NaN, null): stop, drop its row, or fill the column's mean"),
            ConfigKey::new(s, "delimiter", ConfigType::String).default(",").describe("CSV: one character"),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let config = config.parse::<LoaderConfig>()?.data_loader;
        let delimiter = match config.delimiter.as_bytes() {
            [byte] => *byte,
            _ => {
                return Err(PluginError::invalid_config(format!(
                    "data_loader.delimiter: one character (such as , or ;), found {:?}",
                    config.delimiter
                )));
            }
        };
        if config.target_columns.is_empty() {
            return Err(PluginError::invalid_config("data_loader.target_columns: name at least one column"));
        }
        if let Some(both) = config.feature_columns.iter().find(|c| config.target_columns.contains(c)) {
            return Err(PluginError::invalid_config(format!(
                "data_loader.feature_columns: {both} is also a target column; a column is one or the other"
            )));
        }
        Ok(TableLoader { config, delimiter, table: None })
    }
}

impl TableLoader {
    fn parquet(&self) -> bool {
        match self.config.format.as_str() {
            "parquet" => true,
            "csv" => false,
            _ => {
                let extension = std::path::Path::new(&self.config.path).extension().and_then(|e| e.to_str());
                matches!(extension, Some("parquet" | "pq"))
            }
        }
    }

    /// The feature and target column indices in `header`.
    fn select(&self, header: &[String]) -> Result<(Vec<usize>, Vec<usize>), PluginError> {
        let path = &self.config.path;
        let column = |name: &String, key: &str| -> Result<usize, PluginError> {
            header.iter().position(|h| h == name).ok_or_else(|| {
                PluginError::invalid_config(format!(
                    "data_loader.{key}: {path} has no column {name:?}; its columns are {}",
                    header.join(", ")
                ))
            })
        };
        let targets =
            self.config.target_columns.iter().map(|c| column(c, "target_columns")).collect::<Result<Vec<_>, _>>()?;
        let features: Vec<usize> = if self.config.feature_columns.is_empty() {
            (0..header.len()).filter(|i| !targets.contains(i)).collect()
        } else {
            self.config.feature_columns.iter().map(|c| column(c, "feature_columns")).collect::<Result<_, _>>()?
        };
        if features.is_empty() {
            return Err(PluginError::invalid_config(format!(
                "data_loader.feature_columns: {path} has no column left for features once the targets are taken"
            )));
        }
        Ok((features, targets))
    }

    /// A cell's text as a number: `None` when missing, an error naming where it is otherwise.
    fn number(&self, text: &str, position: &str, column: &str) -> Result<Option<f64>, PluginError> {
        if MISSING.contains(&text) {
            return Ok(None);
        }
        let path = &self.config.path;
        let value: f64 = text
            .parse()
            .map_err(|_| PluginError::new(format!("{path}: {position}, column {column}: {text:?} is not a number")))?;
        if !value.is_finite() {
            return Err(PluginError::new(format!(
                "{path}: {position}, column {column}: {text:?} is not a finite number"
            )));
        }
        Ok(Some(value))
    }

    fn read(&self, services: &Services<'_>) -> Result<Table, PluginError> {
        let table = if self.parquet() { self.read_parquet(services)? } else { self.read_csv(services)? };
        if table.rows.is_empty() {
            return Err(PluginError::new(format!("{}: the file has a header but no rows", self.config.path)));
        }
        Ok(table)
    }

    /// A table of the selected columns with no rows yet, and the column indices to read into
    /// each row, in order (features, then targets).
    fn empty_table(&self, header: &[String], position: &'static str) -> Result<(Table, Vec<usize>), PluginError> {
        let (features, targets) = self.select(header)?;
        let name = |i: &usize| header[*i].clone();
        let wanted = features.iter().chain(&targets).copied().collect();
        let table = Table {
            features: features.iter().map(name).collect(),
            targets: targets.iter().map(name).collect(),
            position,
            rows: Vec::new(),
        };
        Ok((table, wanted))
    }

    /// The selected columns of every row, with each row's line.
    fn read_csv(&self, services: &Services<'_>) -> Result<Table, PluginError> {
        let path = &self.config.path;
        let fix = "; check data_loader.path (relative to the folder host runs in)";
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(self.delimiter)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|e| PluginError::new(format!("{path}: cannot open: {}{fix}", csv_reason(&e))))?;
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| PluginError::new(format!("{path}: cannot read the header row: {}", csv_reason(&e))))?
            .iter()
            .map(str::to_owned)
            .collect();
        let (mut table, wanted) = self.empty_table(&header, "line")?;
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0).max(1);
        for record in reader.records() {
            let record = record.map_err(|e| PluginError::new(format!("{path}: {}", csv_reason(&e))))?;
            let line = record.position().map_or(0, |p| p.line());
            let position = format!("line {line}");
            let cells = wanted
                .iter()
                .map(|&index| self.number(record.get(index).unwrap_or(""), &position, &header[index]))
                .collect::<Result<Vec<_>, _>>()?;
            table.rows.push((line, cells));
            if table.rows.len() % 4096 == 0 {
                let done = record.position().map_or(0, |p| p.byte());
                services.progress(done, size, &format!("read {} rows", table.rows.len()));
            }
        }
        Ok(table)
    }

    /// The selected top-level columns of every row, with each row's number (from 1).
    fn read_parquet(&self, services: &Services<'_>) -> Result<Table, PluginError> {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::record::Field;
        let path = &self.config.path;
        let file = std::fs::File::open(path)
            .map_err(|e| PluginError::new(format!("{path}: cannot open: {e}; check data_loader.path")))?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| PluginError::new(format!("{path}: not a Parquet file this loader reads: {e}")))?;
        let total = reader.metadata().file_metadata().num_rows().max(1) as u64;
        let header: Vec<String> = reader
            .metadata()
            .file_metadata()
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        let (mut table, wanted) = self.empty_table(&header, "row")?;
        let iter = reader.get_row_iter(None).map_err(|e| PluginError::new(format!("{path}: {e}")))?;
        for (index, row) in iter.enumerate() {
            let number = index as u64 + 1;
            let position = format!("row {number}");
            let row = row.map_err(|e| PluginError::new(format!("{path}: {position}: {e}")))?;
            let fields: Vec<(&String, &Field)> = row.get_column_iter().collect();
            let mut cells = Vec::with_capacity(wanted.len());
            for &index in &wanted {
                let (column, field) = fields[index];
                let value = match field {
                    Field::Null => None,
                    Field::Bool(b) => Some(f64::from(u8::from(*b))),
                    Field::Byte(v) => Some(f64::from(*v)),
                    Field::Short(v) => Some(f64::from(*v)),
                    Field::Int(v) => Some(f64::from(*v)),
                    Field::Long(v) => Some(*v as f64),
                    Field::UByte(v) => Some(f64::from(*v)),
                    Field::UShort(v) => Some(f64::from(*v)),
                    Field::UInt(v) => Some(f64::from(*v)),
                    Field::ULong(v) => Some(*v as f64),
                    Field::Float(v) => Some(f64::from(*v)),
                    Field::Double(v) => Some(*v),
                    Field::Float16(v) => Some(f64::from(*v)),
                    Field::Str(text) => self.number(text, &position, column)?,
                    other => {
                        return Err(PluginError::new(format!(
                            "{path}: {position}, column {column}: {other} is not a number (the loader reads numeric, boolean and numeric-text columns)"
                        )));
                    }
                };
                if value.is_some_and(|v| !v.is_finite()) {
                    return Err(PluginError::new(format!(
                        "{path}: {position}, column {column}: {field} is not a finite number"
                    )));
                }
                cells.push(value);
            }
            table.rows.push((number, cells));
            if table.rows.len() % 4096 == 0 {
                services.progress(table.rows.len() as u64, total, &format!("read {} rows", table.rows.len()));
            }
        }
        Ok(table)
    }
}

/// A csv error's message with the line it happened on, where the crate knows it.
fn csv_reason(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => {
            format!("line {}: {len} fields where the header has {expected_len}", pos.as_ref().map_or(0, |p| p.line()))
        }
        csv::ErrorKind::Utf8 { pos, .. } => {
            format!("line {}: not UTF-8 text", pos.as_ref().map_or(0, |p| p.line()))
        }
        _ => error.to_string(),
    }
}

impl DataLoader for TableLoader {
    fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError> {
        let table = self.read(services)?;
        let description = format!(
            "{}: {} rows, {} feature columns, target {}",
            self.config.path,
            table.rows.len(),
            table.features.len(),
            table.targets.join(", ")
        );
        let samples = table.rows.len();
        self.table = Some(table);
        Ok(LoadSummary {
            source_files: vec![SourceFile { path: self.config.path.clone(), role: "table".into() }],
            samples,
            description,
        })
    }

    fn extract_features_and_targets(&mut self, services: &Services<'_>) -> Result<Dataset, PluginError> {
        let table = self
            .table
            .take()
            .ok_or_else(|| PluginError::new("extract_features_and_targets called before load_data"))?;
        let columns = table.features.len() + table.targets.len();
        let names: Vec<&String> = table.features.iter().chain(&table.targets).collect();
        let missing_in = |column: usize| table.rows.iter().filter(|(_, cells)| cells[column].is_none()).count();
        let mut filled = BTreeMap::new();
        let mut fill = vec![None; columns];
        match self.config.missing.as_str() {
            "error" => {
                if let Some((at, column)) = table
                    .rows
                    .iter()
                    .find_map(|(at, cells)| cells.iter().position(Option::is_none).map(|column| (at, column)))
                {
                    return Err(PluginError::new(format!(
                        "{}: {} {at}, column {}: missing value; set data_loader.missing to drop or mean, or fix the file",
                        self.config.path, table.position, names[column]
                    )));
                }
            }
            "mean" => {
                for (column, slot) in fill.iter_mut().enumerate() {
                    let count = missing_in(column);
                    if count == 0 {
                        continue;
                    }
                    let present: Vec<f64> = table.rows.iter().filter_map(|(_, cells)| cells[column]).collect();
                    if present.is_empty() {
                        return Err(PluginError::new(format!(
                            "{}: column {} has no values to take a mean of",
                            self.config.path, names[column]
                        )));
                    }
                    let mean = present.iter().sum::<f64>() / present.len() as f64;
                    *slot = Some(mean);
                    filled.insert(names[column].clone(), json!({"cells": count, "value": mean}));
                }
                services.info(&format!("filled missing cells with column means: {}", json!(filled)));
            }
            _ => {}
        }
        let (mut features, mut targets) = (Vec::new(), Vec::new());
        let mut dropped = 0;
        for (_, cells) in &table.rows {
            let values: Option<Vec<f64>> = cells.iter().zip(&fill).map(|(cell, fill)| cell.or(*fill)).collect();
            let Some(values) = values else {
                dropped += 1;
                continue;
            };
            let (x, y) = values.split_at(table.features.len());
            features.extend(x.iter().map(|&v| v as f32));
            targets.extend(y.iter().map(|&v| v as f32));
        }
        let rows = table.rows.len() - dropped;
        if rows == 0 {
            return Err(PluginError::new(format!("{}: every row has a missing value", self.config.path)));
        }
        if dropped > 0 {
            services.warn(&format!("dropped {dropped} of {} rows with missing values", table.rows.len()));
        }
        Ok(Dataset {
            features: Tensor::from_f32(vec![rows, table.features.len()], features)?,
            targets: Tensor::from_f32(vec![rows, table.targets.len()], targets)?,
            task: TaskKind::Regression,
            label_names: table.targets.clone(),
            test_start: None,
            metadata: json!({
                "kind": "table",
                "format": if self.parquet() { "parquet" } else { "csv" },
                "path": self.config.path,
                "feature_names": table.features,
                "target_names": table.targets,
                "rows_read": table.rows.len(),
                "missing": self.config.missing,
                "rows_dropped": dropped,
                "cells_filled": filled,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::Elements;
    use plugin_sdk::host::with_services;
    use plugin_sdk::testing::RecordingServices;

    fn loader(path: &std::path::Path, extra: serde_json::Value) -> Result<TableLoader, PluginError> {
        let mut section = json!({
            "path": path.display().to_string(),
            "target_columns": ["y"],
            "feature_columns": [],
            "missing": "error",
            "delimiter": ",",
            "format": "auto",
        });
        for (key, value) in extra.as_object().unwrap() {
            section[key] = value.clone();
        }
        TableLoader::new(ClassConfig {
            sections: json!({ "data_loader": section }),
            seed: 1,
            threads: 1,
            resume_from: None,
            declared: TableLoader::config_keys(),
        })
    }

    fn load(loader: &mut TableLoader) -> Result<Dataset, PluginError> {
        with_services(&RecordingServices::new(std::env::temp_dir()), |services| {
            loader.load_data(services)?;
            loader.extract_features_and_targets(services)
        })
    }

    fn table(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn f32s(tensor: &Tensor) -> Vec<f32> {
        match tensor.elements() {
            Elements::F32(values) => values.to_vec(),
            other => panic!("expected f32, got {:?}", other.dtype()),
        }
    }

    #[test]
    fn features_and_targets_come_from_the_named_columns() {
        let (_dir, path) = table("a, b ,y,z\n1,2,3,4\n5,6,7,8\n");
        let dataset = load(&mut loader(&path, json!({"target_columns": ["y", "z"]})).unwrap()).unwrap();
        assert_eq!(dataset.task, TaskKind::Regression);
        assert_eq!(dataset.features.shape(), [2, 2]);
        assert_eq!(f32s(&dataset.features), [1.0, 2.0, 5.0, 6.0]);
        assert_eq!(f32s(&dataset.targets), [3.0, 4.0, 7.0, 8.0]);
        assert_eq!(dataset.label_names, ["y", "z"]);
        assert_eq!(dataset.metadata["feature_names"], json!(["a", "b"]));
        let dataset = load(&mut loader(&path, json!({"feature_columns": ["b"]})).unwrap()).unwrap();
        assert_eq!(f32s(&dataset.features), [2.0, 6.0]);
        // Columns not selected are never parsed: a text column can stay in the file.
        let (_dir, with_ids) = table("id,a,y\npatient-1,1,2\n");
        let dataset = load(&mut loader(&with_ids, json!({"feature_columns": ["a"]})).unwrap()).unwrap();
        assert_eq!(f32s(&dataset.features), [1.0]);
        let (_dir, semicolons) = table("a;y\n1.5;2\n");
        let dataset = load(&mut loader(&semicolons, json!({"delimiter": ";"})).unwrap()).unwrap();
        assert!(load(&mut loader(&semicolons, json!({})).unwrap()).is_err());
        assert_eq!(f32s(&dataset.targets), [2.0]);
    }

    #[test]
    fn missing_values_are_refused_dropped_or_filled_as_configured() {
        let (_dir, path) = table("a,b,y\n1,,3\n2,NA,5\n3,4,7\n");
        let error = load(&mut loader(&path, json!({})).unwrap()).err().unwrap();
        assert!(
            error.message.ends_with(
                "t.csv: line 2, column b: missing value; set data_loader.missing to drop or mean, or fix the file"
            ),
            "{}",
            error.message
        );
        let dropped = load(&mut loader(&path, json!({"missing": "drop"})).unwrap()).unwrap();
        assert_eq!(f32s(&dropped.features), [3.0, 4.0]);
        assert_eq!(dropped.metadata["rows_dropped"], 2);
        let filled = load(&mut loader(&path, json!({"missing": "mean"})).unwrap()).unwrap();
        assert_eq!(f32s(&filled.features), [1.0, 4.0, 2.0, 4.0, 3.0, 4.0]);
        assert_eq!(filled.metadata["cells_filled"]["b"], json!({"cells": 2, "value": 4.0}));
    }

    /// A Parquet file (snappy) with a, b (optional; row 2 null), name (text) and y (int32).
    fn parquet_table() -> (tempfile::TempDir, std::path::PathBuf) {
        use parquet::basic::Compression;
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let schema =
            "message t { required double a; optional double b; required binary name (UTF8); required int32 y; }";
        let schema = std::sync::Arc::new(parquet::schema::parser::parse_message_type(schema).unwrap());
        let properties = std::sync::Arc::new(WriterProperties::builder().set_compression(Compression::SNAPPY).build());
        let mut writer = SerializedFileWriter::new(std::fs::File::create(&path).unwrap(), schema, properties).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut column = 0;
        while let Some(mut writer) = group.next_column().unwrap() {
            match column {
                0 => writer.typed::<DoubleType>().write_batch(&[1.0, 2.0, 3.0], None, None),
                1 => writer.typed::<DoubleType>().write_batch(&[10.0, 30.0], Some(&[1, 0, 1]), None),
                2 => {
                    let names: Vec<ByteArray> = ["p", "q", "r"].iter().map(|n| ByteArray::from(*n)).collect();
                    writer.typed::<ByteArrayType>().write_batch(&names, None, None)
                }
                _ => writer.typed::<Int32Type>().write_batch(&[5, 6, 7], None, None),
            }
            .unwrap();
            writer.close().unwrap();
            column += 1;
        }
        group.close().unwrap();
        writer.close().unwrap();
        (dir, path)
    }

    #[test]
    fn parquet_tables_read_like_csv_with_rows_named_by_number() {
        let (_dir, path) = parquet_table();
        let picked = json!({"feature_columns": ["a", "b"], "missing": "drop"});
        let dataset = load(&mut loader(&path, picked).unwrap()).unwrap();
        assert_eq!(f32s(&dataset.features), [1.0, 10.0, 3.0, 30.0]);
        assert_eq!(f32s(&dataset.targets), [5.0, 7.0]);
        assert_eq!(dataset.metadata["format"], "parquet");
        assert_eq!(dataset.metadata["rows_dropped"], 1);
        let strict = load(&mut loader(&path, json!({"feature_columns": ["a", "b"]})).unwrap()).err().unwrap();
        assert!(
            strict.message.ends_with(
                "t.parquet: row 2, column b: missing value; set data_loader.missing to drop or mean, or fix the file"
            ),
            "{}",
            strict.message
        );
        let text = load(&mut loader(&path, json!({"missing": "drop"})).unwrap()).err().unwrap();
        assert!(text.message.ends_with("t.parquet: row 1, column name: \"p\" is not a number"), "{}", text.message);
        // `format: parquet` reads it whatever its name; a CSV read as Parquet is refused.
        let renamed = path.with_extension("bin");
        std::fs::copy(&path, &renamed).unwrap();
        let forced = json!({"feature_columns": ["a"], "format": "parquet"});
        assert_eq!(load(&mut loader(&renamed, forced).unwrap()).unwrap().features.shape(), [3, 1]);
        let (_dir, csv) = table("a,y\n1,2\n");
        let error = load(&mut loader(&csv, json!({"format": "parquet"})).unwrap()).err().unwrap();
        assert!(error.message.contains("t.csv: not a Parquet file"), "{}", error.message);
    }

    #[test]
    fn bad_cells_rows_and_columns_name_the_file_line_and_column() {
        let cases = [
            ("a,y\n1,2\nx1,3\n", json!({}), "t.csv: line 3, column a: \"x1\" is not a number"),
            ("a,y\n1,2\n3\n", json!({}), "t.csv: line 3: 1 fields where the header has 2"),
            ("a,y\n1,inf\n", json!({}), "t.csv: line 2, column y: \"inf\" is not a finite number"),
            ("a,y\n", json!({}), "t.csv: the file has a header but no rows"),
            ("a,y\n1,2\n", json!({"target_columns": ["q"]}), "data_loader.target_columns: "),
            ("y\n1\n", json!({}), "no column left for features"),
        ];
        for (text, extra, expected) in cases {
            let (_dir, path) = table(text);
            let error = load(&mut loader(&path, extra).unwrap()).err().unwrap();
            assert!(error.message.contains(expected), "{text:?}: {}", error.message);
        }
        let error = load(&mut loader(std::path::Path::new("nowhere.csv"), json!({})).unwrap()).err().unwrap();
        assert!(error.message.starts_with("nowhere.csv: cannot open"), "{}", error.message);
        assert!(loader(std::path::Path::new("x"), json!({"delimiter": "ab"})).is_err());
        assert!(loader(std::path::Path::new("x"), json!({"feature_columns": ["y"]})).is_err());
    }
}
