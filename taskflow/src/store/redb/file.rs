//! The database file: where it lives, and its creation in one atomic step.

use std::path::{Path, PathBuf};

use super::{init_schema, open_error};
use crate::error::BuildError;

/// Creates the database file so that a power cut at any moment leaves either no file or a
/// complete one: it is written and initialised under a temporary name, fsynced, renamed into
/// place and the directory fsynced. (redb writes a new file in several steps; cut between
/// them, it leaves a file that never opens again, and a service killed on its first start
/// could not start again.) Files left under a temporary name by an earlier cut never held an
/// acknowledged write, so they are removed.
pub(super) fn create_atomically(path: &Path) -> Result<(), BuildError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let stem = format!(
        "{}.creating-",
        path.file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy())
    );
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&stem) {
                tracing::info!(file = %entry.path().display(), "removing a database file whose creation was cut short");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // Two tries: a process starting at the same moment may have removed our temporary file
    // as a leftover.
    let mut tries = 2;
    loop {
        tries -= 1;
        match create_once(path, dir, &stem) {
            Err(BuildError::Io { source, .. })
                if tries > 0 && source.kind() == std::io::ErrorKind::NotFound && !path.exists() => {
            }
            done => return done,
        }
    }
}

fn create_once(path: &Path, dir: &Path, stem: &str) -> Result<(), BuildError> {
    let io = |e: std::io::Error| BuildError::Io {
        path: path.display().to_string(),
        source: e,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let temp = dir.join(format!("{stem}{}-{nanos}", std::process::id()));
    {
        let db = redb::Builder::new()
            .create(&temp)
            .map_err(|e| open_error(&temp, e))?;
        init_schema(&db)?;
    }
    std::fs::File::open(&temp)
        .and_then(|f| f.sync_all())
        .map_err(io)?;
    match std::fs::rename(&temp, path) {
        Ok(()) => {}
        // Another process created it meanwhile: use theirs.
        Err(_) if path.exists() => {
            let _ = std::fs::remove_file(&temp);
            return Ok(());
        }
        Err(e) => return Err(io(e)),
    }
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

/// `dir/taskflow.redb`, creating `dir` if needed.
pub(super) fn database_path(dir: &Path) -> Result<PathBuf, BuildError> {
    std::fs::create_dir_all(dir).map_err(|source| BuildError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    Ok(dir.join("taskflow.redb"))
}
