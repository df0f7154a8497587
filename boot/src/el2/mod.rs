//! The EL2 side of the boot binary: entry, console, heap, bring-up, KCore's
//! singletons, traps.

mod console;
mod early;
pub mod entry;
mod heap;
pub mod start;
mod state;
mod trap;
