//! `hotswap push --device HOST:PORT`: the device's gRPC service as a [`Transport`], the same
//! push flow as over a serial line.

use anyhow::Result;
use hotswap_device_vm::smp::codec::SlotImage;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};
use tonic::{Request, Status};

use super::{Transport, Uploaded};
use crate::proto::{
    Image, ImageStateRequest, InfoRequest, ResetRequest, SetStateRequest, UploadChunk,
};

/// Where a client reaches a device's gRPC service, and with what.
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// HOST:PORT.
    pub addr: String,
    /// The device's credential, sent with every call.
    pub token: Option<String>,
    /// Speak TLS, trusting this CA certificate (PEM) for the device's certificate.
    pub ca_cert: Option<std::path::PathBuf>,
    /// A client certificate and its key (PEM), for a device that asks for one.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Puts the device's credential on every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(b) = &self.0 {
            request.metadata_mut().insert("authorization", b.clone());
        }
        Ok(request)
    }
}

/// A client of the device service.
pub type Client = crate::proto::device_client::DeviceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

/// Connects to the device at `t.addr`, over TLS when a CA to trust is given.
pub async fn connect(t: &Target) -> Result<Client> {
    use anyhow::Context;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
    };
    let addr = &t.addr;
    let scheme = if t.ca_cert.is_some() { "https" } else { "http" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| crate::usage::UsageError(format!("--device {addr}: {e}")))?;
    if let Some(ca) = &t.ca_cert {
        // The name the device's certificate must carry: the host the address names.
        let host = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?))
            .domain_name(host);
        if let Some((cert, key)) = &t.identity {
            tls = tls.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to the device at {scheme}://{addr}"))?;
    let bearer = t
        .token
        .as_ref()
        .map(|t| format!("Bearer {t}").parse())
        .transpose()
        .map_err(|_| crate::usage::UsageError("the device token is not a valid header".into()))?;
    Ok(crate::proto::device_client::DeviceClient::with_interceptor(
        channel,
        Bearer(bearer),
    ))
}

/// A device reached over gRPC: each call made on the runtime the push runs beside.
pub struct GrpcDevice {
    client: Client,
    runtime: tokio::runtime::Handle,
}

impl GrpcDevice {
    /// Connects to `target` on `runtime`; call from outside its workers (a blocking thread).
    pub fn connect(target: &Target, runtime: tokio::runtime::Handle) -> Result<GrpcDevice> {
        let client = runtime.block_on(connect(target))?;
        Ok(GrpcDevice { client, runtime })
    }
}

fn refused(e: Status) -> anyhow::Error {
    anyhow::anyhow!("the device refused: {}", e.message())
}

fn slot(i: Image) -> SlotImage {
    SlotImage {
        slot: i.slot,
        version: i.version,
        hash: i.hash,
        pending: i.pending,
        confirmed: i.confirmed,
        active: i.active,
        permanent: i.permanent,
    }
}

impl Transport for GrpcDevice {
    fn describe_device(&mut self, name: &str) -> Result<String> {
        let info = self
            .runtime
            .block_on(self.client.info(InfoRequest {}))
            .map_err(refused)?
            .into_inner();
        Ok(format!(
            "device {name}: answers gRPC, runs {}, takes chunks of {} bytes",
            info.version, info.max_chunk
        ))
    }

    fn images(&mut self) -> Result<Vec<SlotImage>> {
        let state = self
            .runtime
            .block_on(self.client.image_state(ImageStateRequest {}))
            .map_err(refused)?
            .into_inner();
        Ok(state.images.into_iter().map(slot).collect())
    }

    fn upload(&mut self, file: &[u8], bar: &ProgressBar) -> Result<Uploaded> {
        let client = &mut self.client;
        self.runtime.block_on(async {
            let sha: [u8; 32] = Sha256::digest(file).into();
            let max = client
                .info(InfoRequest {})
                .await
                .map_err(refused)?
                .into_inner()
                .max_chunk as usize;
            let chunk = max.max(64);
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let first = UploadChunk {
                offset: 0,
                data: file[..chunk.min(file.len())].to_vec(),
                length: file.len() as u64,
                sha256: sha.to_vec(),
            };
            tx.send(first)
                .await
                .map_err(|_| anyhow::anyhow!("the upload stream closed"))?;
            let mut progress = client
                .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map_err(refused)?
                .into_inner();
            let mut resumed_from = None;
            let mut first_answer = true;
            loop {
                let Some(p) = progress.message().await.map_err(refused)? else {
                    anyhow::bail!("the device ended the upload before it was whole");
                };
                let next = p.next_offset as usize;
                if first_answer && next > chunk.min(file.len()) {
                    resumed_from = Some(next);
                }
                first_answer = false;
                bar.set_position(next as u64);
                if p.done || next >= file.len() {
                    return Ok(Uploaded { resumed_from });
                }
                let data = file[next..(next + chunk).min(file.len())].to_vec();
                tx.send(UploadChunk {
                    offset: next as u64,
                    data,
                    length: 0,
                    sha256: Vec::new(),
                })
                .await
                .map_err(|_| anyhow::anyhow!("the upload stream closed"))?;
            }
        })
    }

    fn set_state(&mut self, hash: Option<&[u8]>, confirm: bool) -> Result<()> {
        let request = SetStateRequest {
            hash: hash.map(<[u8]>::to_vec).unwrap_or_default(),
            confirm,
        };
        self.runtime
            .block_on(self.client.set_state(request))
            .map_err(refused)
            .map(drop)
    }

    fn reset(&mut self) -> Result<()> {
        self.runtime
            .block_on(self.client.reset(ResetRequest {}))
            .map_err(refused)
            .map(drop)
    }
}
