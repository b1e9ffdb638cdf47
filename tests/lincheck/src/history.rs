//! One recorded client operation.

use std::fmt;

use crate::model::{Input, Output};

/// An operation a client issued against one key, as the client saw it.
///
/// Timestamps are nanoseconds from one monotonic clock shared by every client
/// of the history (e.g. `Instant` relative to the start of the run). Every key
/// starts absent, so a run should use keys that do not exist before it, and
/// write a fresh value each time: values nobody reads back are
/// interchangeable, which keeps checking unknown outcomes cheap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub client: u64,
    pub key: String,
    /// When the request was sent.
    pub call: u64,
    /// When the answer arrived; `None` when the outcome is unknown (timeout,
    /// broken connection, 5xx): the operation may have taken effect at any time
    /// after `call`, or never.
    pub ret: Option<u64>,
    pub input: Input,
    /// The answer; `Some` exactly when `ret` is.
    pub output: Option<Output>,
}

impl Op {
    /// An operation that was answered.
    pub fn returned(
        client: u64,
        key: impl Into<String>,
        call: u64,
        ret: u64,
        input: Input,
        output: Output,
    ) -> Op {
        Op {
            client,
            key: key.into(),
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    /// An operation whose outcome the client never learnt.
    pub fn unknown(client: u64, key: impl Into<String>, call: u64, input: Input) -> Op {
        Op {
            client,
            key: key.into(),
            call,
            ret: None,
            input,
            output: None,
        }
    }
}

/// `client 3 [100, 250] cas "a" -> "b" = failed`; an unknown outcome shows `?`.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} [{}, ", self.client, self.call)?;
        match self.ret {
            Some(ret) => write!(f, "{ret}")?,
            None => write!(f, "?")?,
        }
        write!(f, "] {} = ", self.input)?;
        match &self.output {
            Some(output) => write!(f, "{output}"),
            None => write!(f, "?"),
        }
    }
}
