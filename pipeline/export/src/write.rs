//! Parquet files of one topic, one directory per UTC date (Hive style):
//! `topic=<topic>/date=<YYYY-MM-DD>/part-<from_ms>-<n>.parquet`.
//!
//! A file is written under a hidden temporary name and renamed once complete, so a
//! crash never leaves a file that looks complete. Names depend only on the range and the
//! rows, so exporting the same range again replaces the same files; parts an earlier run
//! of the range wrote and this one did not are removed, so no row is there twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::columns::{Row, TopicColumns};
use crate::{Error, Result};

/// Rows converted to Arrow at once (decoded values are large; keep few in memory).
const BATCH_ROWS: usize = 1024;
/// Rows per Parquet row group: big enough for good scans, bounded memory per open file.
const ROW_GROUP_ROWS: usize = 64 * 1024;
const MS_PER_DAY: i64 = 86_400_000;

/// The UTC calendar date of an epoch-milliseconds instant, as `YYYY-MM-DD`.
pub fn utc_date(ms: i64) -> String {
    let (y, m, d) = motcua_reference::civil::civil_from_days(ms.div_euclid(MS_PER_DAY));
    format!("{y:04}-{m:02}-{d:02}")
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

fn parquet_err(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> Error + '_ {
    move |source| Error::Parquet {
        path: path.to_owned(),
        source,
    }
}

/// A file being written; its temporary file is removed unless it was completed.
struct OpenFile {
    writer: Option<ArrowWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    rows: usize,
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl OpenFile {
    /// Writes the footer, makes the data durable, then gives the file its real name.
    fn complete(mut self) -> Result<PathBuf> {
        let writer = self.writer.take().expect("an open file has its writer");
        let file = writer.into_inner().map_err(parquet_err(&self.tmp))?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(io_err(&self.path))?;
        if let Some(dir) = self.path.parent() {
            // The rename itself is durable once the directory is.
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        }
        Ok(std::mem::take(&mut self.path))
    }
}

/// The rows of one date not yet in a file, and the file they go to.
struct Bucket {
    date: String,
    part: usize,
    pending: Vec<Row>,
    file: Option<OpenFile>,
}

/// Writes one topic's rows into per-date files.
pub(crate) struct TopicWriter<'a> {
    topic: &'a str,
    dir: PathBuf,
    from_ms: i64,
    to_ms: i64,
    columns: &'a TopicColumns,
    max_rows_per_file: usize,
    props: WriterProperties,
    buckets: BTreeMap<i64, Bucket>,
    rows: BTreeMap<String, u64>,
    files: Vec<PathBuf>,
}

/// What a topic's writer produced.
#[derive(Debug, Default)]
pub(crate) struct Written {
    pub(crate) rows: BTreeMap<String, u64>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) removed: Vec<PathBuf>,
}

