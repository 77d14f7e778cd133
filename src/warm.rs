//! One persistent Postgres connection for long-lived servers (the
//! responder's `--listen` mode and the peer), reconnected when it breaks,
//! recycled when old, and bounded in time on every use.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::probe::{self, ProbeError};

/// A new connection is opened once the warm one is this old. A hung
/// postmaster (SIGSTOP) leaves existing backends answering, so only a new
/// connection notices it: recycling bounds that blind spot to this age plus
/// the call's timeout, at the cost of one connect per second.
pub const WARM_MAX_AGE: Duration = Duration::from_secs(1);

/// How long a retired connection may take to say goodbye before its driver
/// is aborted (a hung server never answers).
const RETIRE_BOUND: Duration = Duration::from_secs(5);

/// The warm connection. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct WarmConnection {
    slot: Mutex<Option<Warm>>,
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
        let attempt = async {
            let client = self.client(config).await?;
            let result = work(client.clone()).await;
            if let Err(e) = &result {
                if e.breaks_connection() {
                    self.drop_client(Some(&client)).await;
                }
            }
            result
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                self.drop_client(None).await;
                Err(ProbeError::Timeout(timeout))
            }
        }
    }

    /// The warm client, connecting first when there is none, it closed, or
    /// it is older than [`WARM_MAX_AGE`]. Connecting holds the lock, so a
    /// burst of calls makes one connection.
    async fn client(&self, config: &tokio_postgres::Config) -> Result<Arc<Client>, ProbeError> {
        let mut slot = self.slot.lock().await;
        if let Some(warm) = slot.as_ref() {
            if !warm.client.is_closed() && warm.born.elapsed() < WARM_MAX_AGE {
                return Ok(warm.client.clone());
            }
        }
        if let Some(old) = slot.take() {
            old.retire();
        }
        let (client, driver) = probe::connect(config).await?;
        let client = Arc::new(client);
        *slot = Some(Warm {
            client: client.clone(),
            born: Instant::now(),
            driver,
        });
        Ok(client)
    }

    /// Drops the warm connection (only if it is still `which`, when given).
    async fn drop_client(&self, which: Option<&Arc<Client>>) {
        let mut slot = self.slot.lock().await;
        let matches = match (slot.as_ref(), which) {
            (Some(warm), Some(which)) => Arc::ptr_eq(&warm.client, which),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches {
            if let Some(warm) = slot.take() {
                warm.driver.abort();
            }
        }
    }
}
