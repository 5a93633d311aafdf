//! A read-only look at a log directory, for operators: verifies every segment exactly as
//! opening would, and reports what it found and what opening would repair, changing nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use super::fs::Fs;
use super::recovery::{self, Mode};
use super::{LogBounds, WalError, bounds_of};

/// What a log directory holds.
#[derive(Debug)]
pub struct Inspection {
    /// The segment files, oldest first, with the largest entry index each holds.
    pub segments: Vec<(PathBuf, Option<u64>)>,
    /// Offset where the next record would go in the last segment, and whether it is sealed.
    pub tail: Option<(u64, bool)>,
    /// The live entries and the purge point.
    pub bounds: LogBounds,
    /// Every metadata slot set, with its value's length in bytes.
    pub meta: Vec<(u8, usize)>,
    /// What opening the log would repair; empty for a cleanly closed log.
    pub repairs: Vec<String>,
}

/// Inspects the log in `dir` through `fs`: takes the directory lock (so a running node is not
/// read under its feet), verifies every record, and changes nothing. Corruption is an error
/// naming the file and offset, as it would be on open.
pub fn inspect(fs: &dyn Fs, dir: &Path) -> Result<Inspection, WalError> {
    let _lock = super::lock_dir(fs, dir)?;
    let rec = recovery::recover(fs, dir, Mode::Inspect)?;
    Ok(Inspection {
        segments: rec.segments.values().map(|s| (s.path.clone(), s.max_index)).collect(),
        tail: rec.tail.as_ref().map(|t| (t.pos, t.sealed)),
        bounds: bounds_of(&rec.index, rec.purged),
        meta: rec.meta.iter().map(|(slot, v)| (*slot, v.len())).collect(),
        repairs: rec.repairs,
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pos = |p: Option<super::LogPos>| p.map_or("-".to_string(), |p| format!("{} (term {})", p.index, p.term));
        writeln!(f, "segments: {}", self.segments.len())?;
        for (path, max) in &self.segments {
            writeln!(f, "  {}  largest index {}", path.display(), max.map_or("-".into(), |m| m.to_string()))?;
        }
        if let Some((at, sealed)) = self.tail {
            writeln!(f, "tail: next record at offset {at}{}", if sealed { ", sealed" } else { "" })?;
        }
        writeln!(f, "first entry: {}", pos(self.bounds.first))?;
        writeln!(f, "last entry:  {}", pos(self.bounds.last))?;
        writeln!(f, "purged to:   {}", pos(self.bounds.purged))?;
        for (slot, len) in &self.meta {
            writeln!(f, "meta slot {slot}: {len} bytes")?;
        }
        if self.repairs.is_empty() {
            writeln!(f, "clean: opening would change nothing")
        } else {
            writeln!(f, "opening would repair:")?;
            self.repairs.iter().try_for_each(|r| writeln!(f, "  {r}"))
        }
    }
}
