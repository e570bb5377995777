//! Run directories and what a killed emulator leaves in them. An emulator stopped with SIGKILL cannot stop its
//! revision processes, which keep running, nor remove their directories, with the secret files in them.
//!
//! Each emulator claims its run directory: it holds a lock on the directory's marker file for as long as it runs,
//! and the lock goes with the process however it ends. A run directory whose lock can be taken belongs to no
//! running emulator, so the revision directories it holds (each marked as one when made) were left behind: the
//! next emulator that runs revisions kills the processes working in them (found by their working directory under
//! `/proc`, so on Linux only; never itself or its process group) and removes them, before it starts anything. In the system's temporary directory that is done for every
//! run directory an emulator made there; a given run directory (`--run-dir`) is cleared when claimed, and one that
//! another running emulator holds is refused.

use std::fs::{File, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

/// The name of the file that marks a directory as an emulator's run directory, and that it locks.
const MARKER: &str = ".gcp-emulator-run";

/// The file that marks a directory as a revision's (see `prepare`): only marked directories are ever cleared.
const REVISION_MARKER: &str = ".gcp-emulator-revision";

/// Marks `dir` as a revision's directory.
pub(crate) fn mark_revision(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join(REVISION_MARKER), b"")
}

/// The name of a run directory an emulator makes in the temporary directory.
fn temporary_name(pid: u32, nonce: u32) -> String {
    format!("gcp-emulator-{pid}-{nonce:08x}")
}

/// Makes a fresh run directory in `temp_dir` (mode 0700), claimed before it gets the name other emulators look
/// for, so that none ever takes it for abandoned.
pub(crate) fn make_temporary(temp_dir: &Path) -> io::Result<(PathBuf, Claim)> {
    let name = temporary_name(std::process::id(), rand::random());
    let staging = temp_dir.join(format!(".{name}"));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&staging)?;
    let (claim, _, _) = claim(&staging)?;
    let dir = temp_dir.join(name);
    std::fs::rename(&staging, &dir)?;
    Ok((dir, claim))
}

fn is_temporary_name(name: &str) -> bool {
    name.strip_prefix("gcp-emulator-")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, nonce)| {
            !pid.is_empty()
                && pid.chars().all(|c| c.is_ascii_digit())
                && nonce.len() == 8
                && nonce.chars().all(|c| c.is_ascii_hexdigit())
        })
}

/// This emulator's hold on its run directory; dropping it releases the directory.
#[derive(Debug)]
pub(crate) struct Claim {
    _marker: File,
}

/// Claims `run_dir` (which exists) for this emulator: what a dead emulator left in it is cleared. Fails when a
/// running emulator holds it. Returns the claim, what was removed and how many processes were killed.
pub(crate) fn claim(run_dir: &Path) -> io::Result<(Claim, Vec<PathBuf>, usize)> {
    let marker = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(run_dir.join(MARKER))?;
    match marker.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                "another running emulator uses this run directory",
            ));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let (removed, killed) = clear(subdirectories(run_dir).into_iter().filter(|d| is_revision_dir(d)));
    Ok((Claim { _marker: marker }, removed, killed))
}

/// Removes the run directories in `temp_dir` that emulators made and no running one holds, with the processes
/// working in them. Returns what was removed and how many processes were killed.
pub(crate) fn clear_temporary(temp_dir: &Path) -> (Vec<PathBuf>, usize) {
    let abandoned = subdirectories(temp_dir).into_iter().filter(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_temporary_name)
            && File::open(d.join(MARKER)).is_ok_and(|m| m.try_lock().is_ok())
    });
    clear(abandoned)
}

fn clear(dirs: impl Iterator<Item = PathBuf>) -> (Vec<PathBuf>, usize) {
    let mut dirs: Vec<PathBuf> = dirs.collect();
    if dirs.is_empty() {
        return (dirs, 0);
    }
    let killed = kill_processes_in(&dirs);
    dirs.retain(|d| std::fs::remove_dir_all(d).is_ok());
    (dirs, killed)
}