impl<'a> TopicWriter<'a> {
    pub(crate) fn new(
        out_dir: &Path,
        topic: &'a str,
        columns: &'a TopicColumns,
        from_ms: i64,
        to_ms: i64,
        max_rows_per_file: usize,
    ) -> Self {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // The Parquet spec's names for list and map parts (`element`, `key_value`),
            // which every reader expects.
            .set_coerce_types(true)
            .build();
        Self {
            topic,
            dir: out_dir.join(format!("topic={topic}")),
            from_ms,
            to_ms,
            columns,
            max_rows_per_file,
            props,
            buckets: BTreeMap::new(),
            rows: BTreeMap::new(),
            files: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Row) -> Result<()> {
        let day = row.timestamp_ms.div_euclid(MS_PER_DAY);
        let bucket = self.buckets.entry(day).or_insert_with(|| Bucket {
            date: utc_date(row.timestamp_ms),
            part: 0,
            pending: Vec::new(),
            file: None,
        });
        *self.rows.entry(bucket.date.clone()).or_default() += 1;
        bucket.pending.push(row);
        let in_file = bucket.file.as_ref().map_or(0, |f| f.rows);
        if bucket.pending.len() >= BATCH_ROWS || in_file + bucket.pending.len() >= self.max_rows_per_file {
            self.flush(day)?;
        }
        Ok(())
    }

    /// Writes a bucket's pending rows; completes its file when it is full.
    fn flush(&mut self, day: i64) -> Result<()> {
        let Some(bucket) = self.buckets.get_mut(&day) else {
            return Ok(());
        };
        if bucket.pending.is_empty() {
            return Ok(());
        }
        if bucket.file.is_none() {
            let dir = self.dir.join(format!("date={}", bucket.date));
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            let name = format!("part-{}-{}.parquet", self.from_ms, bucket.part);
            let tmp = dir.join(format!(".{name}.tmp"));
            let file = File::create(&tmp).map_err(io_err(&tmp))?;
            let writer = ArrowWriter::try_new(file, self.columns.schema().clone(), Some(self.props.clone()))
                .map_err(parquet_err(&tmp))?;
            bucket.file = Some(OpenFile {
                writer: Some(writer),
                tmp,
                path: dir.join(name),
                rows: 0,
            });
        }
        let open = bucket.file.as_mut().expect("opened above");
        let batch = self.columns.batch(self.topic, &bucket.pending)?;
        open.writer
            .as_mut()
            .expect("an open file has its writer")
            .write(&batch)
            .map_err(parquet_err(&open.tmp))?;
        open.rows += bucket.pending.len();
        bucket.pending.clear();
        if open.rows >= self.max_rows_per_file {
            let done = bucket.file.take().expect("open");
            self.files.push(done.complete()?);
            bucket.part += 1;
        }
        Ok(())
    }

    /// Completes every file, then removes parts of this range that an earlier export
    /// wrote and this one did not (fewer rows now, e.g. after retention).
    pub(crate) fn finish(mut self) -> Result<Written> {
        let days: Vec<i64> = self.buckets.keys().copied().collect();
        for day in days {
            self.flush(day)?;
            if let Some(open) = self.buckets.get_mut(&day).and_then(|b| b.file.take()) {
                self.files.push(open.complete()?);
            }
        }
        let removed = self.remove_stale()?;
        Ok(Written {
            rows: std::mem::take(&mut self.rows),
            files: std::mem::take(&mut self.files),
            removed,
        })
    }

    fn remove_stale(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(io_err(&self.dir)(e)),
        };
        let (first, last) = (utc_date(self.from_ms), utc_date(self.to_ms - 1));
        let ours: BTreeSet<&PathBuf> = self.files.iter().collect();
        let prefix = format!("part-{}-", self.from_ms);
        let hidden = format!(".{prefix}");
        for entry in entries {
            let entry = entry.map_err(io_err(&self.dir))?;
            let name = entry.file_name();
            let Some(date) = name.to_str().and_then(|n| n.strip_prefix("date=")) else {
                continue;
            };
            // Only dates this range covers: another range's files are not ours to judge.
            if date < first.as_str() || date > last.as_str() {
                continue;
            }
            let dir = entry.path();
            for file in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let file = file.map_err(io_err(&dir))?;
                let path = file.path();
                let Some(n) = file.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                let stale_part = n.starts_with(&prefix) && n.ends_with(".parquet") && !ours.contains(&path);
                let stale_tmp = n.starts_with(&hidden) && n.ends_with(".tmp");
                if stale_part || stale_tmp {
                    std::fs::remove_file(&path).map_err(io_err(&path))?;
                    if stale_part {
                        removed.push(path);
                    }
                }
            }
            // An emptied date directory goes too (fails harmlessly if others' files remain).
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Value;
    use apache_avro::Schema;

    fn columns() -> TopicColumns {
        let schema =
            Schema::parse_str(r#"{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}"#).expect("schema");
        TopicColumns::new("t", &schema).expect("columns")
    }

    fn row(n: i64, ts: i64) -> Row {
        Row {
            partition: 0,
            offset: n,
            timestamp_ms: ts,
            schema_id: 1,
            value: Value::Record(vec![("n".into(), Value::Long(n))]),
        }
    }

    fn parquet_files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for d in std::fs::read_dir(dir).expect("dir") {
            let d = d.expect("entry").path();
            for f in std::fs::read_dir(&d).expect("date dir") {
                let f = f.expect("file").path();
                out.push(f.strip_prefix(dir).expect("inside").display().to_string());
            }
        }
        out.sort();
        out
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(-1), "1969-12-31");
        assert_eq!(utc_date(1_764_036_000_000), "2025-11-25");
    }

    #[test]
    fn files_split_by_date_and_size_and_a_rerun_replaces_them() {
        let out = tempfile::tempdir().expect("tempdir");
        let cols = columns();
        let day = MS_PER_DAY;
        let (from, to) = (20_000 * day, 20_002 * day);
        let mut w = TopicWriter::new(out.path(), "t", &cols, from, to, 2);
        for n in 0..5 {
            w.push(row(n, from + n)).expect("push");
        }
        w.push(row(5, from + day)).expect("push");
        let written = w.finish().expect("finish");
        assert_eq!(written.rows.values().sum::<u64>(), 6);
        assert_eq!(written.files.len(), 4);
        let dir = out.path().join("topic=t");
        assert_eq!(
            parquet_files(&dir),
            [
                "date=2024-10-04/part-1728000000000-0.parquet",
                "date=2024-10-04/part-1728000000000-1.parquet",
                "date=2024-10-04/part-1728000000000-2.parquet",
                "date=2024-10-05/part-1728000000000-0.parquet",
            ]
        );
        // Someone else's export of another range in the same directory stays.
        let other = dir.join("date=2024-10-04/part-1-0.parquet");
        std::fs::write(&other, b"not ours").expect("write");
        // Again, with fewer rows and larger files: the same names, the extra parts removed.
        let mut w = TopicWriter::new(out.path(), "t", &cols, from, to, 100);
        for n in 0..3 {
            w.push(row(n, from + n)).expect("push");
        }
        let written = w.finish().expect("finish");
        assert_eq!(written.files.len(), 1);
        assert_eq!(written.removed.len(), 3);
        assert_eq!(
            parquet_files(&dir),
            [
                "date=2024-10-04/part-1-0.parquet",
                "date=2024-10-04/part-1728000000000-0.parquet"
            ]
        );
    }

    #[test]
    fn an_abandoned_file_leaves_nothing_that_looks_complete() {
        let out = tempfile::tempdir().expect("tempdir");
        let cols = columns();
        let mut w = TopicWriter::new(out.path(), "t", &cols, 0, MS_PER_DAY, 10);
        for n in 0..3 {
            w.push(row(n, n)).expect("push");
        }
        w.flush(0).expect("flush");
        let dir = out.path().join("topic=t/date=1970-01-01");
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [".part-0-0.parquet.tmp"]);
        drop(w);
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
    }
}
