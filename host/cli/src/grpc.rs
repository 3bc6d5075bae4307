//! The device's network path: the `hotswap.device.v1` gRPC service (`proto/`), served by
//! `hotswap device --grpc ADDR`. Each call becomes the SMP request of the same meaning, handed to
//! the device's loop ([`crate::device::Event::Smp`]), so the serial and the network paths share
//! one implementation of every rule: upload checks, test, reset, confirm, the watchdog.

use std::pin::Pin;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::device::Event;
use crate::push::Value;
use crate::push::cbor;

/// The code tonic generates from the `.proto`; its style is tonic's, not the project's.
#[allow(unused_qualifications, rust_2018_idioms, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("hotswap.device.v1");
}

use proto::device_server::{Device, DeviceServer};
use proto::{
    Image, ImageStateReply, ImageStateRequest, InfoReply, InfoRequest, ResetReply, ResetRequest,
    RollbackRequest, SetStateRequest, UploadChunk, UploadProgress,
};

/// The largest chunk of an upload, in bytes: what fits the device's SMP buffer.
pub const MAX_CHUNK: u32 = hotswap_device_vm::smp::server::BUFFER_SIZE as u32 - 128;

/// The service, handing each call to the device's loop.
pub struct Service {
    events: std::sync::mpsc::Sender<Event>,
}

impl Service {
    pub fn new(events: std::sync::mpsc::Sender<Event>) -> DeviceServer<Service> {
        DeviceServer::new(Service { events })
    }

    /// One SMP request to the device and its answer, read; a refusal is a gRPC error with the
    /// device's reason.
    async fn smp(
        &self,
        group: u16,
        command: u8,
        write: bool,
        body: Vec<u8>,
    ) -> Result<Value, Status> {
        // The device's loop answers it directly: no sequence to match.
        let message = hotswap_device_vm::smp::Header::request(write, group, 0, command, &body);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Smp(message, tx))
            .map_err(|_| Status::unavailable("the device is stopping"))?;
        let answer = rx
            .await
            .map_err(|_| Status::unavailable("the device gave no answer"))?;
        // The answer is a whole SMP message: its body follows the 8-byte header.
        let body = answer.get(8..).unwrap_or_default();
        let value = crate::push::decode_answer(body)
            .map_err(|e| Status::internal(format!("the device's answer: {e}")))?;
        if let Some(Value::Int(rc)) = value.get("rc")
            && *rc != 0
        {
            let reason = match value.get("rsn") {
                Some(Value::Text(t)) => t.clone(),
                _ => format!("rc {rc}"),
            };
            return Err(match rc {
                5 => Status::not_found(reason),
                6 => Status::failed_precondition(reason),
                9 => Status::data_loss(reason),
                11 => Status::permission_denied(reason),
                _ => Status::invalid_argument(reason),
            });
        }
        Ok(value)
    }

    async fn images(&self) -> Result<Vec<Image>, Status> {
        let answer = self.smp(1, 0, false, cbor(|_| Ok(()), 0)).await?;
        let Some(Value::Array(images)) = answer.get("images") else {
            return Err(Status::internal("the device's image state has no images"));
        };
        Ok(images
            .iter()
            .map(|i| {
                let flag = |k: &str| i.get(k) == Some(&Value::Bool(true));
                Image {
                    slot: match i.get("slot") {
                        Some(Value::Int(n)) => *n as u32,
                        _ => 0,
                    },
                    version: match i.get("version") {
                        Some(Value::Text(v)) => v.clone(),
                        _ => String::new(),
                    },
                    hash: match i.get("hash") {
                        Some(Value::Bytes(h)) => h.clone(),
                        _ => Vec::new(),
                    },
                    pending: flag("pending"),
                    confirmed: flag("confirmed"),
                    active: flag("active"),
                    permanent: flag("permanent"),
                }
            })
            .collect())
    }

    async fn reset_and_report(&self) -> Result<ResetReply, Status> {
        let before = self.images().await?;
        let pending = before.iter().find(|i| i.pending).map(|i| i.version.clone());
        self.smp(0, 5, true, cbor(|_| Ok(()), 0)).await?;
        // The loop resets once the answer is sent; the next request comes after it.
        let after = self.images().await?;
        let running = after.iter().find(|i| i.slot == 0);
        let version = running.map(|i| i.version.clone()).unwrap_or_default();
        let outcome = match (pending, running) {
            (Some(p), Some(r)) if r.version == p && r.confirmed => format!("{p} tried and kept"),
            (Some(p), Some(r)) if r.version == p => format!("{p} on trial, not confirmed"),
            (Some(p), _) => format!("{p} failed its self-test; went back to {version}"),
            (None, _) => format!("booted {version}"),
        };
        Ok(ResetReply { outcome, version })
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
        let service = Service {
            events: self.events.clone(),
        };
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
                    Ok(c) => {
                        let body = if c.offset == 0 {
                            cbor(
                                |e| {
                                    e.str("len")?.u64(c.length)?;
                                    e.str("off")?.u64(0)?;
                                    e.str("sha")?.bytes(&c.sha256)?;
                                    e.str("data")?.bytes(&c.data).map(drop)
                                },
                                4,
                            )
                        } else {
                            cbor(
                                |e| {
                                    e.str("off")?
                                        .u64(c.offset)?
                                        .str("data")?
                                        .bytes(&c.data)
                                        .map(drop)
                                },
                                2,
                            )
                        };
                        service.smp(1, 1, true, body).await.and_then(|v| {
                            let next = match v.get("off") {
                                Some(Value::Int(n)) => *n as u64,
                                _ => {
                                    return Err(Status::internal(
                                        "the device's answer has no offset",
                                    ));
                                }
                            };
                            if v.get("match") == Some(&Value::Bool(false)) {
                                return Err(Status::data_loss(
                                    "the bytes the device got are not the file's",
                                ));
                            }
                            Ok(UploadProgress {
                                next_offset: next,
                                done: v.get("match") == Some(&Value::Bool(true)),
                            })
                        })
                    }
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
        let body = if r.hash.is_empty() {
            cbor(|e| e.str("confirm")?.bool(r.confirm).map(drop), 1)
        } else {
            crate::push::state_body(&r.hash, r.confirm)
        };
        self.smp(1, 0, true, body).await?;
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
        self.smp(1, 0, true, crate::push::state_body(&hash, true))
            .await?;
        Ok(Response::new(self.reset_and_report().await?))
    }
}