fn subdirectories(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

fn is_revision_dir(dir: &Path) -> bool {
    dir.join(REVISION_MARKER).is_file()
}

/// Kills every process whose working directory is under one of `dirs`, with its process group when it leads one
/// (as a revision's shell does); returns how many were found. Never this process or its group, and nothing when
/// `/proc` is another pid namespace's (its pids would name other processes).
#[cfg(target_os = "linux")]
fn kill_processes_in(dirs: &[PathBuf]) -> usize {
    use rustix::process::{Pid, Signal, getpgid, kill_process};
    let me = std::process::id();
    let own_proc = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<u32>().ok());
    if own_proc != Some(me) {
        return 0;
    }
    let own_group = getpgid(None).ok();
    // `/proc/PID/cwd` is resolved: so are the directories (a relative path, a symlinked TMPDIR).
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| d.canonicalize().unwrap_or_else(|_| d.clone()))
        .collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut found = 0;
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|pid| *pid != me)
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if !dirs.iter().any(|d| cwd.starts_with(d)) {
            continue;
        }
        let Some(process) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        found += 1;
        match getpgid(Some(process)) {
            Ok(group) if group == process && group.as_raw_nonzero().get() > 1 && Some(group) != own_group => {
                super::supervisor::kill_group(Some(pid));
            }
            _ => {
                let _ = kill_process(process, Signal::KILL);
            }
        }
    }
    found
}

#[cfg(not(target_os = "linux"))]
fn kill_processes_in(_dirs: &[PathBuf]) -> usize {
    0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn revision_dir(run: &Path, name: &str) -> PathBuf {
        let dir = run.join(name);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        mark_revision(&dir).unwrap();
        dir
    }

    #[test]
    fn temporary_names_are_recognised() {
        assert!(is_temporary_name(&temporary_name(4242, 0xdead)));
        for name in [
            "gcp-emulator-4242",
            "gcp-emulator-x-0000dead",
            "gcp-emulator--0000dead",
            "gcp-emulator-4242-dead",
            "other-4242-0000dead",
        ] {
            assert!(!is_temporary_name(name), "{name}");
        }
    }

    #[test]
    fn claiming_a_run_directory_clears_its_revision_directories_and_a_held_one_is_refused() {
        let run = tempfile::tempdir().unwrap();
        let left = revision_dir(run.path(), "p_us-central1_llm-00001-abc");
        // A directory that looks like a revision's but was not marked as one (a chroot, say) is never touched.
        let other = run.path().join("rootfs");
        for d in ["home", "root"] {
            std::fs::create_dir_all(other.join(d)).unwrap();
        }
        let (held, removed, _) = claim(run.path()).unwrap();
        assert_eq!(removed, std::slice::from_ref(&left));
        assert!(!left.exists() && other.exists());

        let err = claim(run.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        // Released with its holder, as when its process ends.
        drop(held);
        assert!(claim(run.path()).is_ok());
    }

    #[test]
    fn a_temporary_run_directory_is_removed_only_when_no_emulator_holds_it() {
        let temp = tempfile::tempdir().unwrap();
        let (mine, _mine) = make_temporary(temp.path()).unwrap();
        let held = temp.path().join(temporary_name(1, 1));
        let abandoned = temp.path().join(temporary_name(2, 2));
        let unmarked = temp.path().join(temporary_name(3, 3));
        let unrelated = temp.path().join("gcp-emulator-data");
        for d in [&held, &abandoned, &unmarked, &unrelated] {
            std::fs::create_dir_all(d).unwrap();
        }
        let (_claim, _, _) = claim(&held).unwrap();
        drop(claim(&abandoned).unwrap());
        std::fs::write(unrelated.join(MARKER), b"").unwrap();
        assert_eq!(clear_temporary(temp.path()), (vec![abandoned.clone()], 0));
        assert!(held.exists() && !abandoned.exists() && unmarked.exists() && unrelated.exists());
        assert!(mine.exists() && is_temporary_name(&mine.file_name().unwrap().to_string_lossy()));
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&mine).unwrap().permissions()) & 0o777,
            0o700
        );
    }
}
