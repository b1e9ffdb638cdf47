//! etcd v2's error codes, messages and the `cause`/`index` that go with them.

/// An etcd v2 error code; the discriminant is the number etcd puts in `errorCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ErrorCode {
    KeyNotFound = 100,
    TestFailed = 101,
    NotFile = 102,
    NotDir = 104,
    NodeExist = 105,
    RootReadOnly = 107,
    DirNotEmpty = 108,
    ValueRequired = 200,
    PrevValueRequired = 201,
    TtlNaN = 202,
    IndexNaN = 203,
    InvalidField = 209,
    InvalidForm = 210,
    RefreshValue = 211,
    RefreshTtlRequired = 212,
    RaftInternal = 300,
    LeaderElect = 301,
    WatcherCleared = 400,
    EventIndexCleared = 401,
}

impl ErrorCode {
    /// The number etcd reports in `errorCode`.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The HTTP status etcd answers the error with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::KeyNotFound => 404,
            ErrorCode::TestFailed | ErrorCode::NodeExist => 412,
            // etcd maps only these two to 403; 104 and 107 fall through to 400.
            ErrorCode::NotFile | ErrorCode::DirNotEmpty => 403,
            ErrorCode::RaftInternal | ErrorCode::LeaderElect => 500,
            _ => 400,
        }
    }

    /// etcd's message for the code, byte for byte, because clients match on it.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::KeyNotFound => "Key not found",
            ErrorCode::TestFailed => "Compare failed",
            ErrorCode::NotFile => "Not a file",
            ErrorCode::NotDir => "Not a directory",
            ErrorCode::NodeExist => "Key already exists",
            ErrorCode::RootReadOnly => "Root is read only",
            ErrorCode::DirNotEmpty => "Directory not empty",
            ErrorCode::ValueRequired => "Value is Required in POST form",
            ErrorCode::PrevValueRequired => "PrevValue is Required in POST form",
            ErrorCode::TtlNaN => "The given TTL in POST form is not a number",
            ErrorCode::IndexNaN => "The given index in POST form is not a number",
            ErrorCode::InvalidField => "Invalid field",
            ErrorCode::InvalidForm => "Invalid POST form",
            ErrorCode::RaftInternal => "Raft Internal Error",
            ErrorCode::LeaderElect => "During Leader Election",
            ErrorCode::WatcherCleared => "watcher is cleared due to etcd recovery",
            ErrorCode::RefreshValue => "Value provided on refresh",
            ErrorCode::RefreshTtlRequired => "A TTL must be provided on refresh",
            ErrorCode::EventIndexCleared => "The event in requested index is outdated and cleared",
        }
    }
}

/// An operation refused by the store: etcd's code, the key or comparison it
/// failed on (`cause`) and the store's index when it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{} ({cause})", code.message())]
pub struct EtcdError {
    pub code: ErrorCode,
    pub cause: String,
    pub index: u64,
}

impl EtcdError {
    pub fn new(code: ErrorCode, cause: impl Into<String>, index: u64) -> Self {
        EtcdError {
            code,
            cause: cause.into(),
            index,
        }
    }
}
