//! The device's network path: the `hotswap.device.v1` gRPC service (`proto/`), served by
//! `hotswap device --grpc ADDR`. Each call becomes the SMP request of the same meaning, handed to
//! the device's loop ([`super::emulated::Event::Smp`]), so the serial and the network paths share
//! one implementation of every rule: upload checks, test, reset, confirm, the watchdog.

use std::pin::Pin;

use sha2::{Digest, Sha256};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::link::{Link, LinkError, ResetReport};
use hotswap_device_vm::smp::codec::SlotImage;

use crate::proto::device_server::{Device, DeviceServer};
use crate::proto::{
    Image, ImageStateReply, ImageStateRequest, InfoReply, InfoRequest, Outcome, ResetReply,
    ResetRequest, RollbackRequest, SetStateRequest, UploadChunk, UploadProgress,
};

/// The largest chunk of an upload, in bytes: what fits the device's SMP buffer.
pub const MAX_CHUNK: u32 = hotswap_device_vm::smp::server::BUFFER_SIZE as u32 - 128;

/// The service, handing each call to the device's loop.
pub struct Service {
    link: Link,
}

/// Who may call: the holder of the device's credential (its `hsw_dev_...` token, as the server
/// gave it at registration), sent as `authorization: Bearer <token>`. Only its SHA-256 is kept.
#[derive(Clone)]
pub struct Credential {
    sha256: Option<[u8; 32]>,
}

impl Credential {
    /// Calls must carry this token.
    pub fn token(token: &str) -> Credential {
        Credential {
            sha256: Some(Sha256::digest(token.as_bytes()).into()),
        }
    }

    /// Any caller that reaches the port may act (`hotswap device --grpc-unauthenticated`).
    pub fn none() -> Credential {
        Credential { sha256: None }
    }

    /// Checks a call's metadata; the interceptor in front of every call.
    pub fn check(&self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = self.sha256 else {
            return Ok(request);
        };
        let Some(value) = request.metadata().get("authorization") else {
            return Err(Status::unauthenticated(
                "this device needs its credential: send `authorization: Bearer <the device's token>`",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Status::unauthenticated(
                    "malformed credential: expected `authorization: Bearer <token>`",
                )
            })?;
        // Digests compared, not the secrets: how long the comparison takes says nothing of the
        // token.
        let presented: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        if presented != expected {
            return Err(Status::permission_denied(
                "credential refused: it is not this device's",
            ));
        }
        Ok(request)
    }
}

impl tonic::service::Interceptor for Credential {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        self.check(request)
    }
}

/// The service behind its credential check.
pub type Guarded =
    tonic::service::interceptor::InterceptedService<DeviceServer<Service>, Credential>;

impl Service {
    pub fn new(link: Link, credential: Credential) -> Guarded {
        DeviceServer::with_interceptor(Service { link }, credential)
    }

    async fn images(&self) -> Result<Vec<Image>, Status> {
        Ok(self
            .link
            .images()
            .await
            .map_err(status)?
            .into_iter()
            .map(image)
            .collect())
    }

    async fn reset_and_report(&self) -> Result<ResetReply, Status> {
        let report = self.link.reset().await.map_err(status)?;
        Ok(ResetReply {
            description: report.describe(),
            outcome: outcome(&report) as i32,
            tried: report.tried.clone().unwrap_or_default(),
            version: report.version,
        })
    }
}

/// What a reset did, as the `.proto` names it.
fn outcome(r: &ResetReport) -> Outcome {
    match (&r.tried, r.took, r.kept) {
        (None, _, _) => Outcome::Booted,
        (Some(_), true, true) => Outcome::Kept,
        (Some(_), true, false) => Outcome::OnTrial,
        (Some(_), false, _) => Outcome::Reverted,
    }
}

