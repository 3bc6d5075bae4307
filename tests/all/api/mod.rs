//! The operator API over real HTTP on loopback: a real server, a real client. Happy paths, then
//! every bad input with its status and message, then a restart on the same data directory; one
//! file per part of the API.

mod auth;
mod dashboard;
mod deployments;
mod devices;
mod firmware;
mod lifecycle;
mod metrics;
mod plugins;
mod security;
mod tls;
