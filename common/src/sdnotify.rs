//! systemd's service protocol without a crate: readiness and stopping go to systemd as one
//! datagram each on `$NOTIFY_SOCKET` (the units are `Type=notify`), and SIGHUP (the units'
//! `ExecReload`) is answered with a log line instead of killing the process.
//!
//! Outside systemd there is no `$NOTIFY_SOCKET` and every notification is a no-op, so the
//! binaries started by hand behave as before.

/// The exit status of a daemon whose config is unreadable, not TOML or invalid (`EX_CONFIG`
/// of sysexits.h): both units say `RestartPreventExitStatus=78`, so systemd does not
/// restart-loop on a config that cannot work.
pub const EXIT_CONFIG: u8 = 78;

use std::os::unix::net::UnixDatagram;

/// Sends `state` (`READY=1`, `STOPPING=1`) to systemd. A failure is logged at debug level
/// only: the service works the same when nobody listens.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|socket| {
        match path.as_encoded_bytes().strip_prefix(b"@") {
            // A leading '@' names a socket in the abstract namespace.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(state.as_bytes(), &addr)
            }
            None => socket.send_to(state.as_bytes(), &path),
        }
    });
    if let Err(e) = sent {
        tracing::debug!("cannot notify systemd ({state}): {e}");
    }
}

/// A re-read of the config for SIGHUP: `Err` says what is wrong with the file on disk.
pub type ConfigCheck = Box<dyn Fn() -> Result<(), String> + Send>;

/// Answers SIGHUP from now on, then tells systemd the service is ready. Call it inside the
/// tokio runtime once the listeners are bound. The running service keeps its config on
/// SIGHUP (swapping it live is not safe in this design); the log line says to restart, and
/// with a `check` whether the file on disk would be accepted.
pub fn ready_watching_reload(check: Option<ConfigCheck>) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match check.as_ref().map(|check| check()) {
                None => tracing::info!("configuration reload: restart to apply changes"),
                Some(Ok(())) => tracing::info!(
                    "configuration reload: the config is valid; restart to apply changes"
                ),
                Some(Err(e)) => tracing::warn!(
                    "configuration reload: the config is invalid, a restart would fail: {e}"
                ),
            }
        }
    });
    notify("READY=1");
    Ok(())
}

/// Tells systemd the service is shutting down (finishing the work in progress).
pub fn stopping() {
    notify("STOPPING=1");
}
