//! Per-row results of an ingest chunk, encoded compactly for the chunk's row in the store
//! (a few bytes per successful row), and the result files (`successfulResults`,
//! `failedResults`, `unprocessedrecords`) streamed from those rows and the uploaded file, one
//! chunk at a time.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::Path;

use model::{Id, KeyPrefix, OrgMarker};
use store::{BulkJobRow, Store};

use super::csv::{push_quoted, strip_bom, Dialect, RowReader};
use super::ingest::{RowError, RowOutcome};

const FAILED: u8 = 0;
const UPDATED: u8 = 1;
const CREATED: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        n |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(n);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn get_str(b: &[u8], at: &mut usize) -> Option<String> {
    let n = get_varint(b, at)? as usize;
    let s = b.get(*at..*at + n)?;
    *at += n;
    Some(String::from_utf8_lossy(s).into_owned())
}

/// Encodes a chunk's outcomes. Successful rows cost a tag and the difference to the previous
/// record's sequence; ids are rebuilt from the job object's key prefix and the org marker.
pub fn encode(outcomes: &[RowOutcome], marker: OrgMarker) -> Vec<u8> {
    let mut out = Vec::with_capacity(outcomes.len() * 3);
    let mut prev: i64 = 0;
    for o in outcomes {
        match o {
            RowOutcome::Ok { id, created } => {
                out.push(if *created { CREATED } else { UPDATED });
                let seq = id.seq_in(marker).unwrap_or(0) as i64;
                let delta = seq.wrapping_sub(prev);
                put_varint(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
                prev = seq;
            }
            RowOutcome::Err { id, error } => {
                out.push(FAILED);
                put_str(&mut out, id.as_deref().unwrap_or(""));
                put_str(&mut out, &error.code);
                put_str(&mut out, &error.message);
                put_str(&mut out, &error.fields.join(","));
            }
        }
    }
    out
}

/// Decodes what [`encode`] wrote.
pub fn decode(b: &[u8], prefix: KeyPrefix, marker: OrgMarker) -> Option<Vec<RowOutcome>> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut prev: i64 = 0;
    while at < b.len() {
        let tag = b[at];
        at += 1;
        match tag {
            CREATED | UPDATED => {
                let z = get_varint(b, &mut at)?;
                let delta = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let seq = prev.wrapping_add(delta);
                prev = seq;
                out.push(RowOutcome::Ok {
                    id: Id::new(prefix, marker, seq as u64),
                    created: tag == CREATED,
                });
            }
            FAILED => {
                let id = get_str(b, &mut at)?;
                let code = get_str(b, &mut at)?;
                let message = get_str(b, &mut at)?;
                let fields = get_str(b, &mut at)?;
                out.push(RowOutcome::Err {
                    id: (!id.is_empty()).then_some(id),
                    error: RowError {
                        code,
                        message,
                        fields: if fields.is_empty() {
                            vec![]
                        } else {
                            fields.split(',').map(str::to_string).collect()
                        },
                    },
                });
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Which result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// `successfulResults`: `sf__Id`, `sf__Created`, the row.
    Successful,
    /// `failedResults`: `sf__Id`, `sf__Error`, the row.
    Failed,
    /// `unprocessedrecords`: rows not processed (yet).
    Unprocessed,
}

/// Writes a result file of `job` to `sink` in pieces of about 64 KB; `sink` answers false when
/// nobody listens any more. Chunk rows are read a few at a time; the uploaded rows are copied
/// as they were sent.
pub fn write_results(
    store: &dyn Store,
    job: &BulkJobRow,
    dir: &Path,
    kind: ResultKind,
    dialect: Dialect,
    prefix: KeyPrefix,
    sink: &mut dyn FnMut(Vec<u8>) -> bool,
) -> io::Result<()> {
    let le = dialect.line_ending();
    let d = dialect.delimiter;
    let mut out = Vec::with_capacity(80 * 1024);
    let file = match &job.upload {
        Some(name) => Some(File::open(dir.join(name))?),
        None => None,
    };
    let Some(mut file) = file else {
        // Nothing uploaded: no header either.
        let _ = sink(out);
        return Ok(());
    };
    let header_end;
    {
        let mut r = RowReader::new(&mut file, 0, dialect);
        let Some((_, header)) = r.next_row()? else {
            let _ = sink(out);
            return Ok(());
        };
        match kind {
            ResultKind::Successful => {
                out.extend_from_slice(b"\"sf__Id\"");
                out.push(d);
                out.extend_from_slice(b"\"sf__Created\"");
                out.push(d);
            }
            ResultKind::Failed => {
                out.extend_from_slice(b"\"sf__Id\"");
                out.push(d);
                out.extend_from_slice(b"\"sf__Error\"");
                out.push(d);
            }
            ResultKind::Unprocessed => {}
        }
        out.extend_from_slice(strip_bom(header));
        out.extend_from_slice(le);
        header_end = r.offset();
    }
    if kind == ResultKind::Unprocessed {
        let start = job.next_offset.max(header_end);
        file.seek(SeekFrom::Start(start))?;
        let mut r = RowReader::new(&mut file, start, dialect);
        while let Some((_, row)) = r.next_row()? {
            if row.is_empty() {
                continue;
            }
            out.extend_from_slice(row);
            out.extend_from_slice(le);
            if out.len() >= 64 * 1024 && !sink(std::mem::take(&mut out)) {
                return Ok(());
            }
        }
        let _ = sink(out);
        return Ok(());
    }
    let marker = store.marker();
    let mut next_chunk = 0;
    loop {
        let chunks = store
            .read(|tx| tx.bulk_chunks(job.seq, next_chunk, 8))
            .map_err(|e| io::Error::other(e.to_string()))?;
        if chunks.is_empty() {
            break;
        }
        for c in &chunks {
            next_chunk = c.chunk + 1;
            let outcomes = decode(&c.results, prefix, marker).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "undecodable chunk results")
            })?;
            file.seek(SeekFrom::Start(c.start_offset))?;
            let limited = io::Read::take(&mut file, c.end_offset - c.start_offset);
            let mut r = RowReader::new(limited, c.start_offset, dialect);
            let mut outcomes = outcomes.into_iter();
            while let Some((_, row)) = r.next_row()? {
                if row.is_empty() {
                    continue;
                }
                let Some(o) = outcomes.next() else { break };
                match (kind, o) {
                    (ResultKind::Successful, RowOutcome::Ok { id, created }) => {
                        push_quoted(&mut out, &id.to_18());
                        out.push(d);
                        push_quoted(&mut out, if created { "true" } else { "false" });
                    }
                    (ResultKind::Failed, RowOutcome::Err { id, error }) => {
                        push_quoted(&mut out, id.as_deref().unwrap_or(""));
                        out.push(d);
                        push_quoted(&mut out, &error.text());
                    }
                    _ => continue,
                }
                out.push(d);
                out.extend_from_slice(row);
                out.extend_from_slice(le);
                if out.len() >= 64 * 1024 && !sink(std::mem::take(&mut out)) {
                    return Ok(());
                }
            }
        }
    }
    let _ = sink(out);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip() {
        let marker = OrgMarker(*b"x1Z");
        let prefix = KeyPrefix(*b"001");
        let outcomes = vec![
            RowOutcome::Ok {
                id: Id::new(prefix, marker, 1000),
                created: true,
            },
            RowOutcome::Err {
                id: Some("001x".into()),
                error: RowError::new(
                    "REQUIRED_FIELD_MISSING",
                    "Required fields are missing: [Name]",
                    vec!["Name".into()],
                ),
            },
            RowOutcome::Ok {
                id: Id::new(prefix, marker, 7),
                created: false,
            },
            RowOutcome::Err {
                id: None,
                error: RowError::new("X", "a:b", vec![]),
            },
        ];
        let b = encode(&outcomes, marker);
        assert_eq!(decode(&b, prefix, marker).unwrap(), outcomes);
    }
}
