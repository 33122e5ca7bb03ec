//! `signet keygen` and `signet export-key-id`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use signet_core::keys::Zeroizing;
use signet_core::{public_key_hex, signing_key_to_pem, SigningKey};

use super::args::KeyArg;
use super::{Error, Exit, Result};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Where to write the private key.
    #[arg(short, long, value_name = "FILE", default_value = "master-key.pem")]
    out: PathBuf,

    /// Replace the file if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct ExportKeyIdArgs {
    #[command(flatten)]
    key: KeyArg,
}

pub fn keygen(args: &KeygenArgs) -> Result<Exit> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..])
        .map_err(|e| Error::msg(format!("the system random number generator failed: {e}")))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = signing_key_to_pem(&key).map_err(Error::new)?;
    write_private_key(&args.out, pem.as_bytes(), args.force)?;
    eprintln!("signet: private key written to {}", args.out.display());
    println!("{}", public_key_hex(&key.verifying_key()));
    Ok(Exit::Success)
}

pub fn export_key_id(args: &ExportKeyIdArgs) -> Result<Exit> {
    println!("{}", args.key.signer()?.master_public_key_hex());
    Ok(Exit::Success)
}

/// Writes `pem` to `path` readable by the owner only. Without `force` an
/// existing file is an error; with it, the key goes to a new 0600 file beside
/// `path` that then replaces it, so the old file's permissions never apply
/// and a failed write leaves the old key in place.
fn write_private_key(path: &Path, pem: &[u8], force: bool) -> Result<()> {
    let cannot_write = |e: io::Error| Error::msg(format!("cannot write {}: {e}", path.display()));
    if !force {
        let file = create_new_private(path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::msg(format!(
                "{} already exists; use --force to replace it",
                path.display()
            )),
            _ => cannot_write(e),
        })?;
        return write_all_synced(file, pem).map_err(|e| {
            // Leave no half-written key behind.
            let _ = std::fs::remove_file(path);
            cannot_write(e)
        });
    }

    let temp = temp_path_beside(path)?;
    let written = create_new_private(&temp)
        .and_then(|file| write_all_synced(file, pem))
        .and_then(|()| std::fs::rename(&temp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        cannot_write(e)
    })
}

fn create_new_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn write_all_synced(mut file: File, bytes: &[u8]) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// `.<name>.tmp-<random>` in the same directory, so the rename is atomic.
fn temp_path_beside(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::msg(format!("{} is not a file name", path.display())))?;
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix)
        .map_err(|e| Error::msg(format!("the system random number generator failed: {e}")))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{suffix}"));
    Ok(path.with_file_name(temp))
}
