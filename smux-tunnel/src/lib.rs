//! The tunnel: a TCP port forwarder over smux, on TCP or on kcptun's KCP transport.

pub mod kcp;
