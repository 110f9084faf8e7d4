//! `flotilla-jepsen`: a black-box chaos harness. Real `flotilla-node` processes on this host,
//! concurrent REST clients, a nemesis injecting faults (kill -9, SIGSTOP, network partitions
//! with iptables, restart of all nodes), a recorded history, checkers, and a report.

pub mod checker;
pub mod cluster;
pub mod firewall;
pub mod history;
pub mod nemesis;
pub mod report;
pub mod run;
pub mod workload;
