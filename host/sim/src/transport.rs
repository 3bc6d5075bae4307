//! What a simulated device talks to: check-ins, reports and ranged downloads behind one trait,
//! so the device's update logic runs the same over HTTP ([`HttpTransport`]) and in a test with
//! no server at all.

use hotswap_client::{Client, ClientError, Device};
use hotswap_protocol::{CheckIn, CheckInAnswer, Report, ReportAnswer, ReportBatch};

/// Why a request of a device's did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached, or the answer was cut: worth trying again.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The server refused the request, with its status and message.
    #[error("refused with {status}: {message}")]
    Refused { status: u16, message: String },
}

impl From<ClientError> for TransportError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Refused {
                status, message, ..
            } => TransportError::Refused { status, message },
            other => TransportError::Unreachable(other.to_string()),
        }
    }
}

/// The device protocol as a device speaks it.
pub trait Transport {
    /// A check-in, waiting up to `wait` seconds for an assignment (0: answered at once).
    fn check_in(
        &self,
        device: Device<'_>,
        c: &CheckIn,
        wait: u32,
    ) -> impl Future<Output = Result<CheckInAnswer, TransportError>>;

    /// Reports that happened together, in order; one answer each.
    fn report(
        &self,
        device: Device<'_>,
        reports: Vec<Report>,
    ) -> impl Future<Output = Result<Vec<ReportAnswer>, TransportError>>;

    /// An artifact's bytes from `offset` on.
    fn download(
        &self,
        device: Device<'_>,
        url: &str,
        offset: u64,
    ) -> impl Future<Output = Result<Vec<u8>, TransportError>>;
}

/// The device protocol over HTTP, through the typed client: one report goes to `reports`,
/// several to `reports/batch`.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    /// For check-ins and downloads: tried once, the device decides when to try again.
    pub once: Client,
    /// For reports: tried again while the server cannot be reached (it may be restarting).
    pub retrying: Client,
}

impl Transport for HttpTransport {
    async fn check_in(
        &self,
        device: Device<'_>,
        c: &CheckIn,
        wait: u32,
    ) -> Result<CheckInAnswer, TransportError> {
        Ok(self.once.check_in(device, c, wait).await?)
    }

    async fn report(
        &self,
        device: Device<'_>,
        mut reports: Vec<Report>,
    ) -> Result<Vec<ReportAnswer>, TransportError> {
        if reports.len() == 1 {
            let one = reports.pop().expect("one report");
            return Ok(vec![self.retrying.report(device, &one).await?]);
        }
        Ok(self
            .retrying
            .reports(device, &ReportBatch { reports })
            .await?)
    }

    async fn download(
        &self,
        device: Device<'_>,
        url: &str,
        offset: u64,
    ) -> Result<Vec<u8>, TransportError> {
        Ok(self.once.artifact(device, url, offset).await?.to_vec())
    }
}
