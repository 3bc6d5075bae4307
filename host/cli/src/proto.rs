//! The code tonic generates from `proto/hotswap/device/v1/device.proto`: the device's gRPC
//! service, served by [`crate::device`] and called by [`crate::push`]. Its style is tonic's,
//! not the project's.

#![allow(unused_qualifications, rust_2018_idioms, clippy::all, clippy::pedantic)]

tonic::include_proto!("hotswap.device.v1");
