//! A check on the files that hold secrets (the identity secret, the collector token).

use std::path::Path;

/// Warns when a secrets file can be read by any user (the packages install secrets 0600 or
/// 0640 root:earshot): the identity secret and tokens are what keeps listeners pseudonymous
/// and agents authentic.
pub fn warn_if_loose(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            tracing::warn!(
                file = %path.display(),
                "{key}: the file is readable by any user (mode {mode:04o}); it holds a secret: chmod 600 it"
            );
        }
    }
}
