//! The little that pgsql-state says to systemd: READY=1, STATUS=, and the
//! watchdog. Failures are logged, never fatal (outside systemd there is no
//! NOTIFY_SOCKET and these do nothing).

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is ready, with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Updates the status line `systemctl status` shows.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("sd_notify: {e}");
    }
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Pings the watchdog at half its interval, forever. It runs on the same
/// runtime as the service, so a wedged runtime stops the pings and systemd
/// restarts the service.
pub async fn keep_watchdog(interval: Duration) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tick.tick().await;
        notify(&[NotifyState::Watchdog]);
    }
}
