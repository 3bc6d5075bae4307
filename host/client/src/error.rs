//! Why a request did not succeed.

/// Why a request did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered and refused: its status and its message, as it said them.
    #[error("{message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
        /// On a server failure, the id under which the server logged the detail.
        id: Option<String>,
    },
    /// The request did not get through (or its answer was cut), after every retry.
    #[error("{url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a body that is not what the API says it sends.
    #[error("{url}: unexpected answer: {detail}")]
    Decode { url: String, detail: String },
}

impl ClientError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether trying again may help: the request did not get through, or the server said it
    /// cannot answer now (502, 503, 504). A refusal of the request itself never is.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Refused { status, .. } => matches!(status, 502..=504),
            ClientError::Decode { .. } => false,
        }
    }
}
