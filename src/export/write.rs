//! Encode record batches as CSV, JSON lines or Parquet (zstd) onto any byte sink.

use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::ExportError;
use super::schema::{Format, Table};

/// Rows per Parquet row group: large enough for scans, small enough for bounded memory.
const ROW_GROUP_ROWS: usize = 128 * 1024;
/// A row group is also closed once its encoded size passes this.
const ROW_GROUP_BYTES: usize = 64 << 20;

#[allow(clippy::needless_pass_by_value)] // used as map_err(io_err)
fn io_err(e: std::io::Error) -> ExportError {
    ExportError::Write(e.to_string())
}

/// An encoder for one output (a file or an HTTP body).
pub(crate) enum Encoder<W: Write + Send> {
    Text { out: W, format: Format, line: Vec<u8> },
    Parquet(Box<ArrowWriter<W>>),
}

impl<W: Write + Send> Encoder<W> {
    /// Start an output of `table` in `format` (CSV writes its header now).
    pub(crate) fn new(table: &Table, format: Format, mut out: W) -> Result<Self, ExportError> {
        match format {
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(
                        ZstdLevel::try_new(3).map_err(|e| ExportError::Encode(e.to_string()))?,
                    ))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                    .set_created_by(concat!("blockstreamer ", env!("CARGO_PKG_VERSION")).to_string())
                    .build();
                let w = ArrowWriter::try_new(out, table.schema(), Some(props))
                    .map_err(|e| ExportError::Encode(e.to_string()))?;
                Ok(Self::Parquet(Box::new(w)))
            }
            Format::Csv => {
                let header: Vec<&str> = table.columns().iter().map(|c| c.name.as_ref()).collect();
                out.write_all(header.join(",").as_bytes()).map_err(io_err)?;
                out.write_all(b"\n").map_err(io_err)?;
                Ok(Self::Text { out, format, line: Vec::with_capacity(4096) })
            }
            Format::Jsonl => Ok(Self::Text { out, format, line: Vec::with_capacity(4096) }),
        }
    }

    /// Append a batch.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        match self {
            Self::Parquet(w) => w.write(batch).map_err(|e| ExportError::Encode(e.to_string())),
            Self::Text { out, format, line } => {
                let names: Vec<String> = batch.schema().fields().iter().map(|f| f.name().clone()).collect();
                for row in 0..batch.num_rows() {
                    line.clear();
                    if *format == Format::Jsonl {
                        line.push(b'{');
                    }
                    for (i, col) in batch.columns().iter().enumerate() {
                        if i > 0 {
                            line.push(b',');
                        }
                        if *format == Format::Jsonl {
                            json_str(line, &names[i]);
                            line.push(b':');
                            json_cell(line, col.as_ref(), row);
                        } else {
                            csv_cell(line, col.as_ref(), row);
                        }
                    }
                    line.extend_from_slice(if *format == Format::Jsonl { b"}\n" } else { b"\n" });
                    out.write_all(line).map_err(io_err)?;
                }
                Ok(())
            }
        }
    }

    /// Finish the output (Parquet writes its footer) and hand back the sink.
    pub(crate) fn finish(self) -> Result<W, ExportError> {
        match self {
            Self::Parquet(w) => w.into_inner().map_err(|e| ExportError::Encode(e.to_string())),
            Self::Text { mut out, .. } => {
                out.flush().map_err(io_err)?;
                Ok(out)
            }
        }
    }
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(2 + bytes.len() * 2);
    out.extend_from_slice(b"0x");
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON needs; writing into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"null");
    }
}

fn csv_text(out: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
        out.push(b'"');
        for c in s.bytes() {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// A cell as text: numbers in decimal, flags as true/false, bytes as 0x hex. None = null.
fn cell<'a>(out: &mut Vec<u8>, col: &'a dyn Array, row: usize) -> Option<Option<&'a str>> {
    if col.is_null(row) {
        return None;
    }
    let mut num = itoa::Buffer::new();
    match col.data_type() {
        DataType::UInt64 => out.extend_from_slice(num.format(col.as_primitive::<UInt64Type>().value(row)).as_bytes()),
        DataType::Int64 => out.extend_from_slice(num.format(col.as_primitive::<Int64Type>().value(row)).as_bytes()),
        DataType::Boolean => {
            out.extend_from_slice(if col.as_boolean().value(row) { b"true" } else { b"false" });
        }
        DataType::FixedSizeBinary(_) => hex(out, col.as_fixed_size_binary().value(row)),
        DataType::Binary => hex(out, col.as_binary::<i32>().value(row)),
        // Text is returned for the caller to quote or escape.
        _ => return Some(Some(col.as_string::<i32>().value(row))),
    }
    Some(None)
}

fn csv_cell(out: &mut Vec<u8>, col: &dyn Array, row: usize) {
    if let Some(Some(s)) = cell(out, col, row) {
        csv_text(out, s);
    }
}

fn json_cell(out: &mut Vec<u8>, col: &dyn Array, row: usize) {
    match col.data_type() {
        // Hex and wei text go out as JSON strings; numbers and flags bare.
        DataType::FixedSizeBinary(_) | DataType::Binary if !col.is_null(row) => {
            out.push(b'"');
            let _ = cell(out, col, row);
            out.push(b'"');
        }
        _ => match cell(out, col, row) {
            None => out.extend_from_slice(b"null"),
            Some(Some(s)) => json_str(out, s),
            Some(None) => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut v = Vec::new();
        csv_text(&mut v, "plain");
        v.push(b'|');
        csv_text(&mut v, "a,\"b\"\nc");
        assert_eq!(String::from_utf8_lossy(&v), "plain|\"a,\"\"b\"\"\nc\"");
        let mut h = Vec::new();
        hex(&mut h, &[0x00, 0xab, 0x10]);
        assert_eq!(h, b"0x00ab10");
    }
}
