//! Writing files so that no reader, and no interrupted run, ever sees half of one.

use std::path::{Path, PathBuf};

/// `<path>.tmp`: where [`write_atomic`] writes before renaming.
fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `contents` to `<path>.tmp`, then renames it to `path`: `path` holds either its old
/// contents or all of the new ones. Errors name the file (fs-err).
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    let temporary = temporary(path);
    fs_err::write(&temporary, contents)?;
    fs_err::rename(&temporary, path)
}
