//! Why a text is not a value of a modelled type.

/// Why a text was refused, in the words the validator shows after the
/// field's path (`containers[0].capabilities.add[0]: ...`): the message
/// names the text and, where one is close, what was probably meant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Invalid {
        Invalid(message.into())
    }
}

/// The validator and the parsers of the dialect carry their messages as
/// text until they reach a field's path.
impl From<Invalid> for String {
    fn from(e: Invalid) -> String {
        e.0
    }
}
