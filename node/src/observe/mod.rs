//! What the node tells its operators about itself: Prometheus metrics (`metrics`) and logs
//! and OpenTelemetry traces (`telemetry`).

pub mod metrics;
pub mod telemetry;
