//! Compiles the device's gRPC service (`proto/hotswap/device/v1/device.proto`) with protox, in
//! pure Rust: no `protoc` is needed.

fn main() {
    let proto = "proto/hotswap/device/v1/device.proto";
    println!("cargo:rerun-if-changed={proto}");
    let files = protox::compile([proto], ["proto"]).expect("the device's .proto compiles");
    tonic_prost_build::configure()
        .compile_fds(files)
        .expect("the device's gRPC code is generated");
}
