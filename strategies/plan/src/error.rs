use std::fmt;

/// Parameters a strategy or policy cannot work with. The message names the parameter and says
/// what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    message: String,
}

impl ParamError {
    pub fn new(message: impl Into<String>) -> Self {
        ParamError {
            message: message.into(),
        }
    }

    /// Wraps a JSON decoding error of the parameters of `what` (a strategy or policy name).
    pub(crate) fn json(what: &str, err: serde_json::Error) -> Self {
        ParamError::new(format!("invalid {what} parameters: {err}"))
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParamError {}

impl From<ParamError> for String {
    fn from(err: ParamError) -> String {
        err.message
    }
}
