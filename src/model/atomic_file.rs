//! Writing a file so that it is whole or absent: exports, generations, fine-tuned models.

use std::io::Write;
use std::path::Path;

use super::error::{ModelError, Result};

/// Writes a file atomically: the content goes to a temporary file beside the target, which is
/// renamed over it only once everything was written and flushed. On any error the temporary
/// file is removed and the target is left as it was.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The OS's words without the temporary file's name, which means nothing to the user.
    let fail = |what: &str, err: std::io::Error| {
        let reason = match err.raw_os_error() {
            Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
            None => err.to_string(),
        };
        ModelError::Io {
            path: path.to_owned(),
            reason: format!("cannot {what} ({reason})"),
        }
    };
    if !folder.is_dir() {
        return Err(ModelError::Io {
            path: path.to_owned(),
            reason: format!("the folder {} does not exist", folder.display()),
        });
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".bertscope-").suffix(".part");
    // Temporary files are private (0600); the finished file is an ordinary one.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut file = builder
        .tempfile_in(folder)
        .map_err(|err| fail("create a file in that folder", err))?;
    let mut buffered = std::io::BufWriter::new(file.as_file_mut());
    write(&mut buffered)
        .and_then(|()| buffered.flush())
        .map_err(|err| fail("write it", err))?;
    drop(buffered);
    file.as_file()
        .sync_all()
        .map_err(|err| fail("write it", err))?;
    file.persist(path)
        .map_err(|err| fail("replace it", err.error))?;
    Ok(())
}
