//! Files made from captured data, written so that a failure never leaves a partial file behind.

pub mod dump;

use std::io::Write;
use std::path::Path;

/// Writes a file atomically: the content goes to a temporary file beside the target, which is
/// renamed over it only once everything was written and flushed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let fail = |what: &str| format!("{}: cannot {what}", path.display());
    let mut file = tempfile::Builder::new()
        .prefix(".bertscope-")
        .suffix(".part")
        .tempfile_in(folder)
        .with_context(|| fail("create a file in that folder"))?;
    {
        let mut buffered = std::io::BufWriter::new(file.as_file_mut());
        write(&mut buffered).with_context(|| fail("write"))?;
        buffered.flush().with_context(|| fail("write"))?;
    }
    file.as_file().sync_all().with_context(|| fail("write"))?;
    file.persist(path)
        .map_err(|err| err.error)
        .with_context(|| fail("replace"))?;
    Ok(())
}
