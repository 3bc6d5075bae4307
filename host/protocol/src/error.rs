//! The shape of every error answer: `{"error": {"status": 400, "message": "..."}}`, with an
//! `id` on a server failure (5xx) that names the log line holding the detail.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub status: u16,
    /// What is wrong, said for the client; never a database's or file system's own message.
    pub message: String,
    /// On a server failure: the id under which the server logged the detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}
