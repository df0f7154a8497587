//! The hardware side of KCore: every instruction safe Rust cannot express.
#![no_std]
