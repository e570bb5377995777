//! Child processes that never outlive the test process.
//!
//! Every server runs in its own process group. A tiny `sh` janitor, also in its own group, reads
//! the group ids from a pipe whose write end only this process holds. When the pipe closes — on
//! [`Supervisor::shutdown`], on drop during a panic, or because the test process exited or was
//! killed without running any destructor (a lazily started global is never dropped) — the janitor
//! kills every group and removes the control plane's directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::error::{Error, Result};

const JANITOR: &str = r#"
groups=""
while read -r group; do groups="$groups -$group"; done
if [ -n "$groups" ]; then kill -s KILL -- $groups 2>/dev/null; fi
if [ -n "$1" ]; then rm -rf -- "$1"; fi
"#;

pub(crate) struct Supervisor {
    janitor: Child,
    janitor_pipe: Option<ChildStdin>,
    children: Vec<Supervised>,
}

struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Supervisor {
    /// Starts the janitor. It removes `remove_on_exit` (if any) after killing the children.
    pub(crate) fn new(remove_on_exit: Option<&Path>) -> Result<Self> {
        let mut janitor = Command::new("sh");
        janitor
            .arg("-c")
            .arg(JANITOR)
            .arg("janitor")
            .arg(remove_on_exit.map(Path::as_os_str).unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group: a Ctrl-C to the test's terminal must not stop the clean-up.
            .process_group(0);
        let mut janitor = janitor.spawn().map_err(|source| Error::Spawn {
            name: "janitor (sh)".to_owned(),
            source,
        })?;
        let janitor_pipe = janitor.stdin.take();
        Ok(Self {
            janitor,
            janitor_pipe,
            children: Vec::new(),
        })
    }

    /// Starts `command` in a new process group, with stdout and stderr appended to `log`.
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command, log: &Path) -> Result<()> {
        let write_error = |source| Error::Write {
            path: log.to_owned(),
            source,
        };
        let out = File::create(log).map_err(write_error)?;
        let err = out.try_clone().map_err(write_error)?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().map_err(|source| Error::Spawn {
            name: name.to_owned(),
            source,
        })?;
        // The child leads its group, so its pid is the group id.
        if let Some(pipe) = self.janitor_pipe.as_mut() {
            // If the janitor is gone, shutdown() still kills the child directly.
            let _ = writeln!(pipe, "{}", child.id());
        }
        self.children.push(Supervised {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        });
        Ok(())
    }

    /// Fails if any child has exited, with the tail of its log.
    pub(crate) fn check_running(&mut self) -> Result<()> {
        for supervised in &mut self.children {
            if let Ok(Some(status)) = supervised.child.try_wait() {
                return Err(Error::ExitedEarly {
                    name: supervised.name.clone(),
                    status,
                    log_tail: log_tail(&supervised.log),
                });
            }
        }
        Ok(())
    }

    /// The last lines of the named child's log.
    pub(crate) fn log_tail(&self, name: &str) -> String {
        self.children
            .iter()
            .find(|s| s.name == name)
            .map(|s| log_tail(&s.log))
            .unwrap_or_default()
    }

    /// Kills every child and waits until they and the janitor are gone.
    pub(crate) fn shutdown(&mut self) {
        for supervised in &mut self.children {
            let _ = supervised.child.kill();
            let _ = supervised.child.wait();
        }
        self.children.clear();
        // Closing the pipe lets the janitor kill anything left in the groups and clean up.
        self.janitor_pipe = None;
        let _ = self.janitor.wait();
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The last 40 lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
