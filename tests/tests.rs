//! End-to-end tests: the real `host-server` and `host-client` binaries on ephemeral
//! loopback ports, with raw `TcpStream`s standing in for `nc`.

mod sockets;
mod util;

mod addresses;
mod backplane;
mod browser;
mod chat;
mod client_cli;
mod faults;
mod firmware_net;
mod firmware_room;
mod firmware_util;
mod flood;
mod proxy;
mod real_clients;
mod redis_pubsub;
mod relay;
mod reliability;
mod roster;
mod shutdown;
mod soak;
mod text_mode;
mod tls;
mod web;
