//! One persistent Postgres connection for long-lived servers (the
//! responder's `--listen` mode and the peer), reconnected when it breaks,
//! recycled when old, and bounded in time on every use.
//!
//! No lock is ever held across an `.await`: the slot is a plain mutex that
//! is only looked at and swapped. A connection attempt runs in its own task
//! with its own bound, and every caller that arrives while it runs waits on
//! it (within the caller's own bound) instead of starting another. So a hung
//! postmaster gives each caller `Timeout` at its own deadline, never later,
//! and a burst of callers makes one connection attempt.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

use super::{connect, ProbeError};

/// A new connection is opened once the warm one is this old. A hung
/// postmaster (SIGSTOP) leaves existing backends answering, so only a new
/// connection notices it: recycling bounds that blind spot to this age plus
/// the call's timeout, at the cost of one connect per second.
pub const WARM_MAX_AGE: Duration = Duration::from_secs(1);

/// How long a retired connection may take to say goodbye before its driver
/// is aborted (a hung server never answers).
const RETIRE_BOUND: Duration = Duration::from_secs(5);

/// The result of one connection attempt, shared by everyone who waited for it.
type Attempt = Option<Result<Arc<Client>, Arc<ProbeError>>>;

/// The warm connection. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct WarmConnection {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Default)]
enum Slot {
    /// No connection, and none being made.
    #[default]
    Empty,
    /// An attempt is under way; its result arrives on the channel.
    Connecting(watch::Receiver<Attempt>),
    /// A connection to use while it is young and open.
    Ready(Warm),
}

struct Warm {
    client: Arc<Client>,
    born: Instant,
    driver: tokio::task::JoinHandle<()>,
}

impl Warm {
    /// Lets in-flight queries finish and the goodbye go out, but never
    /// leaves the driver running past [`RETIRE_BOUND`].
    fn retire(self) {
        drop(self.client);
        let abort = self.driver.abort_handle();
        let driver = self.driver;
        tokio::spawn(async move {
            if tokio::time::timeout(RETIRE_BOUND, driver).await.is_err() {
                abort.abort();
            }
        });
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // Nothing panics while holding this lock (it guards only swaps); were a
    // lock poisoned anyway, the slot is still a valid value to replace.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl WarmConnection {
    /// Runs `work` on the warm client (connecting first when needed), all
    /// within `timeout`. A timeout or a broken connection drops the client,
    /// so the next call reconnects.
    pub async fn run<T, F, Fut>(
        &self,
        config: &tokio_postgres::Config,
        timeout: Duration,
        work: F,
    ) -> Result<T, ProbeError>
    where
        F: FnOnce(Arc<Client>) -> Fut,
        Fut: Future<Output = Result<T, ProbeError>>,
    {
        let mut used = None;
        let attempt = async {
            let client = self.client(config, timeout).await?;
            used = Some(client.clone());
            let result = work(client.clone()).await;
            if let Err(e) = &result {
                if e.breaks_connection() {
                    self.drop_client(&client);
                }
            }
            result
        };
        let result = tokio::time::timeout(timeout, attempt).await;
        match result {
            Ok(result) => result,
            Err(_) => {
                // A query that hung: that connection is not to be trusted.
                if let Some(client) = used {
                    self.drop_client(&client);
                }
                Err(ProbeError::Timeout(timeout))
            }
        }
    }

    /// The warm client; or the result of the attempt under way; or of a
    /// new one (bounded by `bound`) when there is none, it closed, or it is
    /// older than [`WARM_MAX_AGE`].
    async fn client(
        &self,
        config: &tokio_postgres::Config,
        bound: Duration,
    ) -> Result<Arc<Client>, ProbeError> {
        let mut receiver = {
            let mut slot = lock(&self.slot);
            match &*slot {
                Slot::Ready(warm)
                    if !warm.client.is_closed() && warm.born.elapsed() < WARM_MAX_AGE =>
                {
                    return Ok(warm.client.clone());
                }
                Slot::Connecting(receiver) => receiver.clone(),
                Slot::Ready(_) | Slot::Empty => {
                    if let Slot::Ready(old) = std::mem::take(&mut *slot) {
                        old.retire();
                    }
                    // The slot says "connecting" before the attempt can
                    // finish, so its result is never overwritten.
                    let (sender, receiver) = watch::channel(None);
                    *slot = Slot::Connecting(receiver.clone());
                    self.start_connecting(sender, config.clone(), bound);
                    receiver
                }
            }
        };
        // The attempt publishes exactly once; a closed channel without a
        // value means its task was dropped (the runtime is shutting down).
        let published = match receiver.wait_for(Option::is_some).await {
            Ok(value) => value.clone(),
            Err(_) => None,
        };
        match published {
            Some(Ok(client)) => Ok(client),
            Some(Err(e)) => Err(ProbeError::Shared(e)),
            None => Err(ProbeError::Timeout(bound)),
        }
    }

    /// Spawns one connection attempt, bounded by `bound`. It leaves the new
    /// connection in the slot (or empties the slot on failure) and then
    /// publishes the result to everyone waiting.
    fn start_connecting(
        &self,
        sender: watch::Sender<Attempt>,
        config: tokio_postgres::Config,
        bound: Duration,
    ) {
        let slot = self.slot.clone();
        tokio::spawn(async move {
            let outcome = match tokio::time::timeout(bound, connect(&config)).await {
                Ok(Ok((client, driver))) => Ok((Arc::new(client), driver)),
                Ok(Err(e)) => Err(Arc::new(e)),
                Err(_) => Err(Arc::new(ProbeError::Timeout(bound))),
            };
            let published = {
                let mut slot = lock(&slot);
                match outcome {
                    Ok((client, driver)) => {
                        *slot = Slot::Ready(Warm {
                            client: client.clone(),
                            born: Instant::now(),
                            driver,
                        });
                        Ok(client)
                    }
                    Err(e) => {
                        *slot = Slot::Empty;
                        Err(e)
                    }
                }
            };
            // Nobody waiting is fine: the slot already holds the result.
            let _ = sender.send(Some(published));
        });
    }

    /// Drops the warm connection if it is still `which`.
    fn drop_client(&self, which: &Arc<Client>) {
        let mut slot = lock(&self.slot);
        if matches!(&*slot, Slot::Ready(warm) if Arc::ptr_eq(&warm.client, which)) {
            if let Slot::Ready(warm) = std::mem::take(&mut *slot) {
                warm.driver.abort();
            }
        }
    }
}
