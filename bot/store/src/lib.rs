//! fixbot-store: the persistent homes of cases. SQLite (a file, WAL) is the
//! embedded default; PostgreSQL is shared by several instances; the memory
//! store comes from the core. A store is chosen once at start from a URL, so
//! the set is a closed enum, not a trait object.

mod postgres;
mod rows;
mod sqlite;

pub use fixbot_core::store::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use fixbot_core::case::{ConversationKey, OutcomeRecord};
use fixbot_core::store::{Change, Purge, Purged, Store, StoreError, Stored};

/// A store URL that could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names no backend this build knows.
    #[error("unknown store URL `{0}`: use `memory:`, `sqlite:PATH` or `postgres://…`")]
    UnknownScheme(String),
    /// The backend refused to open.
    #[error("cannot open the store at `{url}`: {source}")]
    Backend {
        /// The URL as given.
        url: String,
        /// Why.
        #[source]
        source: StoreError,
    },
}

/// Every backend, chosen at start from a URL.
#[derive(Debug)]
pub enum AnyStore {
    /// `memory:` — nothing survives the process.
    Memory(MemoryStore),
    /// `sqlite:PATH` — a file, the embedded default.
    Sqlite(SqliteStore),
    /// `postgres://…` — shared by several instances.
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Opens the store a URL names: `memory:`, `sqlite:PATH` or
    /// `sqlite://PATH`, `postgres://…` or `postgresql://…`. SQLite files are
    /// created when missing; both databases are migrated on open.
    pub async fn open(url: &str) -> Result<AnyStore, OpenError> {
        if url == "memory:" || url == "memory" {
            return Ok(AnyStore::Memory(MemoryStore::new()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return PostgresStore::open(url)
                .await
                .map(AnyStore::Postgres)
                .map_err(|source| OpenError::Backend { url: redact_password(url), source });
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        match path {
            Some(path) if !path.is_empty() => SqliteStore::open(path.as_ref())
                .await
                .map(AnyStore::Sqlite)
                .map_err(|source| OpenError::Backend { url: url.to_owned(), source }),
            _ => Err(OpenError::UnknownScheme(url.to_owned())),
        }
    }
}

impl AnyStore {
    /// Closes the connections once the operations in flight are done; SQLite
    /// checkpoints its write-ahead log as the last one closes.
    pub async fn close(&self) {
        match self {
            AnyStore::Memory(_) => {}
            AnyStore::Sqlite(store) => store.close().await,
            AnyStore::Postgres(store) => store.close().await,
        }
    }
}

/// The URL with any password replaced, for error messages and logs.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Store for AnyStore {
    async fn get(&self, key: &ConversationKey) -> Result<Option<Stored>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.get(key).await,
            AnyStore::Sqlite(store) => store.get(key).await,
            AnyStore::Postgres(store) => store.get(key).await,
        }
    }

    async fn commit(&self, key: &ConversationKey, change: Change<'_>) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.commit(key, change).await,
            AnyStore::Sqlite(store) => store.commit(key, change).await,
            AnyStore::Postgres(store) => store.commit(key, change).await,
        }
    }

    async fn pending_delivery(&self, id: &str) -> Result<Option<String>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.pending_delivery(id).await,
            AnyStore::Sqlite(store) => store.pending_delivery(id).await,
            AnyStore::Postgres(store) => store.pending_delivery(id).await,
        }
    }

    async fn confirm_delivery(&self, id: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.confirm_delivery(id).await,
            AnyStore::Sqlite(store) => store.confirm_delivery(id).await,
            AnyStore::Postgres(store) => store.confirm_delivery(id).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(store) => store.ping().await,
            AnyStore::Sqlite(store) => store.ping().await,
            AnyStore::Postgres(store) => store.ping().await,
        }
    }

    async fn purge(&self, purge: Purge) -> Result<Purged, StoreError> {
        match self {
            AnyStore::Memory(store) => store.purge(purge).await,
            AnyStore::Sqlite(store) => store.purge(purge).await,
            AnyStore::Postgres(store) => store.purge(purge).await,
        }
    }

    async fn outcomes(&self, since: i64) -> Result<Vec<OutcomeRecord>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.outcomes(since).await,
            AnyStore::Sqlite(store) => store.outcomes(since).await,
            AnyStore::Postgres(store) => store.outcomes(since).await,
        }
    }

    async fn idle_cases(&self, before: i64, limit: usize) -> Result<Vec<(ConversationKey, Stored)>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.idle_cases(before, limit).await,
            AnyStore::Sqlite(store) => store.idle_cases(before, limit).await,
            AnyStore::Postgres(store) => store.idle_cases(before, limit).await,
        }
    }

    async fn forget(&self, platform: &str, user: &str, subject: u64) -> Result<u64, StoreError> {
        match self {
            AnyStore::Memory(store) => store.forget(platform, user, subject).await,
            AnyStore::Sqlite(store) => store.forget(platform, user, subject).await,
            AnyStore::Postgres(store) => store.forget(platform, user, subject).await,
        }
    }

    async fn meta_or_insert(&self, name: &str, value: &str) -> Result<String, StoreError> {
        match self {
            AnyStore::Memory(store) => store.meta_or_insert(name, value).await,
            AnyStore::Sqlite(store) => store.meta_or_insert(name, value).await,
            AnyStore::Postgres(store) => store.meta_or_insert(name, value).await,
        }
    }

    async fn find_by_staff_thread(&self, thread: &str) -> Result<Option<(ConversationKey, Stored)>, StoreError> {
        match self {
            AnyStore::Memory(store) => store.find_by_staff_thread(thread).await,
            AnyStore::Sqlite(store) => store.find_by_staff_thread(thread).await,
            AnyStore::Postgres(store) => store.find_by_staff_thread(thread).await,
        }
    }
}
