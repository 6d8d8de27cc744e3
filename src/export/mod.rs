//! Files made from captured data, written so that a failure never leaves a partial file behind.

pub mod dump;

use std::io::Write;
use std::path::Path;

/// Writes a file atomically: the content goes to a temporary file beside the target, which is
/// renamed over it only once everything was written and flushed. On any error the temporary
/// file is removed and the target is left as it was.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
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
        anyhow::anyhow!("{}: cannot {what} ({reason})", path.display())
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "{}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.json");
        std::fs::write(&target, "old").unwrap();
        let err = write_atomically(&target, |w: &mut dyn Write| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("out.json: cannot write it (disk full)"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );

        write_atomically(&target, |w: &mut dyn Write| w.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644, "readable like any other file");
        }
    }
}
