//! Generated gRPC types for node-to-node RPCs (`proto/raft.proto`).

#![allow(clippy::all)]
tonic::include_proto!("flotilla.raft.v1");
