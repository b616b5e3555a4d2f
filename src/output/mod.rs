//! Where fwdguard's words go, none of which may ever make the guard wait: the journal
//! ([`journal`]), stderr ([`stderr`]), the service manager ([`notify`]), and the webhooks and
//! the metrics listener the configuration asks for ([`configured`]).

pub mod configured;
pub mod journal;
pub mod notify;
pub mod stderr;

pub use configured::ConfiguredOutputs;
