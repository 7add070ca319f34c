//! Ctrl-C (SIGINT) and SIGTERM for the commands that make a copy: `restore`, `drill` and the demo's drill.
//!
//! Without a handler a signal kills the process wherever it is, leaving a half-made copy or a
//! drill's scratch directory behind. With one installed, a signal only sets a flag until the
//! copy is committed: the copy loop sees the flag, removes its staging directory and returns
//! [`snapshotter::Error::Interrupted`], so the command exits 130 with nothing left behind.
//! After the commit there is nothing partial to clean: the process exits 130 at once, after
//! removing the command's own temporary directory if it has one.
//!
//! The two flags are read and written with `SeqCst`, so whichever of the signal and the commit
//! comes second sees the other, and exactly one side ends the process.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{CliError, CliResult, Exit};

/// The shared state of one command's signal handling.
#[derive(Debug)]
pub struct Interrupt {
    cancel: AtomicBool,
    committed: AtomicBool,
    /// A temporary directory of the command's own, removed before exiting on a signal.
    cleanup: Option<PathBuf>,
}

impl Interrupt {
    /// Installs the handler (SIGINT and SIGTERM) on a thread of its own; returns once the
    /// signals are caught, so no signal between this call and the work is missed.
    pub fn install(cleanup: Option<PathBuf>) -> CliResult<Arc<Interrupt>> {
        let interrupt =
            Arc::new(Interrupt { cancel: AtomicBool::new(false), committed: AtomicBool::new(false), cleanup });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handler = Arc::clone(&interrupt);
        std::thread::Builder::new()
            .name("cairn-signals".into())
            .spawn(move || {
                use tokio::signal::unix::{signal, SignalKind};
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => return drop(ready_tx.send(Err(e))),
                };
                runtime.block_on(async {
                    let signals =
                        signal(SignalKind::interrupt()).and_then(|i| Ok((i, signal(SignalKind::terminate())?)));
                    let (mut int, mut term) = match signals {
                        Ok(pair) => pair,
                        Err(e) => return drop(ready_tx.send(Err(e))),
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                });
                handler.signalled();
            })
            .map_err(|e| CliError::io("start the signal handler thread", "cairn-signals", e))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(interrupt),
            Ok(Err(e)) => Err(CliError::io("install the SIGINT handler", "cairn-signals", e)),
            Err(_) => Err(CliError::Server("the signal handler thread stopped before it was ready".into())),
        }
    }

    /// The flag the copy loop checks.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// Records that the copy is complete; exits now if a signal arrived meanwhile.
    pub fn commit(&self) {
        self.committed.store(true, Ordering::SeqCst);
        if self.cancel.load(Ordering::SeqCst) {
            self.exit_now();
        }
    }

    fn signalled(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        if self.committed.load(Ordering::SeqCst) {
            self.exit_now();
        }
    }

    /// Removes the command's temporary directory and ends the process with [`Exit::Interrupted`].
    pub fn exit_now(&self) -> ! {
        self.remove_cleanup();
        eprintln!("interrupted");
        std::process::exit(Exit::Interrupted as i32)
    }

    /// Removes the command's temporary directory, if any.
    pub fn remove_cleanup(&self) {
        if let Some(dir) = &self.cleanup {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
