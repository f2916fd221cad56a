//! The sidecar's open connections: at most `http.max_connections` at once, and which one makes
//! room when a new client arrives.
//!
//! Every connection holds a file descriptor. Without a bound, idle or slow clients (pools of
//! keep-alive connections, a slow-loris sender) use up the process's descriptors, and then
//! every new request fails at `accept`. A bound alone is not enough either: a new client would
//! wait behind the idle connections until their timeouts. So when the sidecar is full, a new
//! connection takes the place of the connection that has been idle — without a request in
//! progress — the longest, as nginx reuses keep-alive connections when it runs out. Only when
//! every connection is serving a request does the new one wait for a place. A request in
//! progress is never cut to make room.
//!
//! The accept loop ([`super::server`]) asks for a place with [`Connections::admit`]; each
//! connection's task holds its [`Slot`] while it runs and watches [`Connection::close_requested`];
//! the request handler marks each request with a [`RequestGuard`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The open connections and the places left.
pub struct Connections {
    places: Arc<Semaphore>,
    max: usize,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// Notified when a connection becomes idle: a waiting [`Connections::admit`] may now find
    /// one to close.
    became_idle: Arc<Notify>,
}

/// One open connection, as the admission policy sees it.
pub struct Connection {
    id: u64,
    /// Requests being served (handler running or response body not yet handed to hyper).
    in_flight: AtomicUsize,
    /// Requests started since the connection opened.
    served: AtomicU64,
    /// Since when no request has been in flight (the accept, or the last response).
    idle_since: Mutex<Instant>,
    /// Set once a close was asked for, so a connection is chosen to make room only once.
    closing: AtomicBool,
    close: Notify,
    became_idle: Arc<Notify>,
}

/// A connection's place among the `max_connections`; given back when dropped.
pub struct Slot {
    connection: Arc<Connection>,
    connections: Arc<Connections>,
    _place: OwnedSemaphorePermit,
}

/// Marks a request in flight on its connection until dropped (with the response body).
pub struct RequestGuard(Arc<Connection>);

impl Connections {
    /// Room for `max` connections (at least one).
    pub fn new(max: usize) -> Arc<Connections> {
        let max = max.max(1);
        Arc::new(Connections {
            places: Arc::new(Semaphore::new(max)),
            max,
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            became_idle: Arc::new(Notify::new()),
        })
    }

    /// A place for a newly accepted connection: a free one, else the place of the connection
    /// idle the longest, once it has closed; when every connection has a request in flight,
    /// waits until one finishes or closes.
    pub async fn admit(self: &Arc<Self>) -> Slot {
        let mut making_room = false;
        loop {
            if let Ok(place) = Arc::clone(&self.places).try_acquire_owned() {
                return self.register(place);
            }
            if !making_room {
                making_room = self.close_longest_idle();
            }
            tokio::select! {
                place = Arc::clone(&self.places).acquire_owned() => {
                    if let Ok(place) = place {
                        return self.register(place);
                    }
                }
                () = self.became_idle.notified() => {}
            }
        }
    }

    /// Asks the connection idle the longest to close; false when every connection is busy
    /// or already closing. Also what the accept loop does when `accept` itself fails for
    /// want of descriptors.
    pub fn close_longest_idle(&self) -> bool {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let victim = open
            .values()
            .filter(|c| !c.closing.load(Ordering::SeqCst) && c.in_flight() == 0)
            .min_by_key(|c| (c.idle_since(), c.id));
        match victim {
            Some(victim) => {
                victim.request_close();
                crate::metrics::metrics().http_connections_evicted.inc();
                true
            }
            None => false,
        }
    }

    /// Asks every open connection to close (graceful shutdown).
    pub fn close_all(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        for connection in open.values() {
            connection.request_close();
        }
    }

    /// Waits until every connection has closed and given its place back.
    pub async fn closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.places.acquire_many(all).await;
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn register(self: &Arc<Self>, place: OwnedSemaphorePermit) -> Slot {
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            became_idle: Arc::clone(&self.became_idle),
        });
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection.id, Arc::clone(&connection));
        crate::metrics::metrics().http_connections.inc();
        Slot {
            connection,
            connections: Arc::clone(self),
            _place: place,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.connection.id);
        crate::metrics::metrics().http_connections.dec();
    }
}

impl Slot {
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Connection {
    /// Marks a request in flight until the guard is dropped.
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::SeqCst);
        RequestGuard(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Requests started on this connection.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the connection has been without a request in flight; `None` while one is.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.in_flight() == 0).then(|| now.saturating_duration_since(self.idle_since()))
    }

    /// Asks the connection's task to close it (see [`Connection::close_requested`]).
    pub fn request_close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.close.notify_one();
    }

    /// Completes once a close was asked for (immediately if it was asked before).
    pub async fn close_requested(&self) {
        self.close.notified().await
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let connection = &self.0;
        *connection
            .idle_since
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
        if connection.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            connection.became_idle.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_makes_room_by_closing_the_longest_idle() {
        let connections = Connections::new(2);
        let first = connections.admit().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = connections.admit().await;
        assert_eq!(connections.open(), 2);
        // Full: the third closes the first (idle the longest), and gets its place once the
        // first's task has let it go.
        let third = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(5), first.connection().close_requested())
            .await
            .expect("the longest idle is asked to close");
        assert!(!second.connection().closing.load(Ordering::SeqCst));
        drop(first);
        let third = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the place is handed on")
            .unwrap();
        assert_eq!(connections.open(), 2);
        drop((second, third));
        assert_eq!(connections.open(), 0);
    }

    #[tokio::test]
    async fn a_connection_with_a_request_in_flight_is_never_chosen() {
        let connections = Connections::new(1);
        let busy = connections.admit().await;
        let guard = busy.connection().begin_request();
        assert!(!connections.close_longest_idle());
        let waiting = tokio::spawn({
            let connections = Arc::clone(&connections);
            async move { connections.admit().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!busy.connection().closing.load(Ordering::SeqCst));
        assert!(
            !waiting.is_finished(),
            "waits while every connection is busy"
        );
        // The request ends: the connection is now idle, so it makes room.
        drop(guard);
        tokio::time::timeout(Duration::from_secs(5), busy.connection().close_requested())
            .await
            .expect("asked to close once idle");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("admitted")
            .unwrap();
    }

    #[tokio::test]
    async fn idle_time_counts_from_the_last_response() {
        let connections = Connections::new(1);
        let slot = connections.admit().await;
        let connection = slot.connection();
        let guard = connection.begin_request();
        assert_eq!(connection.idle_for(Instant::now()), None);
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(guard);
        let idle = connection.idle_for(Instant::now()).unwrap();
        assert!(idle < Duration::from_millis(20), "{idle:?}");
        assert_eq!(connection.served(), 1);
    }
}
