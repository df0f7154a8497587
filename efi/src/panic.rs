//! What `kcore.efi` does when it panics: a bug of its own, or one of a crate
//! it calls on the firmware's data (the `acpi` crate's AML interpreter
//! panics on some malformed AML, `docs/security.md`, "ACPI machines").
//!
//! While boot services run, it says what it was doing ([`Phase`]) and what
//! panicked, and returns to the firmware with `EFI_ABORTED`, so the boot
//! manager goes on to its next boot option; KCore is not started and
//! nothing of the machine has been changed for the next option to see (the
//! ACPI tables KServ would read are installed only after every table and
//! the AML have been read). After `ExitBootServices` nothing can be printed
//! or returned to, and the machine is powered off, as when the tree cannot
//! be built ([`crate::app`]).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use uefi::runtime::{self, ResetType};
use uefi::{Status, boot, println};

/// What `kcore.efi` is doing, for the panic message.
#[derive(Clone, Copy)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Anything not named below.
    Loading = 0,
    /// Reading the ACPI tables' AML with the `acpi` crate's interpreter.
    Aml = 1,
}

static PHASE: AtomicU8 = AtomicU8::new(Phase::Loading as u8);
/// Set just before `ExitBootServices`.
static LEAVING: AtomicBool = AtomicBool::new(false);

/// To be called just before `ExitBootServices`: from then on a panic
/// cannot print or return to the firmware.
pub(crate) fn leaving_boot_services() {
    LEAVING.store(true, Ordering::Relaxed);
}

/// Records what `kcore.efi` is doing from now on.
pub(crate) fn set_phase(phase: Phase) {
    PHASE.store(phase as u8, Ordering::Relaxed);
}

fn doing() -> &'static str {
    match PHASE.load(Ordering::Relaxed) {
        1 => "reading the firmware's AML (the DSDT and SSDTs) with the acpi crate's interpreter",
        _ => "preparing KCore's boot",
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if !LEAVING.load(Ordering::Relaxed) {
        println!("kcore.efi: stopped while {}: {info}", doing());
        println!("kcore.efi: KCore is not started; back to the firmware");
        // SAFETY: boot services run; the application installed no event
        // callback or protocol that could run after it is unloaded, and
        // `Exit` does not return on success.
        let _ = unsafe {
            boot::exit(
                boot::image_handle(),
                Status::ABORTED,
                0,
                core::ptr::null_mut(),
            )
        };
    }
    runtime::reset(ResetType::SHUTDOWN, Status::ABORTED, None)
}
