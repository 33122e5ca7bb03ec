//! Upstream connection pools, one per single-threaded runtime.
//!
//! A pooled hyper connection is a task on the runtime that opened it: a
//! request sent over it from another runtime's thread wakes that thread to
//! write and again to read. Under `--runtime per-core` each runtime
//! therefore keeps a pool of its own, so a request, its upstream exchange
//! and its response stay on one thread. On a multi-threaded runtime the
//! one shared pool is used, as before.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper_util::client::legacy::Builder;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::upstream::forward::{UpstreamClient, UpstreamConnector};

thread_local! {
    /// This thread's pools, by the id of the [`Pools`] they belong to.
    static LOCAL: RefCell<HashMap<u64, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Builds a thread's own client, like the shared one, on first use.
#[derive(Clone)]
pub struct Pools {
    id: u64,
    builder: Builder,
    connector: UpstreamConnector,
}

impl Pools {
    /// Pools built like `builder.build(connector)`.
    pub fn new(builder: Builder, connector: UpstreamConnector) -> Self {
        Pools {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            builder,
            connector,
        }
    }

    /// The client to send with from here: this thread's own on a
    /// single-threaded runtime, else `shared`.
    pub fn client(&self, shared: &UpstreamClient) -> UpstreamClient {
        let single = Handle::try_current()
            .is_ok_and(|handle| handle.runtime_flavor() == RuntimeFlavor::CurrentThread);
        if !single {
            return shared.clone();
        }
        LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            if let Some(client) = local
                .get(&self.id)
                .and_then(|client| client.downcast_ref::<UpstreamClient>())
            {
                return client.clone();
            }
            let client = self.builder.build(self.connector.clone());
            local.insert(self.id, Box::new(client.clone()));
            client
        })
    }
}
