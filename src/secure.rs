//! Files holding secrets or personal data are readable by their owner only:
//! the data directory is 0700, what the server writes in it 0600 (its umask
//! is 077 from the start), and what an older version left more open is
//! closed at start-up.

use std::path::Path;

use anyhow::{Context, Result};

/// Makes every file and directory this process creates owner-only.
pub fn restrict_umask() {
    #[cfg(unix)]
    // SAFETY: umask only changes the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates `dir` (0700) if needed, and closes what is open in it: the
/// directory and those directly inside it become 0700, its files 0600.
pub fn secure_data_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("restricting the permissions of {}", p.display()))
        };
        set(dir, 0o700)?;
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                set(&e.path(), 0o700)?;
            } else if t.is_file() {
                set(&e.path(), 0o600)?;
            }
        }
    }
    Ok(())
}

/// Writes a file readable by its owner only (whatever the umask).
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_directory_is_closed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("data");
        std::fs::create_dir_all(d.join("sessions")).unwrap();
        std::fs::write(d.join("sharecast.db"), b"x").unwrap();
        for p in [d.clone(), d.join("sessions")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::set_permissions(
            d.join("sharecast.db"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        secure_data_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&d.join("sessions")), 0o700);
        assert_eq!(mode(&d.join("sharecast.db")), 0o600);
        write_private(&d.join("secret"), b"s").unwrap();
        assert_eq!(mode(&d.join("secret")), 0o600);
    }
}