/// The TLS the device serves gRPC with: its certificate chain and key (PEM), and with
/// `client_ca` a client certificate required of every caller, chained to that CA.
pub fn server_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
    client_ca: Option<&std::path::Path>,
) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use anyhow::Context;
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read(cert, "certificate")?,
        read(key, "private key")?,
    ));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
    }
    Ok(tls)
}

fn image(i: SlotImage) -> Image {
    Image {
        slot: i.slot,
        version: i.version,
        hash: i.hash,
        pending: i.pending,
        confirmed: i.confirmed,
        active: i.active,
        permanent: i.permanent,
    }
}

/// A refusal as a gRPC error with the device's reason, by SMP's return codes.
fn status(e: LinkError) -> Status {
    match e {
        LinkError::Stopping => Status::unavailable(e.to_string()),
        LinkError::Answer(_) => Status::internal(e.to_string()),
        LinkError::Refused { rc, reason } => match rc {
            5 => Status::not_found(reason),
            6 => Status::failed_precondition(reason),
            9 => Status::data_loss(reason),
            11 => Status::permission_denied(reason),
            _ => Status::invalid_argument(reason),
        },
    }
}

#[tonic::async_trait]
impl Device for Service {
    async fn info(&self, _: Request<InfoRequest>) -> Result<Response<InfoReply>, Status> {
        let images = self.images().await?;
        Ok(Response::new(InfoReply {
            version: images
                .iter()
                .find(|i| i.slot == 0)
                .map(|i| i.version.clone())
                .unwrap_or_default(),
            max_chunk: MAX_CHUNK,
        }))
    }

    async fn image_state(
        &self,
        _: Request<ImageStateRequest>,
    ) -> Result<Response<ImageStateReply>, Status> {
        Ok(Response::new(ImageStateReply {
            images: self.images().await?,
        }))
    }

    type UploadStream = Pin<Box<dyn Stream<Item = Result<UploadProgress, Status>> + Send>>;

    async fn upload(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<Self::UploadStream>, Status> {
        let mut chunks = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let link = self.link.clone();
        tokio::spawn(async move {
            while let Some(chunk) = chunks.message().await.transpose() {
                let answer = match chunk {
                    Err(e) => Err(e),
                    Ok(c) if c.data.len() > MAX_CHUNK as usize => {
                        Err(Status::invalid_argument(format!(
                            "a chunk of {} bytes; the device takes {MAX_CHUNK}",
                            c.data.len()
                        )))
                    }
                    Ok(c) => link
                        .upload(c.offset, &c.data, c.length, &c.sha256)
                        .await
                        .map_err(status)
                        .and_then(|a| {
                            if a.matched == Some(false) {
                                return Err(Status::data_loss(
                                    "the bytes the device got are not the file's",
                                ));
                            }
                            Ok(UploadProgress {
                                next_offset: a.next_offset,
                                done: a.matched == Some(true),
                            })
                        }),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn set_state(
        &self,
        request: Request<SetStateRequest>,
    ) -> Result<Response<ImageStateReply>, Status> {
        let r = request.into_inner();
        let hash = (!r.hash.is_empty()).then_some(r.hash.as_slice());
        self.link.set_state(hash, r.confirm).await.map_err(status)?;
        Ok(Response::new(ImageStateReply {
            images: self.images().await?,
        }))
    }

    async fn reset(&self, _: Request<ResetRequest>) -> Result<Response<ResetReply>, Status> {
        Ok(Response::new(self.reset_and_report().await?))
    }

    async fn rollback(&self, _: Request<RollbackRequest>) -> Result<Response<ResetReply>, Status> {
        let images = self.images().await?;
        let Some(other) = images.iter().find(|i| i.slot == 1) else {
            return Err(Status::failed_precondition(
                "the other slot holds no agent to go back to",
            ));
        };
        let hash = other.hash.clone();
        self.link
            .set_state(Some(&hash), true)
            .await
            .map_err(status)?;
        Ok(Response::new(self.reset_and_report().await?))
    }
}
