//! Integration tests: a real `conflux serve` process on loopback, driven over HTTP.
//! One test binary with a module per area (see matklad's "Delete Cargo Integration Tests").

mod auth;
mod bulk;
mod bulk1;
mod changes;
mod cli;
mod composite;
mod console;
mod contract;
mod durability;
mod events;
mod flows;
mod harness;
mod hostile;
mod pubsub;
mod records;
mod server;
mod sync;
