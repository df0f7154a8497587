//! Faults `kcore.efi` can be told to inject, so that a system test can
//! drive its stop paths under real firmware (`efi_acpi_4_cpus_at_el1`):
//! `kcore.efi_fault=aml-loop` or `kcore.efi_fault=aml-panic` among the
//! bootargs adds one SSDT to the firmware's AML before it is read — one on
//! which the `acpi` crate's interpreter runs for ever, or one on which it
//! panics (`docs/security.md`, "ACPI machines"). Either way `kcore.efi`
//! must say what stopped it and return to the firmware, which goes on to
//! its next boot option; KCore is not started. Only the ACPI path reads
//! AML: on a device-tree boot the option has no effect.
//!
//! The option can only stop the boot, which whoever can write the ESP
//! (where the bootargs live) can do anyway by deleting `kcore.efi`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The bootargs word that asks for a fault, up to its value.
pub const OPTION: &str = "kcore.efi_fault=";

/// A fault to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An SSDT whose only term is `While (One) { Noop }`: the interpreter
    /// (which has no loop limit) runs it for ever as the table loads.
    AmlLoop,
    /// An SSDT whose only term is a `Scope` whose package length runs past
    /// the end of the table: the interpreter panics slicing its block.
    AmlPanic,
}

impl Fault {
    /// The fault `bootargs` ask for: `Ok(None)` without [`OPTION`], an
    /// error naming the value when it is not one of the faults.
    pub fn from_bootargs(bootargs: &str) -> Result<Option<Self>, String> {
        let Some(value) = bootargs
            .split_whitespace()
            .find_map(|w| w.strip_prefix(OPTION))
        else {
            return Ok(None);
        };
        [Self::AmlLoop, Self::AmlPanic]
            .into_iter()
            .find(|f| f.name() == value)
            .map(Some)
            .ok_or_else(|| value.to_string())
    }

    /// The fault's value of [`OPTION`].
    pub fn name(self) -> &'static str {
        match self {
            Self::AmlLoop => "aml-loop",
            Self::AmlPanic => "aml-panic",
        }
    }

    /// The SSDT that injects the fault: a valid header (signature, length,
    /// revision 2, checksum) and the fault's AML.
    pub fn ssdt(self) -> Vec<u8> {
        let aml: &[u8] = match self {
            // WhileOp, PkgLength 3, OneOp; NoopOp.
            Self::AmlLoop => &[0xa2, 0x03, 0x01, 0xa3],
            // ScopeOp, PkgLength 63 (past the end), `\` (the root).
            Self::AmlPanic => &[0x10, 0x3f, 0x5c, 0x00],
        };
        let mut t = Vec::with_capacity(36 + aml.len());
        t.extend_from_slice(b"SSDT");
        t.extend_from_slice(&((36 + aml.len()) as u32).to_le_bytes());
        t.push(2);
        t.push(0);
        t.extend_from_slice(b"KCORE FAULT   ");
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(b"KCOR");
        t.extend_from_slice(&1u32.to_le_bytes());
        t.extend_from_slice(aml);
        let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[9] = sum.wrapping_neg();
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcore_acpi::namespace;
    use std::time::Duration;

    #[test]
    fn the_option_names_a_fault_or_is_refused() {
        assert_eq!(Fault::from_bootargs("console=ttyAMA0"), Ok(None));
        assert_eq!(
            Fault::from_bootargs("a kcore.efi_fault=aml-loop b"),
            Ok(Some(Fault::AmlLoop))
        );
        assert_eq!(
            Fault::from_bootargs("kcore.efi_fault=aml-panic"),
            Ok(Some(Fault::AmlPanic))
        );
        assert_eq!(
            Fault::from_bootargs("kcore.efi_fault=oops"),
            Err("oops".to_string())
        );
    }

    #[test]
    fn the_tables_are_valid_ssdts() {
        for f in [Fault::AmlLoop, Fault::AmlPanic] {
            let t = f.ssdt();
            assert_eq!(&t[..4], b"SSDT");
            assert_eq!(
                u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize,
                t.len()
            );
            assert_eq!(t.iter().fold(0u8, |s, b| s.wrapping_add(*b)), 0);
        }
    }

    /// The loop runs for ever: still running after 2 s (the thread is left
    /// spinning until the test binary exits).
    #[test]
    fn the_loop_does_not_end() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let t = Fault::AmlLoop.ssdt();
            let _ = tx.send(namespace::devices(&[&t]).map(|d| d.len()));
        });
        assert!(rx.recv_timeout(Duration::from_secs(2)).is_err());
    }

    /// The interpreter panics on the other, slicing past the table's end.
    #[test]
    fn the_bad_package_length_panics_the_interpreter() {
        let t = Fault::AmlPanic.ssdt();
        let r = std::thread::spawn(move || namespace::devices(&[&t]).map(|d| d.len())).join();
        let payload = r.expect_err("the interpreter did not panic");
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("out of range"), "{message}");
    }
}
