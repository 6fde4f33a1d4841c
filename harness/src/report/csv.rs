//! `bench.csv` and `summary.csv`: one header row from the field names, one
//! record per row, floats written shortest-exact so reading a file back gives
//! the very values that were written.

use std::fs::File;
use std::io;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Write `rows` to `path` (created or truncated) with a header row.
pub fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> io::Result<()> {
    let context = |e: ::csv::Error| with_path(path, e);
    let mut writer = ::csv::Writer::from_path(path).map_err(context)?;
    for row in rows {
        writer.serialize(row).map_err(context)?;
    }
    writer.flush().map_err(|e| with_path(path, e.into()))
}

/// Read every record of `path` (written by [`write_rows`]).
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> io::Result<Vec<T>> {
    let file = File::open(path).map_err(|e| with_path(path, e.into()))?;
    ::csv::Reader::from_reader(file)
        .deserialize()
        .collect::<Result<Vec<T>, _>>()
        .map_err(|e| with_path(path, e))
}

fn with_path(path: &Path, e: ::csv::Error) -> io::Error {
    let kind = match e.kind() {
        ::csv::ErrorKind::Io(io) => io.kind(),
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, format!("{}: {e}", path.display()))
}
